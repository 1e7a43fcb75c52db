package server

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/server/auth"
)

// wsBearer is the handshake header of a token.
func wsBearer(token string) http.Header {
	return http.Header{"Authorization": {"Bearer " + token}}
}

// wsRefusedHandshake dials node 0 with header (and query) and returns the
// refused handshake's status and body.
func wsRefusedHandshake(t *testing.T, c *testCluster, header http.Header, query string) (int, wsAuthRefusal) {
	t.Helper()
	u := wsURL(c.cfgs[0].HTTPAddr)
	if query != "" {
		u += "?" + query
	}
	conn, resp, err := (&websocket.Dialer{HandshakeTimeout: 10 * time.Second}).Dial(u, header)
	if err == nil {
		conn.Close()
		t.Fatalf("handshake with %v %q accepted", header, query)
	}
	if resp == nil {
		t.Fatalf("handshake: %v", err)
	}
	defer resp.Body.Close()
	var body wsAuthRefusal
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("refusal body: %v", err)
	}
	return resp.StatusCode, body
}

// Tokens over WebSocket: a handshake without a valid token is refused
// with 401 naming why; each op is checked like its gRPC twin (publish for
// another tenant writes nothing, subscribe reads only the token's tenant
// of a shared partition, group ops need tenant *); the gateway's group
// client acts with the connection's token; the connection is closed with
// 4001 when its token expires.
func TestAuthWebSocket(t *testing.T) {
	c, keys, admin := startAuthCluster(t)
	acmeTok := keys.token("acme", []string{auth.ActionProduce, auth.ActionConsume})
	produceRetry(t, clientWithToken(t, c.cfgs[0].GRPCAddr, acmeTok), "shared", tenantEvents("acme", 3)...)
	produceRetry(t, admin, "shared", tenantEvents("globex", 4)...)

	for _, tc := range []struct {
		name   string
		header http.Header
		query  string
		what   string
	}{
		{"no token", nil, "", auth.WhatMissing},
		{"bad scheme", http.Header{"Authorization": {"Basic YTpi"}}, "", auth.WhatMalformed},
		{"forged", wsBearer(keys.forged("none", func(string) []byte { return nil })), "", auth.WhatSignature},
		{"expired in the query", nil, "access_token=" + url.QueryEscape(keys.tokenExpiring("acme", time.Now().Add(-time.Hour), []string{auth.ActionConsume})), auth.WhatExpired},
	} {
		code, body := wsRefusedHandshake(t, c, tc.header, tc.query)
		if code != http.StatusUnauthorized || body.Code != "UNAUTHENTICATED" || body.What != tc.what {
			t.Fatalf("%s: HTTP %d %+v, want 401 UNAUTHENTICATED %s", tc.name, code, body, tc.what)
		}
	}

	// The token in the query parameter, as a browser sends it.
	u := wsURL(c.cfgs[0].HTTPAddr) + "?access_token=" + url.QueryEscape(acmeTok)
	conn, _, err := (&websocket.Dialer{HandshakeTimeout: 10 * time.Second}).Dial(u, nil)
	if err != nil {
		t.Fatalf("handshake with access_token: %v", err)
	}
	conn.Close()

	w := wsDial(t, c, 1, wsBearer(acmeTok), 0).read()
	w.send(map[string]any{"type": "publish", "id": "p1", "topic": "shared", "tenant": "globex", "payload": []byte("globex")})
	if f := w.next(20*time.Second, byID("p1")); f.Type != wsTypeError || f.Code != "PERMISSION_DENIED" || f.Metadata["tenant"] != "globex" {
		t.Fatalf("publish for another tenant answered %+v, want PERMISSION_DENIED", f)
	}
	if n := len(allEvents(t, admin, "shared")); n != 7 {
		t.Fatalf("%d events after a refused publish, want 7", n)
	}
	w.send(map[string]any{"type": "subscribe", "id": "other", "topic": "shared", "tenant": "globex", "start": "earliest"})
	if f := w.next(20*time.Second, byID("other")); f.Type != wsTypeError || f.Code != "PERMISSION_DENIED" {
		t.Fatalf("subscribe to another tenant answered %+v, want PERMISSION_DENIED", f)
	}
	w.send(map[string]any{"type": "group_subscribe", "id": "g", "topic": "shared", "group": "billing"})
	if f := w.next(20*time.Second, byID("g")); f.Type != wsTypeError || f.Code != "PERMISSION_DENIED" || f.Metadata["action"] != auth.ActionGroups {
		t.Fatalf("group_subscribe with a tenant token answered %+v, want PERMISSION_DENIED", f)
	}
	// Subscribe without a filter: the token's tenant only, catch-up and
	// live tail.
	w.send(map[string]any{"type": "subscribe", "id": "mine", "topic": "shared", "start": "earliest"})
	for _, ev := range w.events("mine", 3) {
		if ev.Tenant != "acme" || string(ev.Payload) != "acme" {
			t.Fatalf("catch-up: an event of tenant %q leaked to acme's subscription", ev.Tenant)
		}
	}
	produceRetry(t, admin, "shared", tenantEvents("globex", 5)...)
	w.send(map[string]any{"type": "publish", "id": "p2", "topic": "shared", "tenant": "acme", "payload": []byte("acme")})
	if f := w.next(20*time.Second, byID("p2")); f.Type != wsTypeAck {
		t.Fatalf("publish for its own tenant answered %+v, want an ack", f)
	}
	for _, ev := range w.events("mine", 1) {
		if ev.Tenant != "acme" || ev.Offset != 12 {
			t.Fatalf("live tail: got %+v, want acme's event at offset 12 (none of globex's)", ev)
		}
	}

	// A service token with groups consumes a group through the gateway,
	// whose group client calls the cluster with the connection's token.
	if _, err := admin.CreateGroup(ctxTimeout(t, 20*time.Second), &heraldpb.CreateGroupRequest{Topic: "shared", Group: "billing"}); err != nil {
		t.Fatalf("create group: %v", err)
	}
	svc := wsDial(t, c, 2, wsBearer(keys.token("*", []string{auth.ActionGroups})), 0).read()
	svc.send(map[string]any{"type": "group_subscribe", "id": "g", "topic": "shared", "group": "billing"})
	if f := svc.next(30*time.Second, byID("g")); f.Type != wsTypeGroupSubscribed {
		t.Fatalf("group_subscribe with a service token answered %+v", f)
	}
	if f := svc.next(30*time.Second, byID("g")); f.Type != wsTypeGroupEvents {
		t.Fatalf("group subscription: got %+v, want events", f)
	}

	// Expired 28 s ago: accepted (leeway 30 s), closed with 4001 soon.
	short := wsDial(t, c, 0, wsBearer(keys.tokenExpiring("acme", time.Now().Add(-auth.Leeway+2*time.Second), []string{auth.ActionConsume})), 0).read()
	short.send(map[string]any{"type": "subscribe", "id": "s", "topic": "shared", "start": "latest"})
	if code := short.closed(20 * time.Second); code != wsCloseTokenExpired {
		t.Fatalf("connection past its token's expiry closed with %d, want %d", code, wsCloseTokenExpired)
	}
}
