package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/heraldlog/herald/client/heraldpb"
)

// testCluster is n in-process nodes on loopback ports, each with its own
// data directory, driven through the public gRPC API.
type testCluster struct {
	t     *testing.T
	dirs  []string
	cfgs  []Config
	nodes []*Node
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("HERALD_TEST_LOGS") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(discard{}, nil))
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func startCluster(t *testing.T, size int) *testCluster {
	t.Helper()
	return startClusterConfig(t, size, nil)
}

// startClusterConfig is startCluster with each node's config changed by
// mutate (when not nil) before it starts.
func startClusterConfig(t *testing.T, size int, mutate func(*Config)) *testCluster {
	t.Helper()
	c := &testCluster{t: t}
	peers := map[string]string{}
	listeners := make([]net.Listener, size)
	for i := range size {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		listeners[i] = l
		peers[fmt.Sprintf("n%d", i+1)] = l.Addr().String()
	}
	root := t.TempDir()
	for i := range size {
		id := fmt.Sprintf("n%d", i+1)
		hl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg := Config{
			NodeID:       id,
			DataDir:      filepath.Join(root, id),
			GRPCAddr:     peers[id],
			HTTPAddr:     hl.Addr().String(),
			Peers:        peers,
			Logger:       testLogger(t).With("test", t.Name()),
			GRPCListener: listeners[i],
			HTTPListener: hl,
		}
		if mutate != nil {
			mutate(&cfg)
		}
		c.cfgs = append(c.cfgs, cfg)
		c.dirs = append(c.dirs, cfg.DataDir)
	}
	c.nodes = make([]*Node, size)
	// Before the starts: a failed start still closes the nodes started.
	t.Cleanup(c.close)
	for i := range size {
		n, err := StartNode(c.cfgs[i])
		if err != nil {
			t.Fatalf("start %s: %v", c.cfgs[i].NodeID, err)
		}
		c.nodes[i] = n
	}
	c.waitControllerLeader()
	return c
}

func (c *testCluster) close() {
	for i, n := range c.nodes {
		if n != nil {
			n.Close()
			c.nodes[i] = nil
		}
	}
}

// stop stops node i (cleanly); restart brings it back on the same data and ports.
func (c *testCluster) stop(i int) {
	c.nodes[i].Close()
	c.nodes[i] = nil
}

func (c *testCluster) restart(i int) {
	c.t.Helper()
	cfg := c.cfgs[i]
	var err error
	if cfg.GRPCListener, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
		c.t.Fatal(err)
	}
	if cfg.HTTPListener, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		c.t.Fatal(err)
	}
	n, err := StartNode(cfg)
	if err != nil {
		c.t.Fatalf("restart %s: %v", cfg.NodeID, err)
	}
	c.nodes[i] = n
}

func (c *testCluster) addrs() []string {
	var out []string
	for _, cfg := range c.cfgs {
		out = append(out, cfg.GRPCAddr)
	}
	return out
}

// rawClient is a plain gRPC client of one node, for per-replica reads.
func (c *testCluster) rawClient(i int) heraldpb.HeraldClient {
	c.t.Helper()
	conn, err := grpc.NewClient(c.cfgs[i].GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { conn.Close() })
	return heraldpb.NewHeraldClient(conn)
}

func (c *testCluster) waitControllerLeader() {
	c.t.Helper()
	eventually(c.t, 20*time.Second, func() error {
		for _, n := range c.nodes {
			if n == nil {
				continue
			}
			if id, _ := n.controllerLeader(); id == "" {
				return fmt.Errorf("%s sees no controller leader", n.cfg.NodeID)
			}
		}
		return nil
	})
}

// eventually polls cond until it returns nil or the deadline passes; it is
// for cluster convergence, which has no single event to wait on.
func eventually(t *testing.T, within time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("condition not met within %v: %v", within, err)
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func rawClientAt(t *testing.T, addr string) heraldpb.HeraldClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return heraldpb.NewHeraldClient(conn)
}
