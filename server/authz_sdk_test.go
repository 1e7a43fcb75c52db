package server

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wsclient"
	"github.com/heraldlog/herald/server/auth"
)

// The SDKs send Config.Token: the gRPC client on every call (its refusals
// typed ErrUnauthenticated and ErrPermissionDenied), the WebSocket client
// at the handshake.
func TestAuthSDK(t *testing.T) {
	c, keys, admin := startAuthCluster(t)
	ctx := ctxTimeout(t, time.Minute)

	if _, err := client.New(ctx, client.Config{Servers: c.addrs()}); !errors.Is(err, client.ErrUnauthenticated) {
		t.Fatalf("a client without a token: %v, want ErrUnauthenticated", err)
	}
	acme, err := client.New(ctx, client.Config{Servers: c.addrs(), Token: keys.token("acme", []string{auth.ActionProduce, auth.ActionConsume})})
	if err != nil {
		t.Fatal(err)
	}
	defer acme.Close()
	if _, err := acme.Produce(ctx, "shared", &client.Event{TenantId: "acme", Payload: []byte("acme")}); err != nil {
		t.Fatalf("produce with a token: %v", err)
	}
	if _, err := acme.Produce(ctx, "shared", &client.Event{TenantId: "globex", Payload: []byte("globex")}); !errors.Is(err, client.ErrPermissionDenied) {
		t.Fatalf("produce for another tenant: %v, want ErrPermissionDenied", err)
	}
	if err := acme.DeleteTopic(ctx, "shared", true); !errors.Is(err, client.ErrPermissionDenied) {
		t.Fatalf("delete topic with a tenant token: %v, want ErrPermissionDenied", err)
	}
	// A last event fences the check: the node read may trail the leader,
	// and anything a refused call wrote would come before the fence.
	if _, err := acme.Produce(ctx, "shared", &client.Event{TenantId: "acme", Payload: []byte("acme")}); err != nil {
		t.Fatalf("produce with a token: %v", err)
	}
	var evs []*heraldpb.Event
	eventually(t, 10*time.Second, func() error {
		if evs = allEvents(t, admin, "shared"); len(evs) < 2 {
			return fmt.Errorf("%d events read, want the 2 acknowledged", len(evs))
		}
		return nil
	})
	if len(evs) != 2 {
		t.Fatalf("%d events written, want the 2 acknowledged (refusals must write nothing)", len(evs))
	}
	onlyTenant(t, "the log", "acme", evs)

	var urls []string
	for _, cfg := range c.cfgs {
		urls = append(urls, wsURL(cfg.HTTPAddr))
	}
	if _, err := wsclient.Dial(ctx, wsclient.Config{URLs: urls}); !errors.Is(err, client.ErrUnauthenticated) {
		t.Fatalf("wsclient without a token: %v, want ErrUnauthenticated", err)
	}
	ws, err := wsclient.Dial(ctx, wsclient.Config{URLs: urls, Token: keys.token("acme", []string{auth.ActionProduce, auth.ActionConsume})})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	produceRetry(t, admin, "shared", tenantEvents("globex", 2)...)
	if _, err := ws.Publish(ctx, "shared", &heraldpb.Event{TenantId: "acme", Payload: []byte("acme")}); err != nil {
		t.Fatalf("wsclient publish with a token: %v", err)
	}
	sub, err := ws.Subscribe(ctx, wsclient.SubscribeOptions{Topic: "shared", Start: wsclient.StartEarliest})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		ev, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ev.TenantID != "acme" {
			t.Fatalf("wsclient subscription got an event of tenant %q", ev.TenantID)
		}
	}

	// A subscription whose connection is closed at its token's expiry
	// (4001) ends with ErrUnauthenticated: its reconnection is refused
	// (401, expired), and that is final rather than retried.
	short, err := wsclient.Dial(ctx, wsclient.Config{URLs: urls, BackoffMin: time.Millisecond, BackoffMax: 10 * time.Millisecond,
		Token: keys.tokenExpiring("acme", time.Now().Add(-auth.Leeway+2*time.Second), []string{auth.ActionConsume})})
	if err != nil {
		t.Fatal(err)
	}
	defer short.Close()
	sub, err = short.Subscribe(ctx, wsclient.SubscribeOptions{Topic: "shared", Start: wsclient.StartLatest})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := sub.Next(ctx); err != nil {
			if !errors.Is(err, client.ErrUnauthenticated) {
				t.Fatalf("a subscription past its token's expiry ended with %v, want ErrUnauthenticated", err)
			}
			break
		}
	}
}
