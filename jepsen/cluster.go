package jepsen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldpb"
)

// ErrNodeDown is returned when an operation needs a node that is not running.
var ErrNodeDown = errors.New("jepsen: node not running")

// clusterStopTimeout bounds the wait for a node to exit after SIGTERM
// before SIGKILL.
const clusterStopTimeout = 5 * time.Second

// Node is one `herald serve` process slot. Its fields are fixed at
// NewCluster; the process state lives in Cluster.
type Node struct {
	ID, GRPCAddr, HTTPAddr, DataDir, LogPath string
}

// nodeProc is a running process and the channel its waiter closes when it
// exits.
type nodeProc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	paused bool
}

// Cluster is N herald serve processes whose peer links all go through
// proxies: Link(i, j) carries node i's connections to node j. It is safe
// for concurrent use. Each started process has one waiter goroutine, which
// ends when the process does; Close kills every process and closes every
// proxy.
type Cluster struct {
	Nodes []Node
	// ServeArgs are extra `herald serve` flags for every node (Raft
	// tuning); set before the first Start.
	ServeArgs []string
	binary    string
	links     [][]*Proxy // links[i][j], nil when i == j
	logger    *slog.Logger
	mu        struct {
		sync.Mutex
		procs []*nodeProc // nil: not running
		// wiped[i]: node i's data directory was wiped; its next start
		// passes --rejoin (and clears it).
		wiped  []bool
		closed bool
	}
}

// NewCluster lays out n nodes under dir (dir/n<i>), on free loopback
// ports, with the proxy mesh; it starts nothing.
func NewCluster(binary, dir string, n int, logger *slog.Logger) (*Cluster, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{binary: binary, logger: logger}
	c.mu.procs = make([]*nodeProc, n)
	c.mu.wiped = make([]bool, n)
	for i := range n {
		id := fmt.Sprintf("n%d", i+1)
		grpcAddr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		httpAddr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		c.Nodes = append(c.Nodes, Node{
			ID: id, GRPCAddr: grpcAddr, HTTPAddr: httpAddr,
			DataDir: filepath.Join(dir, id), LogPath: filepath.Join(dir, id+".log"),
		})
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

// freeAddr picks a free loopback port by binding :0 and releasing it.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("jepsen: free port: %w", err)
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// Addrs returns the nodes' client (gRPC) addresses.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.GRPCAddr
	}
	return out
}

// Link returns the proxy carrying node i's connections to node j.
func (c *Cluster) Link(i, j int) *Proxy { return c.links[i][j] }

// Wipe kills node i and deletes its data directory (not its log file);
// its next start, by Start or HealAll, passes --rejoin.
func (c *Cluster) Wipe(i int) error {
	if err := c.Kill(i); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.procs[i] != nil { // restarted meanwhile
		return fmt.Errorf("jepsen: wipe %s: it runs", c.Nodes[i].ID)
	}
	if err := os.RemoveAll(c.Nodes[i].DataDir); err != nil {
		return fmt.Errorf("jepsen: wipe %s: %w", c.Nodes[i].ID, err)
	}
	c.mu.wiped[i] = true
	return nil
}

// Start starts node i (no-op when it runs), with --rejoin when its data
// directory was wiped since its last start.
func (c *Cluster) Start(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.closed {
		return ErrProxyClosed
	}
	if c.mu.procs[i] != nil {
		return nil
	}
	n := c.Nodes[i]
	peers := make([]string, len(c.Nodes))
	var via []string
	for j, m := range c.Nodes {
		peers[j] = m.ID + "=" + m.GRPCAddr
		if j != i {
			via = append(via, m.GRPCAddr+"="+c.links[i][j].Addr())
		}
	}
	if err := os.MkdirAll(n.DataDir, 0o755); err != nil {
		return fmt.Errorf("jepsen: %w", err)
	}
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("jepsen: %w", err)
	}
	cmd := exec.Command(c.binary, "serve", "--id", n.ID, "--data", n.DataDir,
		"--grpc", n.GRPCAddr, "--http", n.HTTPAddr, "--peers", strings.Join(peers, ","),
		"--dial-via", strings.Join(via, ","), "--log-level", "warn")
	cmd.Args = append(cmd.Args, c.ServeArgs...)
	rejoin := c.mu.wiped[i]
	if rejoin {
		cmd.Args = append(cmd.Args, "--rejoin")
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("jepsen: starting %s: %w", n.ID, err)
	}
	p := &nodeProc{cmd: cmd, exited: make(chan struct{})}
	c.mu.procs[i] = p
	c.mu.wiped[i] = false
	c.logger.Debug("jepsen: node started", "node", n.ID, "pid", cmd.Process.Pid, "grpc", n.GRPCAddr, "rejoin", rejoin)
	go func() { // owned by the process: ends when it exits
		err := cmd.Wait()
		c.logger.Debug("jepsen: node exited", "node", n.ID, "err", err)
		_ = logf.Close()
		close(p.exited)
		c.mu.Lock()
		if c.mu.procs[i] == p {
			c.mu.procs[i] = nil
		}
		c.mu.Unlock()
	}()
	return nil
}

// StartAll starts every node.
func (c *Cluster) StartAll() error {
	var errs []error
	for i := range c.Nodes {
		errs = append(errs, c.Start(i))
	}
	return errors.Join(errs...)
}

// proc returns node i's process, nil when it does not run.
func (c *Cluster) proc(i int) *nodeProc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.procs[i]
}

// Running reports whether node i's process runs (paused counts).
func (c *Cluster) Running(i int) bool { return c.proc(i) != nil }

// Kill sends SIGKILL to node i and waits for it to exit.
func (c *Cluster) Kill(i int) error {
	p := c.proc(i)
	if p == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	return nil
}

// Stop sends SIGTERM to node i (resuming it first if paused) and waits
// for it to exit, SIGKILL after clusterStopTimeout.
func (c *Cluster) Stop(i int) error {
	p := c.proc(i)
	if p == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-time.After(clusterStopTimeout):
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
		return fmt.Errorf("jepsen: %s did not exit within %s of SIGTERM; killed", c.Nodes[i].ID, clusterStopTimeout)
	}
}

// awaitServing waits, up to d, until node i answers ClusterStatus itself.
func (c *Cluster) awaitServing(ctx context.Context, i int, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		actx, acancel := context.WithTimeout(ctx, time.Second)
		_, err := askClusterStatus(actx, c.Nodes[i].GRPCAddr)
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
func askClusterStatus(ctx context.Context, addr string) (*client.ClusterStatusResponse, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
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
func (c *Cluster) Pause(i int) error { return c.signal(i, syscall.SIGSTOP, true) }

// Resume sends SIGCONT to node i.
func (c *Cluster) Resume(i int) error { return c.signal(i, syscall.SIGCONT, false) }

func (c *Cluster) signal(i int, sig syscall.Signal, paused bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.mu.procs[i]
	if p == nil {
		return fmt.Errorf("jepsen: %s: %w", c.Nodes[i].ID, ErrNodeDown)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("jepsen: signal %s: %w", c.Nodes[i].ID, err)
	}
	p.paused = paused
	return nil
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
		if p := c.proc(i); p != nil {
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
	c.mu.Lock()
	c.mu.closed = true
	procs := append([]*nodeProc(nil), c.mu.procs...)
	c.mu.Unlock()
	for _, p := range procs {
		if p == nil {
			continue
		}
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline, cancel := context.WithTimeout(context.Background(), clusterStopTimeout)
	defer cancel()
	for _, p := range procs {
		if p == nil {
			continue
		}
		select {
		case <-p.exited:
		case <-deadline.Done():
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.exited
		}
	}
	var errs []error
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
	return client.New(ctx, client.Config{
		Servers: c.Addrs(), DialTimeout: time.Second, RequestTimeout: 2 * time.Second,
		MaxRetries: 10, BackoffMax: 500 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
	})
}
