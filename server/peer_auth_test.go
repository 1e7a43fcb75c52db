package server

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	"github.com/heraldlog/herald/client/wsclient"
	"github.com/heraldlog/herald/raft/raftpb"
	"github.com/heraldlog/herald/server/certs"
	"github.com/heraldlog/herald/server/controller"
)

// writeTestSecret writes a cluster secret file of 32 random-looking bytes.
func writeTestSecret(t *testing.T, secret string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cluster.secret")
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// testSecret is a cluster secret for tests (64 hex digits).
var testSecret = hex.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))

// tlsTestDir makes a CA and node certificates n1..n<size> in a fresh
// directory.
func tlsTestDir(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	var ids []string
	for i := range size {
		ids = append(ids, fmt.Sprintf("n%d", i+1))
	}
	if err := certs.EnsureDev(dir, ids); err != nil {
		t.Fatal(err)
	}
	return dir
}

// withTLS sets a node's TLS files from dir.
func withTLS(dir string) func(*Config) {
	return func(cfg *Config) {
		cert, key := certs.NodeFiles(dir, cfg.NodeID)
		cfg.TLS = TLSFiles{CertFile: cert, KeyFile: key, CAFile: filepath.Join(dir, certs.CACertFile)}
	}
}

// controllerState returns the controller leader's id and the highest term
// any node has seen.
func (c *testCluster) controllerState() (leader string, term string) {
	for _, n := range c.nodes {
		if n == nil {
			continue
		}
		if id, _ := n.controllerLeader(); id != "" {
			leader = id
		}
		if t := n.controller.Raft().Stats()["term"]; t > term {
			term = t
		}
	}
	return leader, term
}

// controllerFollower returns the index of a node that does not lead the
// controller: the target of a TimeoutNow that would move the leadership.
func (c *testCluster) controllerFollower(leader string) int {
	for i, cfg := range c.cfgs {
		if cfg.NodeID != leader {
			return i
		}
	}
	c.t.Fatal("no follower")
	return -1
}

// attackPeerRPCs sends a follower of the controller a TimeoutNow for the
// controller group (which, served, makes it start an election and take
// the leadership) and calls NodeInternal, over conn; it returns both
// errors.
func attackPeerRPCs(ctx context.Context, conn *grpc.ClientConn, leaderID, leaderAddr string) (timeoutNow, internal error) {
	_, timeoutNow = raftpb.NewRaftTransportClient(conn).TimeoutNow(ctx, &raftpb.TimeoutNowRequest{
		GroupId: controller.GroupID,
		Header:  &raftpb.RPCHeader{ProtocolVersion: int32(hraft.ProtocolVersionMax), Id: []byte(leaderID), Addr: []byte(leaderAddr)},
	})
	_, internal = heraldpb.NewNodeInternalClient(conn).NodeStatus(ctx, &heraldpb.NodeStatusRequest{})
	return timeoutNow, internal
}

// requireRefused checks that err is a refusal with code and reason.
func requireRefused(t *testing.T, what string, err error, code codes.Code, sentinel error) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("%s: got %v, want code %s", what, err, code)
	}
	if !errors.Is(wire.FromStatus(err), sentinel) {
		t.Fatalf("%s: %v is not %v", what, err, sentinel)
	}
}

// requireLeaderUnchanged checks that the controller kept its leader and
// term: nothing the attack sent was served. The refusals came back
// synchronously from the interceptor, before any handler.
func requireLeaderUnchanged(t *testing.T, c *testCluster, hc heraldpb.HeraldClient, leader, term string) {
	t.Helper()
	// A write through the controller: an election the attack started
	// would show as a new term by the time it commits.
	createTopic(t, hc, "after-attack", 1, 1)
	gotLeader, gotTerm := c.controllerState()
	if gotLeader != leader || gotTerm != term {
		t.Fatalf("controller moved: leader %s term %s, was leader %s term %s", gotLeader, gotTerm, leader, term)
	}
}

// The attack of issue 14: a program on the client port sends Raft's
// TimeoutNow to a follower of the controller and calls NodeInternal. In
// secret mode both are refused (no secret: UNAUTHENTICATED; a wrong
// secret: UNAUTHENTICATED) and the controller leader does not move; the
// cluster itself, whose nodes present the secret, works.
func TestPeerRPCsRefusedWithoutSecret(t *testing.T) {
	secretFile := writeTestSecret(t, testSecret)
	c := startClusterConfig(t, 3, func(cfg *Config) { cfg.ClusterSecretFile = secretFile })
	leader, term := c.controllerState()
	target := c.cfgs[c.controllerFollower(leader)].GRPCAddr
	leaderAddr := c.cfgs[0].Peers[leader]

	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := ctxTimeout(t, 10*time.Second)
	tn, in := attackPeerRPCs(ctx, conn, leader, leaderAddr)
	requireRefused(t, "TimeoutNow without secret", tn, codes.Unauthenticated, wire.ErrUnauthenticated)
	requireRefused(t, "NodeStatus without secret", in, codes.Unauthenticated, wire.ErrUnauthenticated)

	wrong := metadata.AppendToOutgoingContext(ctx, peerSecretKey, hex.EncodeToString([]byte("not the secret, not the secret!!")))
	tn, in = attackPeerRPCs(wrong, conn, leader, leaderAddr)
	requireRefused(t, "TimeoutNow with a wrong secret", tn, codes.Unauthenticated, wire.ErrUnauthenticated)
	requireRefused(t, "NodeStatus with a wrong secret", in, codes.Unauthenticated, wire.ErrUnauthenticated)

	requireLeaderUnchanged(t, c, c.rawClient(0), leader, term)
	refused := c.nodes[c.controllerFollower(leader)].peerAuth.refused
	if m, b := testutil.ToFloat64(refused.WithLabelValues(peerRefusedMissing)), testutil.ToFloat64(refused.WithLabelValues(peerRefusedBadSecret)); m != 2 || b != 2 {
		t.Fatalf("herald_peer_auth_refused_total: missing %v, bad_secret %v; want 2 and 2", m, b)
	}
}

// The same attack on a TLS cluster: plaintext does not get through the
// handshake; TLS without a client certificate is UNAUTHENTICATED; a
// client certificate from the cluster CA is PERMISSION_DENIED (it names
// no node); a node certificate from another CA fails the handshake. The
// leader does not move.
func TestPeerRPCsRefusedWithoutNodeCertificate(t *testing.T) {
	dir := tlsTestDir(t, 3)
	c := startClusterConfig(t, 3, withTLS(dir))
	leader, term := c.controllerState()
	target := c.cfgs[c.controllerFollower(leader)].GRPCAddr
	leaderAddr := c.cfgs[0].Peers[leader]
	caFile := filepath.Join(dir, certs.CACertFile)

	dialTLS := func(conf *tls.Config) *grpc.ClientConn {
		t.Helper()
		conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	ctx := ctxTimeout(t, 20*time.Second)

	plain, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	tn, in := attackPeerRPCs(ctx, plain, leader, leaderAddr)
	if status.Code(tn) != codes.Unavailable || status.Code(in) != codes.Unavailable {
		t.Fatalf("plaintext to a TLS node: %v, %v; want Unavailable (no handshake)", tn, in)
	}

	noCert, err := certs.ClientConfig(caFile, "", "")
	if err != nil {
		t.Fatal(err)
	}
	tn, in = attackPeerRPCs(ctx, dialTLS(noCert), leader, leaderAddr)
	requireRefused(t, "TimeoutNow without a certificate", tn, codes.Unauthenticated, wire.ErrUnauthenticated)
	requireRefused(t, "NodeStatus without a certificate", in, codes.Unauthenticated, wire.ErrUnauthenticated)

	clientCert, clientKey, err := certs.WriteClient(dir, "mallory")
	if err != nil {
		t.Fatal(err)
	}
	withClientCert, err := certs.ClientConfig(caFile, clientCert, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	tn, in = attackPeerRPCs(ctx, dialTLS(withClientCert), leader, leaderAddr)
	requireRefused(t, "TimeoutNow with a client certificate", tn, codes.PermissionDenied, wire.ErrPermissionDenied)
	requireRefused(t, "NodeStatus with a client certificate", in, codes.PermissionDenied, wire.ErrPermissionDenied)

	// A node certificate (even one naming a member) from another CA.
	other := tlsTestDir(t, 3)
	otherCert, otherKey := certs.NodeFiles(other, "n2")
	foreign, err := certs.ClientConfig(caFile, otherCert, otherKey)
	if err != nil {
		t.Fatal(err)
	}
	tn, in = attackPeerRPCs(ctx, dialTLS(foreign), leader, leaderAddr)
	if status.Code(tn) != codes.Unavailable || status.Code(in) != codes.Unavailable {
		t.Fatalf("a certificate from another CA: %v, %v; want Unavailable (handshake refused)", tn, in)
	}

	requireLeaderUnchanged(t, c, c.rawClientTLS(0, dir), leader, term)
	refused := c.nodes[c.controllerFollower(leader)].peerAuth.refused
	if m, n := testutil.ToFloat64(refused.WithLabelValues(peerRefusedMissing)), testutil.ToFloat64(refused.WithLabelValues(peerRefusedNotANode)); m != 2 || n != 2 {
		t.Fatalf("herald_peer_auth_refused_total: missing %v, not_a_node %v; want 2 and 2", m, n)
	}
}

// A node whose certificate is from another CA is refused both ways: its
// links to the cluster's nodes fail their handshake (it does not trust
// their certificates, and they refuse its own), so nothing the cluster
// commits reaches it, while the two others go on.
func TestPeerFromAnotherCARefused(t *testing.T) {
	dir := tlsTestDir(t, 3)
	c := startClusterConfig(t, 3, withTLS(dir))
	other := tlsTestDir(t, 3)

	// The dial side: a node of the other CA does not accept n1 as a peer.
	foreignNode, err := certs.NewReloader(certs.ReloaderOptions{CertFile: certFile(other, "n3"), KeyFile: keyFile(other, "n3"),
		CAFile: filepath.Join(other, certs.CACertFile)})
	if err != nil {
		t.Fatal(err)
	}
	if conn, err := tls.Dial("tcp", c.cfgs[0].GRPCAddr, withALPN(foreignNode.PeerClientConfig())); err == nil {
		conn.Close()
		t.Fatal("a node of another CA accepted n1's certificate")
	}

	// n3 restarts with the other CA's certificate: the cluster commits
	// without it and it receives nothing.
	c.stop(2)
	c.cfgs[2].TLS = TLSFiles{CertFile: certFile(other, "n3"), KeyFile: keyFile(other, "n3"), CAFile: filepath.Join(other, certs.CACertFile)}
	c.restart(2)
	// n1 may still name n3 the controller leader for a moment, and its
	// forward to n3 then fails the handshake: retried until n1 or n2
	// leads (a retry after an unknown outcome may find the topic there).
	n1 := c.rawClientTLS(0, dir)
	eventually(t, 20*time.Second, func() error {
		_, err := n1.CreateTopic(ctxTimeout(t, 10*time.Second), &heraldpb.CreateTopicRequest{Config: &heraldpb.TopicConfig{
			Name: "while-n3-is-foreign", Partitions: 1, ReplicationFactor: 1}})
		if err = wire.FromStatus(err); errors.Is(err, wire.ErrTopicExists) {
			return nil
		}
		return err
	})
	for _, i := range []int{0, 1} {
		eventually(t, 10*time.Second, func() error {
			if _, ok := c.nodes[i].controllerFSM.Topic("while-n3-is-foreign"); !ok {
				return fmt.Errorf("%s has not applied the topic", c.cfgs[i].NodeID)
			}
			return nil
		})
	}
	// A few election timeouts: long enough for a heartbeat to reach n3 if
	// any link to it were accepted.
	time.Sleep(3 * time.Second)
	if _, ok := c.nodes[2].controllerFSM.Topic("while-n3-is-foreign"); ok {
		t.Fatal("n3, with a certificate from another CA, applied what the cluster committed")
	}
	if id, _ := c.nodes[2].controllerLeader(); id != "" {
		t.Fatalf("n3 heard from controller leader %s", id)
	}
}

func certFile(dir, id string) string { f, _ := certs.NodeFiles(dir, id); return f }
func keyFile(dir, id string) string  { _, f := certs.NodeFiles(dir, id); return f }

// withALPN is conf offering gRPC's ALPN protocol, as a gRPC dial would.
func withALPN(conf *tls.Config) *tls.Config {
	conf = conf.Clone()
	conf.NextProtos = []string{"h2"}
	return conf
}

// rawClientTLS is rawClient over TLS with n1's node certificate (a peer's
// identity; the tests here have no client tokens).
func (c *testCluster) rawClientTLS(i int, dir string) heraldpb.HeraldClient {
	c.t.Helper()
	conf, err := certs.ClientConfig(filepath.Join(dir, certs.CACertFile), "", "")
	if err != nil {
		c.t.Fatal(err)
	}
	conn, err := grpc.NewClient(c.cfgs[i].GRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { conn.Close() })
	return heraldpb.NewHeraldClient(conn)
}

// A 3-node cluster with TLS: the SDK produces and reads over TLS (with
// only the CA, as a token client would), and the WebSocket client
// publishes, subscribes and joins a consumer group over wss (the
// gateway's own group client is a peer over mutual TLS).
func TestTLSClusterProduceConsume(t *testing.T) {
	dir := tlsTestDir(t, 3)
	c := startClusterConfig(t, 3, withTLS(dir))
	caFile := filepath.Join(dir, certs.CACertFile)
	conf, err := certs.ClientConfig(caFile, "", "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxTimeout(t, 60*time.Second)
	cl, err := client.New(ctx, client.Config{Servers: c.addrs(), TLS: conf, MaxRetries: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.CreateTopic(ctx, &client.TopicConfig{Name: "secure", Partitions: 1, ReplicationFactor: 3, AutoTenants: true}); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := cl.Produce(ctx, "secure", &client.Event{TenantId: "acme", Payload: fmt.Appendf(nil, "grpc %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	page, err := cl.Fetch(ctx, &client.FetchRequest{Topic: "secure", Start: &client.FetchFromPosition{Position: client.Earliest}})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.GetEvents()) != 10 || string(page.GetEvents()[9].GetPayload()) != "grpc 9" {
		t.Fatalf("fetched %d events over TLS, want the 10 produced", len(page.GetEvents()))
	}

	var urls []string
	for _, cfg := range c.cfgs {
		urls = append(urls, "wss://"+cfg.HTTPAddr+"/v1/ws")
	}
	ws, err := wsclient.Dial(ctx, wsclient.Config{URLs: urls, TLS: conf})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if _, err := ws.Publish(ctx, "secure", &heraldpb.Event{TenantId: "acme", Payload: []byte("wss 10")}); err != nil {
		t.Fatal(err)
	}
	sub, err := ws.Subscribe(ctx, wsclient.SubscribeOptions{Topic: "secure", Start: wsclient.StartEarliest})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for i := range 11 {
		e, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("grpc %d", i); i < 10 && string(e.Payload) != want {
			t.Fatalf("event %d over wss: %q, want %q", i, e.Payload, want)
		}
		if i == 10 && string(e.Payload) != "wss 10" {
			t.Fatalf("event 10 over wss: %q, want the one published over wss", e.Payload)
		}
	}

	if _, err := cl.CreateGroup(ctx, "secure", "g", nil, nil); err != nil {
		t.Fatal(err)
	}
	gs, err := ws.GroupSubscribe(ctx, wsclient.GroupSubscribeOptions{Topic: "secure", Group: "g"})
	if err != nil {
		t.Fatal(err)
	}
	defer gs.Close()
	b, err := gs.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Events) == 0 {
		t.Fatal("an empty group batch over wss")
	}

	// Plain ws to a TLS gateway does not connect.
	if _, err := wsclient.Dial(ctx, wsclient.Config{URLs: []string{"ws://" + c.cfgs[0].HTTPAddr + "/v1/ws"}, MaxRetries: -1}); err == nil {
		t.Fatal("ws:// to a TLS gateway connected")
	}
}

// Replacing a node's certificate files is seen by the next handshake
// (within the reloader's check interval), with no restart; the cluster
// goes on working with the new certificate.
func TestTLSReloadsCertificate(t *testing.T) {
	dir := tlsTestDir(t, 3)
	c := startClusterConfig(t, 3, withTLS(dir))
	caFile := filepath.Join(dir, certs.CACertFile)
	conf, err := certs.ClientConfig(caFile, "", "")
	if err != nil {
		t.Fatal(err)
	}
	serial := func() string {
		t.Helper()
		conn, err := tls.Dial("tcp", c.cfgs[0].GRPCAddr, &tls.Config{RootCAs: conf.RootCAs, NextProtos: []string{"h2"}, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	if _, _, err := certs.WriteNode(dir, "n1", nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		if got := serial(); got == before {
			return fmt.Errorf("n1 still serves certificate %s", got)
		}
		return nil
	})
	// The cluster works on: a write through the controller over TLS.
	ctx := ctxTimeout(t, 30*time.Second)
	cl, err := client.New(ctx, client.Config{Servers: c.addrs(), TLS: conf, MaxRetries: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.CreateTopic(ctx, &client.TopicConfig{Name: "after-rotation", Partitions: 1, ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
}

// A node refuses to start with a cluster secret shorter than 32 bytes, or
// with a certificate that names another node.
func TestPeerAuthConfigRefused(t *testing.T) {
	short := writeTestSecret(t, "too short")
	if _, err := newPeerAuth(&Config{NodeID: "n1", ClusterSecretFile: short}, testLogger(t)); err == nil {
		t.Fatal("a 9-byte cluster secret was accepted")
	}
	dir := tlsTestDir(t, 2)
	cfg := Config{NodeID: "n1"}
	cert, key := certs.NodeFiles(dir, "n2")
	cfg.TLS = TLSFiles{CertFile: cert, KeyFile: key, CAFile: filepath.Join(dir, certs.CACertFile)}
	if _, err := newPeerAuth(&cfg, testLogger(t)); err == nil {
		t.Fatal("n1 started with n2's certificate")
	}
}
