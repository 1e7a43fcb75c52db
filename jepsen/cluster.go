package jepsen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/server/proccluster"
)

// ErrNodeDown is returned when an operation needs a node that is not running.
var ErrNodeDown = errors.New("jepsen: node not running")

// clusterStopTimeout bounds the wait for a node to exit after SIGTERM
// before SIGKILL.
const clusterStopTimeout = 5 * time.Second

// Node is one `herald serve` process slot: data in dir/n<i>, log in
// dir/n<i>.log (kept by a wipe).
type Node = proccluster.Node

// Cluster is N herald serve processes whose peer links all go through
// proxies: Link(i, j) carries node i's connections to node j. It is safe
// for concurrent use. The processes are run by server/proccluster (one
// waiter goroutine per process, ending with it); Close stops every
// process and closes every proxy.
type Cluster struct {
	Nodes []Node
	// ServeArgs are extra `herald serve` flags for every node (Raft
	// tuning); set before the first Start.
	ServeArgs []string
	procs     *proccluster.Cluster
	links     [][]*Proxy // links[i][j], nil when i == j
}

// NewCluster lays out n nodes under dir (dir/n<i>), on free loopback
// ports, with the proxy mesh; it starts nothing. With withTLS every node
// and every client uses TLS (certificates made in dir/tls); without, the
// nodes know their peers by a secret (dir/cluster.secret).
func NewCluster(binary, dir string, n int, withTLS bool, logger *slog.Logger) (*Cluster, error) {
	nodes, err := proccluster.Layout(dir, n)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Nodes: nodes}
	pc := proccluster.Config{
		Binary: binary, Nodes: nodes, NodeArgs: c.nodeArgs,
		StopTimeout: clusterStopTimeout, Logger: logger,
		// Peers apart from clients: TLS, or a cluster secret.
		ClusterSecretFile: filepath.Join(dir, "cluster.secret"),
	}
	if withTLS {
		pc.TLSDir, pc.ClusterSecretFile = filepath.Join(dir, "tls"), ""
	}
	c.procs, err = proccluster.New(pc)
	if err != nil {
		return nil, err
	}
	c.links = make([][]*Proxy, n)
	for i := range n {
		c.links[i] = make([]*Proxy, n)
		for j := range n {
			if i == j {
				continue
			}
			p, err := NewProxy(c.Nodes[j].GRPCAddr)
			if err != nil {
				_ = c.Close()
				return nil, err
			}
			c.links[i][j] = p
		}
	}
	return c, nil
}

// nodeArgs are node i's own flags: its peers are dialled through its
// links, then ServeArgs.
func (c *Cluster) nodeArgs(i int) []string {
	var via []string
	for j, m := range c.Nodes {
		if j != i {
			via = append(via, m.GRPCAddr+"="+c.links[i][j].Addr())
		}
	}
	return append([]string{"--dial-via", strings.Join(via, ","), "--log-level", "warn"}, c.ServeArgs...)
}

// Addrs returns the nodes' client (gRPC) addresses.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.GRPCAddr
	}
	return out
}

// TLS returns the clients' TLS configuration (nil without TLS); callers
// must not change it.
func (c *Cluster) TLS() *tls.Config {
	if c.procs == nil {
		return nil // a cluster the tests lay out by hand, without processes
	}
	return c.procs.ClientTLS()
}

// dialNode opens a raw gRPC connection to a node: TLS with conf, or
// plaintext when conf is nil.
func dialNode(addr string, conf *tls.Config) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if conf != nil {
		creds = credentials.NewTLS(conf.Clone())
	}
	return grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
}

// Link returns the proxy carrying node i's connections to node j.
func (c *Cluster) Link(i, j int) *Proxy { return c.links[i][j] }

// Wipe kills node i and deletes its data directory (not its log file);
// its next start, by Start or HealAll, passes --rejoin.
func (c *Cluster) Wipe(i int) error { return c.procs.Wipe(i) }

// Start starts node i (no-op when it runs), with --rejoin when its data
// directory was wiped since its last start.
func (c *Cluster) Start(i int) error {
	if err := c.procs.Start(i); err != nil {
		if errors.Is(err, proccluster.ErrClosed) {
			return ErrProxyClosed
		}
		return err
	}
	return nil
}

// StartAll starts every node.
func (c *Cluster) StartAll() error { return c.procs.StartAll() }

// Running reports whether node i's process runs (paused counts).
func (c *Cluster) Running(i int) bool { return c.procs.Running(i) }

// Kill sends SIGKILL to node i and waits for it to exit.
func (c *Cluster) Kill(i int) error { return c.procs.Kill(i) }

// Stop sends SIGTERM to node i (resuming it first if paused) and waits
// for it to exit, SIGKILL after clusterStopTimeout.
func (c *Cluster) Stop(i int) error { return c.procs.Stop(i) }

// awaitServing waits, up to d, until node i answers ClusterStatus itself.
func (c *Cluster) awaitServing(ctx context.Context, i int, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		actx, acancel := context.WithTimeout(ctx, time.Second)
		_, err := askClusterStatus(actx, c.Nodes[i].GRPCAddr, c.TLS())
		acancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("jepsen: %s not serving after restart: %w", c.Nodes[i].ID, errors.Join(err, ctx.Err()))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// askClusterStatus asks the node at addr alone for the cluster status, in
// one attempt. A raw connection, not a client.Client: the SDK learns every
// node's address at bootstrap and sends calls round-robin, so its answer
// could come from another node. A node that is starting or catching up
// with the controller refuses (retryable).
func askClusterStatus(ctx context.Context, addr string, conf *tls.Config) (*client.ClusterStatusResponse, error) {
	conn, err := dialNode(addr, conf)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	st, err := heraldpb.NewHeraldClient(conn).ClusterStatus(ctx, &heraldpb.ClusterStatusRequest{})
	if err != nil {
		return nil, client.FromStatus(err)
	}
	return st, nil
}

// Pause sends SIGSTOP to node i.
func (c *Cluster) Pause(i int) error { return c.mapDown(c.procs.Pause(i)) }

// Resume sends SIGCONT to node i.
func (c *Cluster) Resume(i int) error { return c.mapDown(c.procs.Resume(i)) }

// mapDown marks the harness's not-running error as ErrNodeDown.
func (c *Cluster) mapDown(err error) error {
	if errors.Is(err, proccluster.ErrNotRunning) {
		return fmt.Errorf("%w: %w", ErrNodeDown, err)
	}
	return err
}

// Cut cuts the link from node i to node j (one direction: i's
// connections to j; j's to i stay up).
func (c *Cluster) Cut(i, j int) { c.links[i][j].SetMode(ModeCut) }

// Isolate cuts every link between the nodes of a and those of b, both ways.
func (c *Cluster) Isolate(a, b []int) {
	for _, i := range a {
		for _, j := range b {
			if i != j {
				c.Cut(i, j)
				c.Cut(j, i)
			}
		}
	}
}

// SlowAll delays every link by d (0 heals).
func (c *Cluster) SlowAll(d time.Duration) {
	for i := range c.links {
		for j, p := range c.links[i] {
			if i != j {
				p.SetDelay(d)
			}
		}
	}
}

// HealLinks puts every link back to pass without delay.
func (c *Cluster) HealLinks() {
	for i := range c.links {
		for j, p := range c.links[i] {
			if i != j {
				p.SetMode(ModePass)
				p.SetDelay(0)
			}
		}
	}
}

// HealAll heals the links, resumes paused nodes and starts stopped ones.
func (c *Cluster) HealAll() error {
	c.HealLinks()
	var errs []error
	for i := range c.Nodes {
		if c.Running(i) {
			errs = append(errs, c.Resume(i))
		} else {
			errs = append(errs, c.Start(i))
		}
	}
	return errors.Join(errs...)
}

// Close stops every node (SIGCONT, SIGTERM, SIGKILL after
// clusterStopTimeout) and closes every proxy. It is idempotent.
func (c *Cluster) Close() error {
	errs := []error{c.procs.Close()}
	for i := range c.links {
		for _, p := range c.links[i] {
			if p != nil {
				errs = append(errs, p.Close())
			}
		}
	}
	return errors.Join(errs...)
}

// newClient returns an SDK client over every node with short timeouts, so
// that one stopped node costs little.
func (c *Cluster) newClient(ctx context.Context) (*client.Client, error) {
	return c.newClientMode(ctx, client.BackpressureBlock)
}

// newClientMode is newClient with a backpressure mode (the flood ignores
// the cluster's hints).
func (c *Cluster) newClientMode(ctx context.Context, mode client.Backpressure) (*client.Client, error) {
	return client.New(ctx, client.Config{
		Servers: c.Addrs(), DialTimeout: time.Second, RequestTimeout: 2 * time.Second,
		MaxRetries: 10, BackoffMax: 500 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
		Backpressure: mode, TLS: c.TLS(),
	})
}
