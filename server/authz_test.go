package server

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	"github.com/heraldlog/herald/server/auth"
)

// authTestKeys is the signing side of a cluster that checks tokens.
type authTestKeys struct {
	t        *testing.T
	priv     ed25519.PrivateKey
	pubPEM   []byte
	keysFile string
}

// newAuthTestKeys makes a signing key, its public keys file, and a cluster
// secret file (Config.Validate wants peers authenticated with auth on).
func newAuthTestKeys(t *testing.T) *authTestKeys {
	t.Helper()
	priv, err := auth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := auth.MarshalPublicKey(priv.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	k := &authTestKeys{t: t, priv: priv, pubPEM: pub, keysFile: filepath.Join(dir, "signing.pub")}
	if err := os.WriteFile(k.keysFile, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	return k
}

// configure turns auth on in cfg, with the cluster secret every node of
// the test's cluster shares (written once).
func (k *authTestKeys) configure(cfg *Config) {
	path := filepath.Join(filepath.Dir(k.keysFile), "cluster-secret")
	if _, err := os.Stat(path); err != nil {
		secret := make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			k.t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(hex.EncodeToString(secret)), 0o600); err != nil {
			k.t.Fatal(err)
		}
	}
	cfg.Auth = AuthConfig{KeysFile: k.keysFile}
	cfg.ClusterSecretFile = path
}

// token signs a token for tenant with actions (and topics), valid for an
// hour.
func (k *authTestKeys) token(tenant string, actions []string, topics ...string) string {
	return k.tokenExpiring(tenant, time.Now().Add(time.Hour), actions, topics...)
}

func (k *authTestKeys) tokenExpiring(tenant string, exp time.Time, actions []string, topics ...string) string {
	k.t.Helper()
	tok, err := auth.Sign(k.priv, auth.Claims{Subject: "test-" + tenant, Issuer: auth.Issuer,
		IssuedAt: exp.Add(-2 * time.Hour).Unix(), ExpiresAt: exp.Unix(), Tenant: tenant, Actions: actions, Topics: topics})
	if err != nil {
		k.t.Fatal(err)
	}
	return tok
}

// forged builds a token with header alg and a signature sign makes.
func (k *authTestKeys) forged(alg string, sign func(signing string) []byte) string {
	b64 := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]string{"alg": alg, "typ": "JWT", "kid": auth.KeyID(k.priv.Public().(ed25519.PublicKey))})
	c, _ := json.Marshal(auth.Claims{Subject: "forger", Issuer: auth.Issuer, IssuedAt: time.Now().Unix(),
		ExpiresAt: time.Now().Add(time.Hour).Unix(), Tenant: "*", Actions: []string{auth.ActionAdmin}})
	signing := b64.EncodeToString(h) + "." + b64.EncodeToString(c)
	return signing + "." + b64.EncodeToString(sign(signing))
}

// bearer sends a fixed token with every call of a test's raw client.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }

// clientWithToken is a raw gRPC client of addr sending token with every
// call (none when empty).
func clientWithToken(t *testing.T, addr, token string) heraldpb.HeraldClient {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(token)))
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return heraldpb.NewHeraldClient(conn)
}

// wantRefusal fails unless err is the refusal sentinel with metadata key
// equal to value (value "": any).
func wantRefusal(t *testing.T, what string, err, sentinel error, key, value string) {
	t.Helper()
	err = wire.FromStatus(err)
	if !errors.Is(err, sentinel) {
		t.Fatalf("%s: got %v, want %v", what, err, sentinel)
	}
	if value == "" {
		return
	}
	var herr *wire.Error
	if !errors.As(err, &herr) || herr.Metadata[key] != value {
		t.Fatalf("%s: %v: want metadata %s=%s", what, err, key, value)
	}
}

// allEvents reads partition 0 of topic from offset 0 with an admin
// client: what was written, whoever wrote it.
func allEvents(t *testing.T, admin heraldpb.HeraldClient, topic string) []*heraldpb.Event {
	t.Helper()
	resp, err := admin.Fetch(ctxTimeout(t, 10*time.Second), &heraldpb.FetchRequest{Topic: topic, Start: &heraldpb.FetchRequest_Offset{Offset: 0}, MaxEvents: 10_000})
	if err != nil {
		t.Fatalf("admin fetch: %v", err)
	}
	return resp.GetEvents()
}

func tenantEvents(tenant string, n int) []*heraldpb.Event {
	evs := make([]*heraldpb.Event, n)
	for i := range evs {
		evs[i] = &heraldpb.Event{TenantId: tenant, Payload: []byte(tenant)}
	}
	return evs
}

// onlyTenant fails when an event of another tenant than tenant is among evs.
func onlyTenant(t *testing.T, what, tenant string, evs []*heraldpb.Event) {
	t.Helper()
	for _, e := range evs {
		if e.GetTenantId() != tenant || string(e.GetPayload()) != tenant {
			t.Fatalf("%s: event at offset %d of tenant %q leaked to a token of tenant %q", what, e.GetOffset(), e.GetTenantId(), tenant)
		}
	}
}

// startAuthCluster starts a 3-node cluster that checks tokens, with a
// one-partition topic "shared" (every tenant's events in one partition)
// and tenants acme and globex.
func startAuthCluster(t *testing.T) (*testCluster, *authTestKeys, heraldpb.HeraldClient) {
	t.Helper()
	keys := newAuthTestKeys(t)
	c := startClusterConfig(t, 3, keys.configure)
	admin := clientWithToken(t, c.cfgs[0].GRPCAddr, keys.token("*", []string{auth.ActionAdmin}))
	// Retried while the controller has no leader (an election right after
	// the start, on a loaded machine); TOPIC_EXISTS after a retry means an
	// earlier try committed.
	eventually(t, 20*time.Second, func() error {
		_, err := admin.CreateTopic(ctxTimeout(t, 10*time.Second), &heraldpb.CreateTopicRequest{Config: &heraldpb.TopicConfig{
			Name: "shared", Partitions: 1, ReplicationFactor: 3}})
		if err = wire.FromStatus(err); errors.Is(err, wire.ErrTopicExists) {
			return nil
		}
		return err
	})
	createTenant(t, admin, "acme")
	createTenant(t, admin, "globex")
	return c, keys, admin
}

// Tokens over gRPC: no token, another tenant's token, a forged or expired
// token are refused and write nothing; a tenant token reads only its
// tenant's events of a shared partition (fetch, subscribe catch-up and
// live tail); a tenant token is refused on admin and group calls; a
// produce sent to a follower is forwarded with the client's token.
func TestAuthGRPC(t *testing.T) {
	c, keys, admin := startAuthCluster(t)
	addr := c.cfgs[0].GRPCAddr
	acmeTok := keys.token("acme", []string{auth.ActionProduce, auth.ActionConsume})
	acme := clientWithToken(t, addr, acmeTok)
	globex := clientWithToken(t, addr, keys.token("globex", []string{auth.ActionProduce, auth.ActionConsume}))
	produceRetry(t, acme, "shared", tenantEvents("acme", 3)...)
	produceRetry(t, globex, "shared", tenantEvents("globex", 4)...)
	// Counting what is in the partition: n1 may trail the leader, so each
	// count waits for a fence event (tenant "fence", produced last, after
	// the calls checked); anything a refused call wrote would come before.
	createTenant(t, admin, "fence")
	written := 7
	nothingWritten := func(what string) {
		t.Helper()
		produceRetry(t, admin, "shared", tenantEvents("fence", 1)...)
		written++
		var n int
		eventually(t, 10*time.Second, func() error {
			evs := allEvents(t, admin, "shared")
			if n = len(evs); n == 0 || evs[n-1].GetTenantId() != "fence" || n < written {
				return fmt.Errorf("%d events read, the fence not among them yet", n)
			}
			return nil
		})
		if n != written {
			t.Fatalf("%s: %d events in the partition, want %d: a refused call wrote", what, n, written)
		}
	}
	nothingWritten("the acknowledged produces")

	t.Run("unauthenticated", func(t *testing.T) {
		_, err := clientWithToken(t, addr, "").Produce(ctxTimeout(t, 10*time.Second), &heraldpb.ProduceRequest{Topic: "shared", Events: tenantEvents("acme", 1)})
		wantRefusal(t, "produce without a token", err, wire.ErrUnauthenticated, wire.MetadataWhat, auth.WhatMissing)
		_, err = clientWithToken(t, addr, "").Metadata(ctxTimeout(t, 10*time.Second), &heraldpb.MetadataRequest{})
		wantRefusal(t, "metadata without a token", err, wire.ErrUnauthenticated, wire.MetadataWhat, auth.WhatMissing)
		pubPEM := keys.pubPEM
		for _, tc := range []struct{ name, token, what string }{
			{"expired", keys.tokenExpiring("acme", time.Now().Add(-time.Minute), []string{auth.ActionProduce}), auth.WhatExpired},
			{"alg none", keys.forged("none", func(string) []byte { return nil }), auth.WhatSignature},
			{"HS256 keyed with the public key", keys.forged("HS256", func(s string) []byte {
				m := hmac.New(sha256.New, pubPEM)
				m.Write([]byte(s))
				return m.Sum(nil)
			}), auth.WhatSignature},
			{"tampered", func() string {
				parts := strings.Split(acmeTok, ".")
				forged := strings.Split(keys.forged("EdDSA", func(string) []byte { return nil }), ".")
				return parts[0] + "." + forged[1] + "." + parts[2]
			}(), auth.WhatSignature},
			{"not a token", "hello", auth.WhatMalformed},
		} {
			_, err := clientWithToken(t, addr, tc.token).Produce(ctxTimeout(t, 10*time.Second),
				&heraldpb.ProduceRequest{Topic: "shared", Events: tenantEvents("acme", 1)})
			wantRefusal(t, tc.name, err, wire.ErrUnauthenticated, wire.MetadataWhat, tc.what)
		}
		nothingWritten("unauthenticated produces")
	})

	t.Run("other tenant writes nothing", func(t *testing.T) {
		_, err := acme.Produce(ctxTimeout(t, 10*time.Second), &heraldpb.ProduceRequest{Topic: "shared", Events: tenantEvents("globex", 1)})
		wantRefusal(t, "acme producing for globex", err, wire.ErrPermissionDenied, wire.MetadataTenant, "globex")
		mixed := append(tenantEvents("acme", 2), tenantEvents("globex", 1)...)
		_, err = acme.Produce(ctxTimeout(t, 10*time.Second), &heraldpb.ProduceRequest{Topic: "shared", Events: mixed})
		wantRefusal(t, "a mixed batch", err, wire.ErrPermissionDenied, wire.MetadataAction, auth.ActionProduce)
		readOnly := clientWithToken(t, addr, keys.token("acme", []string{auth.ActionConsume}))
		_, err = readOnly.Produce(ctxTimeout(t, 10*time.Second), &heraldpb.ProduceRequest{Topic: "shared", Events: tenantEvents("acme", 1)})
		wantRefusal(t, "a consume-only token producing", err, wire.ErrPermissionDenied, wire.MetadataAction, auth.ActionProduce)
		otherTopic := clientWithToken(t, addr, keys.token("acme", []string{auth.ActionProduce}, "orders.*"))
		_, err = otherTopic.Produce(ctxTimeout(t, 10*time.Second), &heraldpb.ProduceRequest{Topic: "shared", Events: tenantEvents("acme", 1)})
		wantRefusal(t, "a token for other topics", err, wire.ErrPermissionDenied, wire.MetadataTopic, "shared")
		nothingWritten("refused produces")
	})

	t.Run("fetch reads only the token's tenant", func(t *testing.T) {
		resp, err := acme.Fetch(ctxTimeout(t, 10*time.Second), &heraldpb.FetchRequest{Topic: "shared", Start: &heraldpb.FetchRequest_Offset{Offset: 0}})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetEvents()) != 3 {
			t.Fatalf("acme fetched %d events, want its 3", len(resp.GetEvents()))
		}
		onlyTenant(t, "fetch", "acme", resp.GetEvents())
		_, err = acme.Fetch(ctxTimeout(t, 10*time.Second), &heraldpb.FetchRequest{Topic: "shared", TenantId: "globex", Start: &heraldpb.FetchRequest_Offset{Offset: 0}})
		wantRefusal(t, "acme fetching globex", err, wire.ErrPermissionDenied, wire.MetadataTenant, "globex")
		// From every node (a follower's replica answers too).
		for i := range c.cfgs {
			resp, err := clientWithToken(t, c.cfgs[i].GRPCAddr, acmeTok).Fetch(ctxTimeout(t, 10*time.Second),
				&heraldpb.FetchRequest{Topic: "shared", Start: &heraldpb.FetchRequest_Position{Position: heraldpb.StartPosition_EARLIEST}})
			if err != nil {
				t.Fatalf("fetch from %s: %v", c.cfgs[i].NodeID, err)
			}
			onlyTenant(t, "fetch from "+c.cfgs[i].NodeID, "acme", resp.GetEvents())
		}
	})

	t.Run("subscribe reads only the token's tenant", func(t *testing.T) {
		ctx := ctxTimeout(t, 30*time.Second)
		stream, err := acme.Subscribe(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&heraldpb.SubscribeRequest{Msg: &heraldpb.SubscribeRequest_Start{Start: &heraldpb.SubscribeStart{
			Topic: "shared", Start: &heraldpb.SubscribeStart_Offset{Offset: 0}, HeartbeatMs: 100}}}); err != nil {
			t.Fatal(err)
		}
		var got []*heraldpb.Event
		recvUntil := func(n int) {
			t.Helper()
			for len(got) < n {
				resp, err := stream.Recv()
				if err != nil {
					t.Fatalf("subscribe: %v (after %d events)", err, len(got))
				}
				onlyTenant(t, "subscribe", "acme", resp.GetEvents())
				got = append(got, resp.GetEvents()...)
			}
		}
		recvUntil(3) // catch-up
		// The live tail: globex's events come first, then acme's; only
		// acme's arrive, none of globex's before them.
		produceRetry(t, globex, "shared", tenantEvents("globex", 5)...)
		produceRetry(t, acme, "shared", tenantEvents("acme", 2)...)
		recvUntil(5)
		if len(got) != 5 {
			t.Fatalf("subscribe got %d events, want 5", len(got))
		}
		written += 7

		other, err := acme.Subscribe(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := other.Send(&heraldpb.SubscribeRequest{Msg: &heraldpb.SubscribeRequest_Start{Start: &heraldpb.SubscribeStart{
			Topic: "shared", TenantId: "globex", Start: &heraldpb.SubscribeStart_Offset{Offset: 0}}}}); err != nil {
			t.Fatal(err)
		}
		_, err = other.Recv()
		wantRefusal(t, "acme subscribing to globex", err, wire.ErrPermissionDenied, wire.MetadataTenant, "globex")
	})

	t.Run("tenant token refused on admin and group calls", func(t *testing.T) {
		ctx := ctxTimeout(t, 20*time.Second)
		calls := map[string]func() error{
			"CreateTopic": func() error {
				_, err := acme.CreateTopic(ctx, &heraldpb.CreateTopicRequest{Config: &heraldpb.TopicConfig{Name: "x", Partitions: 1, ReplicationFactor: 1}})
				return err
			},
			"DeleteTopic": func() error {
				_, err := acme.DeleteTopic(ctx, &heraldpb.DeleteTopicRequest{Name: "shared", Force: true})
				return err
			},
			"CreateTenant": func() error {
				_, err := acme.CreateTenant(ctx, &heraldpb.CreateTenantRequest{Tenant: &heraldpb.Tenant{Id: "evil"}})
				return err
			},
			"SetTenantQuota": func() error {
				_, err := acme.SetTenantQuota(ctx, &heraldpb.SetTenantQuotaRequest{Id: "globex", Quota: &heraldpb.TenantQuota{EventsPerSec: 1}})
				return err
			},
			"ListTenants": func() error { _, err := acme.ListTenants(ctx, &heraldpb.ListTenantsRequest{}); return err },
			"DescribeTenant other": func() error {
				_, err := acme.DescribeTenant(ctx, &heraldpb.DescribeTenantRequest{Id: "globex"})
				return err
			},
			"CreateGroup": func() error {
				_, err := acme.CreateGroup(ctx, &heraldpb.CreateGroupRequest{Topic: "shared", Group: "g"})
				return err
			},
			"JoinGroup": func() error {
				_, err := acme.JoinGroup(ctx, &heraldpb.JoinGroupRequest{Topic: "shared", Group: "g", MemberId: "m"})
				return err
			},
			"ListGroups": func() error { _, err := acme.ListGroups(ctx, &heraldpb.ListGroupsRequest{Topic: "shared"}); return err },
		}
		for name, call := range calls {
			wantRefusal(t, name, call(), wire.ErrPermissionDenied, "", "")
		}
		// What is left as it was.
		tenants, err := admin.ListTenants(ctx, &heraldpb.ListTenantsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, tn := range tenants.GetTenants() {
			if tn.GetId() == "evil" || tn.GetQuota().GetEventsPerSec() != 0 {
				t.Fatalf("a refused call changed the registry: %+v", tn)
			}
		}
		if _, err := admin.DescribeTopic(ctx, &heraldpb.DescribeTopicRequest{Name: "shared"}); err != nil {
			t.Fatalf("the topic a refused call deleted: %v", err)
		}
		// What a tenant token may do.
		if _, err := acme.DescribeTenant(ctx, &heraldpb.DescribeTenantRequest{Id: "acme"}); err != nil {
			t.Fatalf("describe its own tenant: %v", err)
		}
		if _, err := acme.Metadata(ctx, &heraldpb.MetadataRequest{}); err != nil {
			t.Fatalf("metadata: %v", err)
		}
		// An admin token does everything; a service token (tenant *) with
		// groups runs groups.
		if _, err := admin.CreateGroup(ctx, &heraldpb.CreateGroupRequest{Topic: "shared", Group: "g"}); err != nil {
			t.Fatalf("admin create group: %v", err)
		}
		svc := clientWithToken(t, addr, keys.token("*", []string{auth.ActionGroups}))
		if _, err := svc.DescribeGroup(ctx, &heraldpb.DescribeGroupRequest{Topic: "shared", Group: "g"}); err != nil {
			t.Fatalf("service token describe group: %v", err)
		}
		_, err = svc.DeleteTopic(ctx, &heraldpb.DeleteTopicRequest{Name: "shared"})
		wantRefusal(t, "service token deleting a topic", err, wire.ErrPermissionDenied, wire.MetadataAction, auth.ActionAdmin)
	})

	t.Run("forwarded produce carries the token", func(t *testing.T) {
		md, err := admin.Metadata(ctxTimeout(t, 10*time.Second), &heraldpb.MetadataRequest{Topics: []string{"shared"}})
		if err != nil {
			t.Fatal(err)
		}
		leader := md.GetTopics()[0].GetPartitions()[0].GetLeaderId()
		for i, cfg := range c.cfgs {
			if cfg.NodeID == leader {
				continue
			}
			follower := clientWithToken(t, c.cfgs[i].GRPCAddr, acmeTok)
			if _, err := follower.Produce(ctxTimeout(t, 10*time.Second), &heraldpb.ProduceRequest{Topic: "shared", Events: tenantEvents("acme", 1)}); err != nil {
				t.Fatalf("produce through follower %s: %v", cfg.NodeID, err)
			}
			written++
			_, err := clientWithToken(t, c.cfgs[i].GRPCAddr, "").Produce(ctxTimeout(t, 10*time.Second), &heraldpb.ProduceRequest{Topic: "shared", Events: tenantEvents("acme", 1)})
			wantRefusal(t, "produce through a follower without a token", err, wire.ErrUnauthenticated, wire.MetadataWhat, auth.WhatMissing)
			break
		}
		nothingWritten("the forwarded produces")
	})

	t.Run("stream ends when its token expires", func(t *testing.T) {
		// Expired 27 s ago: still accepted (leeway 30 s), for 3 s more.
		short := clientWithToken(t, addr, keys.tokenExpiring("acme", time.Now().Add(-auth.Leeway+3*time.Second), []string{auth.ActionConsume}))
		ctx := ctxTimeout(t, 30*time.Second)
		stream, err := short.Subscribe(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&heraldpb.SubscribeRequest{Msg: &heraldpb.SubscribeRequest_Start{Start: &heraldpb.SubscribeStart{
			Topic: "shared", Start: &heraldpb.SubscribeStart_Position{Position: heraldpb.StartPosition_LATEST}, HeartbeatMs: 200}}}); err != nil {
			t.Fatal(err)
		}
		for {
			_, err := stream.Recv()
			if err != nil {
				wantRefusal(t, "a stream past its token's expiry", err, wire.ErrUnauthenticated, wire.MetadataWhat, auth.WhatExpired)
				break
			}
		}
	})
}

// Without Auth the node checks nothing (as before), and a config with
// auth keys but no peer authentication is refused.
func TestAuthConfig(t *testing.T) {
	cfg := Config{NodeID: "n1", DataDir: t.TempDir(), GRPCAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2",
		Auth: AuthConfig{KeysFile: "keys.pub"}}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "cluster secret") {
		t.Fatalf("auth without peer authentication: %v", err)
	}
	cfg.ClusterSecretFile = "secret"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("auth with a cluster secret: %v", err)
	}
	var a *authorizer
	if a.enabled() {
		t.Fatal("a nil authorizer checks")
	}
	// A node-internal call without a token passes; the same call from a
	// client is refused.
	keys := newAuthTestKeys(t)
	a, err := newAuthorizer(AuthConfig{KeysFile: keys.keysFile}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	handler := func(context.Context, any) (any, error) { return "ok", nil }
	info := &grpc.UnaryServerInfo{FullMethod: heraldMethodPrefix + "Produce"}
	if _, err := a.unary(withPeer(context.Background(), "n2"), &heraldpb.ProduceRequest{}, info, handler); err != nil {
		t.Fatalf("a peer's call without a token: %v", err)
	}
	_, err = a.unary(context.Background(), &heraldpb.ProduceRequest{}, info, handler)
	wantRefusal(t, "a client's call without a token", err, wire.ErrUnauthenticated, wire.MetadataWhat, auth.WhatMissing)
	// A peer's call with a client's token is checked against the token.
	ctx := metadata.NewIncomingContext(withPeer(context.Background(), "n2"),
		metadata.Pairs(authorizationKey, bearerPrefix+keys.token("acme", []string{auth.ActionConsume})))
	_, err = a.unary(ctx, &heraldpb.ProduceRequest{Topic: "t", Events: tenantEvents("acme", 1)}, info, handler)
	wantRefusal(t, "a forwarded call with a consume token", err, wire.ErrPermissionDenied, wire.MetadataAction, auth.ActionProduce)
	// Health and the peer services are not the authorizer's.
	for _, m := range []string{"/grpc.health.v1.Health/Check", "/herald.v1.NodeInternal/NodeStatus"} {
		if _, err := a.unary(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: m}, handler); err != nil {
			t.Fatalf("%s: %v", m, err)
		}
	}
}

// Every method of the Herald service has a policy: a method added
// without one would be refused to every token.
func TestEveryHeraldMethodHasAPolicy(t *testing.T) {
	desc := heraldpb.Herald_ServiceDesc
	names := map[string]bool{}
	for _, m := range desc.Methods {
		names[m.MethodName] = true
	}
	for _, s := range desc.Streams {
		names[s.StreamName] = true
	}
	for name := range names {
		full := "/" + desc.ServiceName + "/" + name
		if _, ok := methodPolicies[full]; !ok {
			t.Errorf("no policy for %s", full)
		}
		if !strings.HasPrefix(full, heraldMethodPrefix) {
			t.Errorf("%s does not start with %s", full, heraldMethodPrefix)
		}
	}
	for full := range methodPolicies {
		if !names[strings.TrimPrefix(full, heraldMethodPrefix)] {
			t.Errorf("policy for %s, which the service does not have", full)
		}
	}
}
