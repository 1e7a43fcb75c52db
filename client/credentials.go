package client

import (
	"context"

	"google.golang.org/grpc/credentials"
)

// tokenCredentials sends Config.Token with every call as gRPC metadata
// "authorization: Bearer <token>".
//
// It does not require transport security (RequireTransportSecurity is
// false) so that a development cluster without TLS can check tokens too;
// over plaintext anyone on the path can read the token and use it until it
// expires: set Config.TLS wherever the network is not trusted
// (docs/security.md).
type tokenCredentials struct{ token string }

var _ credentials.PerRPCCredentials = tokenCredentials{}

func (t tokenCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + t.token}, nil
}

func (tokenCredentials) RequireTransportSecurity() bool { return false }
