package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	"github.com/heraldlog/herald/server/auth"
)

// wsCloseTokenExpired closes a connection whose token expired (Leeway
// after its exp); the client reconnects with a new token.
const wsCloseTokenExpired = wire.WSCloseTokenExpired

// wsAccessTokenParam is the query parameter a browser sends its token in:
// a browser cannot set headers on a WebSocket handshake. (It can end up
// in access logs of proxies: prefer the header where the client can.)
const wsAccessTokenParam = "access_token"

// wsAuthRefusal is the JSON body of a handshake refused with 401.
type wsAuthRefusal struct {
	Code    string `json:"code"` // UNAUTHENTICATED
	What    string `json:"what"` // missing, malformed, signature, expired, not_yet_valid
	Message string `json:"message"`
}

// wsCredentials are a connection's token and what it allows; zero when the
// node does not check credentials.
type wsCredentials struct {
	token  string
	claims *auth.Claims
}

// authenticate checks the token of a handshake: the Authorization header
// ("Bearer <token>"), else the access_token query parameter. When the
// node does not check credentials it returns zero credentials.
func (g *wsGateway) authenticate(r *http.Request) (wsCredentials, error) {
	a := g.n.authz
	if !a.enabled() {
		return wsCredentials{}, nil
	}
	var token string
	if h := r.Header.Values("Authorization"); len(h) > 0 {
		if len(h) > 1 {
			return wsCredentials{}, wire.Unauthenticated(auth.WhatMalformed, "more than one Authorization header")
		}
		t, ok := cutBearer(h[0])
		if !ok {
			return wsCredentials{}, wire.Unauthenticated(auth.WhatMalformed, "the Authorization header is not \"Bearer <token>\"")
		}
		token = t
	} else if q := r.URL.Query()[wsAccessTokenParam]; len(q) > 0 {
		token = q[0]
	}
	if token == "" {
		return wsCredentials{}, wire.Unauthenticated(auth.WhatMissing,
			"no token: send \"Authorization: Bearer <token>\" or the access_token query parameter")
	}
	c, err := a.verifyToken(token)
	if err != nil {
		return wsCredentials{}, err
	}
	return wsCredentials{token: token, claims: c}, nil
}

// refuseHandshake answers a handshake refused for its credentials: 401
// with a JSON body naming the reason.
func (g *wsGateway) refuseHandshake(w http.ResponseWriter, r *http.Request, err error) {
	n := g.n
	n.authz.checks.Inc()
	_ = n.authz.refusal("websocket", "", err)
	n.metrics.wsRefused.WithLabelValues("auth").Inc()
	body := wsAuthRefusal{Code: heraldpb.ErrorReason_UNAUTHENTICATED.String(), What: auth.WhatMalformed, Message: err.Error()}
	var herr *wire.Error
	if errors.As(err, &herr) && herr.Metadata[wire.MetadataWhat] != "" {
		body.What = herr.Metadata[wire.MetadataWhat]
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("WWW-Authenticate", `Bearer realm="herald"`)
	w.WriteHeader(http.StatusUnauthorized)
	_ = json.NewEncoder(w).Encode(&body)
}

// watchExpiry closes the connection with 4001 once its token expires
// (Leeway after exp, as long as a new call would still be accepted). The
// returned func stops the watch.
func (c *wsConn) watchExpiry() (stop func() bool) {
	if c.creds.claims == nil {
		return func() bool { return false }
	}
	t := time.AfterFunc(time.Until(c.creds.claims.Expiry().Add(auth.Leeway)), func() {
		c.n.authz.checks.Inc()
		_ = c.n.authz.refusal("websocket", c.creds.claims.Subject, wire.Unauthenticated(auth.WhatExpired, "token expired"))
		c.closeWith(&wsCloseCause{code: wsCloseTokenExpired, reason: "token expired", send: true})
	})
	return t.Stop
}

// authorize checks one op of the connection like its gRPC twin (method,
// with req as that method's request; it may narrow req's tenant filter).
// A refusal is answered with an error frame for id and forType, and
// authorize returns false: nothing was done.
func (c *wsConn) authorize(method string, req any, id, forType string) bool {
	if c.creds.claims == nil {
		return true
	}
	err := c.n.authz.check(heraldMethodPrefix+method, c.creds.claims, req)
	if err == nil {
		return true
	}
	_ = c.n.authz.refusal("websocket "+forType, c.creds.claims.Subject, err)
	c.sendError(wsErrorOf(id, forType, err))
	return false
}

// groupCallContext gives a group subscription's context the connection's
// token as outgoing metadata: the gateway's group client (ws_group.go)
// calls the cluster with it, so that each node checks the client's
// credentials, not the gateway's.
func (c *wsConn) groupCallContext(gs *wsGroupSub) {
	if c.creds.token == "" {
		return
	}
	gs.ctx = metadata.AppendToOutgoingContext(gs.ctx, authorizationKey, bearerPrefix+c.creds.token)
}
