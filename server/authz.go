package server

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/heraldlog/herald/client/wire"
	"github.com/heraldlog/herald/server/auth"
)

const (
	// authorizationKey is the gRPC metadata key of a client's token
	// ("Bearer <jwt>"); forwarded calls carry it on (forwardContext).
	authorizationKey = "authorization"
	// bearerPrefix starts an authorization value.
	bearerPrefix = "Bearer "
	// heraldMethodPrefix starts the full method name of every call of the
	// public Herald service: the calls the authorizer checks. The Raft
	// transport and NodeInternal are the peer interceptor's (peer_auth.go);
	// /grpc.health.v1.Health/ is open to anyone.
	heraldMethodPrefix = "/herald.v1.Herald/"
	// authWarnInterval is the least time between two refusal warnings in
	// the log (the refusals between them are counted in the metric).
	authWarnInterval = time.Second
)

// authorizer checks the client credentials of the public API (gRPC and
// WebSocket) when Config.Auth is enabled: who the caller is (its token,
// auth.Verifier) and what its token allows for the method called
// (methodPolicies). A nil *authorizer, or one without a verifier, allows
// everything (a cluster without Auth). Safe for concurrent use.
type authorizer struct {
	verifier *auth.Verifier
	logger   *slog.Logger
	// lastWarn is when the last refusal was logged (Unix nanoseconds).
	lastWarn atomic.Int64
	checks   prometheus.Counter
	refused  *prometheus.CounterVec
}

// newAuthorizer reads the keys of cfg (none: an authorizer that allows
// everything).
func newAuthorizer(cfg AuthConfig, logger *slog.Logger) (*authorizer, error) {
	a := &authorizer{logger: logger,
		checks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_auth_checks_total",
			Help: "Client requests (gRPC calls, stream messages that start a subscription, WebSocket handshakes and ops) whose credentials were checked.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_auth_refused_total",
			Help: "Client requests refused for their credentials, by reason (missing, malformed, signature, expired, not_yet_valid: UNAUTHENTICATED; permission_denied: PERMISSION_DENIED).",
		}, []string{"reason"}),
	}
	if cfg.Enabled() {
		v, err := auth.NewVerifier(cfg.KeysFile)
		if err != nil {
			return nil, err
		}
		a.verifier = v
	}
	return a, nil
}

// enabled reports whether requests are checked.
func (a *authorizer) enabled() bool { return a != nil && a.verifier != nil }

func (a *authorizer) collectors() []prometheus.Collector {
	return []prometheus.Collector{a.checks, a.refused}
}

// verifyToken checks a token given by the client (empty: none given); a
// refusal is an UNAUTHENTICATED wire error.
func (a *authorizer) verifyToken(token string) (*auth.Claims, error) {
	c, err := a.verifier.Verify(token)
	if err != nil {
		var ae *auth.Error
		if errors.As(err, &ae) {
			return nil, wire.Unauthenticated(ae.What, ae.Detail)
		}
		return nil, wire.Unauthenticated(auth.WhatMalformed, err.Error())
	}
	return c, nil
}

// authenticate returns the claims of the token the incoming call carries.
// A call without one is allowed (nil claims, nil error) only from an
// authenticated peer (a node-internal call; peerFrom): from anyone else it
// is UNAUTHENTICATED (missing).
func (a *authorizer) authenticate(ctx context.Context) (*auth.Claims, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	values := md.Get(authorizationKey)
	switch len(values) {
	case 0:
		if _, ok := peerFrom(ctx); ok {
			return nil, nil
		}
		return nil, wire.Unauthenticated(auth.WhatMissing, "no token: send metadata \"authorization: Bearer <token>\"")
	case 1:
	default:
		return nil, wire.Unauthenticated(auth.WhatMalformed, "more than one authorization value")
	}
	token, ok := cutBearer(values[0])
	if !ok {
		return nil, wire.Unauthenticated(auth.WhatMalformed, "the authorization value is not \"Bearer <token>\"")
	}
	return a.verifyToken(token)
}

// cutBearer returns the token of an authorization value "Bearer <token>"
// (the scheme is case-insensitive, RFC 7235).
func cutBearer(v string) (string, bool) {
	if len(v) < len(bearerPrefix) || !strings.EqualFold(v[:len(bearerPrefix)], bearerPrefix) {
		return "", false
	}
	token := strings.TrimSpace(v[len(bearerPrefix):])
	return token, token != ""
}

// refusal counts and logs (rate-limited, never the token) a refusal of
// method for subject, and returns it as a gRPC status error.
func (a *authorizer) refusal(method, subject string, err error) error {
	reason := "permission_denied"
	if errors.Is(err, wire.ErrUnauthenticated) {
		reason = auth.WhatMalformed
		var herr *wire.Error
		if errors.As(err, &herr) && herr.Metadata[wire.MetadataWhat] != "" {
			reason = herr.Metadata[wire.MetadataWhat]
		}
	}
	a.refused.WithLabelValues(reason).Inc()
	now := time.Now().UnixNano()
	if last := a.lastWarn.Load(); now-last >= int64(authWarnInterval) && a.lastWarn.CompareAndSwap(last, now) {
		a.logger.Warn("auth: request refused", "method", method, "subject", subject, "reason", reason, "err", err)
	}
	return wire.Status(err).Err()
}

// check decides method for the claims c and its request (or stream
// message) req; it may narrow req (a tenant token's empty tenant filter
// becomes its tenant). A method not in the table is refused: a new method
// is closed until it has a policy.
func (a *authorizer) check(method string, c *auth.Claims, req any) error {
	a.checks.Inc()
	policy, ok := methodPolicies[method]
	if !ok {
		return wire.PermissionDenied(auth.ActionAdmin, "", "", "no policy for "+method)
	}
	return policy(c, req)
}

// unary checks a unary call of the Herald service (authz_policy.go).
func (a *authorizer) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !a.enabled() || !strings.HasPrefix(info.FullMethod, heraldMethodPrefix) {
		return handler(ctx, req)
	}
	c, err := a.authenticate(ctx)
	if err != nil {
		a.checks.Inc()
		return nil, a.refusal(info.FullMethod, "", err)
	}
	if c == nil {
		return handler(ctx, req) // a node-internal call
	}
	if err := a.check(info.FullMethod, c, req); err != nil {
		return nil, a.refusal(info.FullMethod, c.Subject, err)
	}
	return handler(ctx, req)
}

// errTokenExpired is the cause of a stream's context cancelled when its
// token expired.
var errTokenExpired = errors.New("server: token expired")

// stream checks a streaming call of the Herald service: the token when it
// opens, each message the client sends that starts or changes what the
// stream serves, and the token's expiry, which ends the stream with
// UNAUTHENTICATED (expired).
func (a *authorizer) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !a.enabled() || !strings.HasPrefix(info.FullMethod, heraldMethodPrefix) {
		return handler(srv, ss)
	}
	c, err := a.authenticate(ss.Context())
	if err != nil {
		a.checks.Inc()
		return a.refusal(info.FullMethod, "", err)
	}
	if c == nil {
		return handler(srv, ss)
	}
	ctx, cancel := context.WithCancelCause(ss.Context())
	defer cancel(nil)
	// The token is accepted until Leeway after its expiry; so is a stream.
	expiry := time.AfterFunc(time.Until(c.Expiry().Add(auth.Leeway)), func() { cancel(errTokenExpired) })
	defer expiry.Stop()
	w := &authzStream{ServerStream: ss, ctx: ctx, check: func(m any) error { return a.check(info.FullMethod, c, m) }}
	err = handler(srv, w)
	if refused := w.refused.Load(); refused != nil {
		return a.refusal(info.FullMethod, c.Subject, *refused)
	}
	if errors.Is(context.Cause(ctx), errTokenExpired) {
		a.checks.Inc()
		return a.refusal(info.FullMethod, c.Subject, wire.Unauthenticated(auth.WhatExpired,
			"the token expired at "+c.Expiry().UTC().Format(time.RFC3339)))
	}
	return err
}

// authzStream is a server stream whose received messages are checked, and
// whose context ends when the token expires.
type authzStream struct {
	grpc.ServerStream
	ctx   context.Context
	check func(m any) error
	// refused is the refusal of a message, which ends the stream.
	refused atomic.Pointer[error]
}

func (s *authzStream) Context() context.Context { return s.ctx }

// RecvMsg receives a message and checks it; a refused message is not
// given to the handler, which sees the refusal (and the interceptor
// answers it, whatever the handler made of it).
func (s *authzStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if err := s.check(m); err != nil {
		s.refused.CompareAndSwap(nil, &err)
		return wire.Status(err).Err()
	}
	return nil
}

// withToken returns ctx carrying token as an incoming call's credentials,
// for the gateway's calls into the node's own handlers (and, through
// forwardContext, to the peers they forward to). Empty token: ctx as it
// is.
func withToken(ctx context.Context, token string) context.Context {
	if token == "" {
		return ctx
	}
	md, _ := metadata.FromIncomingContext(ctx)
	md = md.Copy()
	md.Set(authorizationKey, bearerPrefix+token)
	return metadata.NewIncomingContext(ctx, md)
}
