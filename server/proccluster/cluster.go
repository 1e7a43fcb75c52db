package proccluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"
)

// Errors of the harness.
var (
	// ErrClosed is returned by Start after Close.
	ErrClosed = errors.New("proccluster: cluster closed")
	// ErrNotRunning is returned by Pause and Resume for a node whose
	// process does not run.
	ErrNotRunning = errors.New("proccluster: node not running")
)

// Bounds of the harness.
const (
	// DefaultStopTimeout bounds the wait after SIGTERM before SIGKILL.
	DefaultStopTimeout = 10 * time.Second
	// reapTimeout bounds the wait for a process to be reaped after SIGKILL.
	reapTimeout = 30 * time.Second
	// readyPollInterval and readyProbeTimeout pace AwaitReady's /readyz probes.
	readyPollInterval = 100 * time.Millisecond
	readyProbeTimeout = time.Second
	// logTailBytesMax is how much of a node's log an error quotes.
	logTailBytesMax = 2 << 10
)

// Config describes a cluster. Binary and Nodes are required.
type Config struct {
	// Binary is the herald executable; each node runs `Binary serve ...`.
	Binary string
	Nodes  []Node
	// ServeArgs are extra `serve` flags of every node at every start
	// (--log-level, Raft tuning).
	ServeArgs []string
	// NodeArgs, when set, returns node i's own extra flags, asked at each
	// start (jepsen's --dial-via).
	NodeArgs func(i int) []string
	// Env, when set, returns node i's environment, asked at each start;
	// nil or a nil result inherits this process's.
	Env func(i int) []string
	// StopTimeout bounds the wait after SIGTERM before SIGKILL (Stop,
	// Close); 0 means DefaultStopTimeout.
	StopTimeout time.Duration
	// OnExit, when set, is called once for each process after it was
	// reaped, by that process's waiter goroutine. It must not block; it
	// may call the Cluster's methods only from another goroutine.
	OnExit func(Exit)
	// Logger gets a debug line per start and exit; nil discards.
	Logger *slog.Logger
	// TLSDir, when set, runs every node with TLS: New makes what is
	// missing in it (certs.EnsureDev: the CA, a certificate per node, a
	// client certificate "admin") and each node gets --tls-cert, --tls-key
	// and --tls-ca. Clients take ClientTLS.
	TLSDir string
	// ClusterSecretFile, when set (and TLSDir not), is made if missing
	// (certs.EnsureSecret) and given to every node as
	// --cluster-secret-file.
	ClusterSecretFile string
	// With neither, the nodes run with --insecure: peer RPCs open to any
	// caller, as in-process test clusters.
}

// Validate reports every problem of the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.Binary == "" {
		errs = append(errs, errors.New("proccluster: Binary is required"))
	}
	if len(c.Nodes) == 0 {
		errs = append(errs, errors.New("proccluster: no nodes"))
	}
	ids := map[string]bool{}
	for i, n := range c.Nodes {
		if n.ID == "" || n.GRPCAddr == "" || n.HTTPAddr == "" || n.DataDir == "" || n.LogPath == "" {
			errs = append(errs, fmt.Errorf("proccluster: node %d: ID, GRPCAddr, HTTPAddr, DataDir and LogPath are required", i))
		}
		if ids[n.ID] {
			errs = append(errs, fmt.Errorf("proccluster: node id %q twice", n.ID))
		}
		ids[n.ID] = true
	}
	if c.StopTimeout < 0 {
		errs = append(errs, fmt.Errorf("proccluster: StopTimeout %s is negative", c.StopTimeout))
	}
	return errors.Join(errs...)
}

// Exit is the end of one node process.
type Exit struct {
	Node    int
	Process *Process
	Err     error // cmd.Wait's result: nil for exit status 0
}

// Process is one started `herald serve`. Its methods are safe for
// concurrent use.
type Process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed by the waiter once the process was reaped
	err    error         // set before exited is closed
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited is closed once the process has exited and been reaped.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Err returns how the process ended; call it after Exited is closed.
func (p *Process) Err() error { return p.err }

// done reports whether the process has exited.
func (p *Process) done() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// awaitExit waits up to d for the process to exit.
func (p *Process) awaitExit(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.exited:
		return true
	case <-t.C:
		return false
	}
}

// Cluster is a set of `herald serve` processes. Its methods are safe for
// concurrent use; those that signal one node act on the process running at
// the time of the call.
type Cluster struct {
	cfg    Config
	logger *slog.Logger
	// clientTLS is the clients' TLS configuration with TLSDir (the CA
	// and the client certificate "admin"), nil without; set by New.
	clientTLS *tls.Config
	mu        struct {
		sync.Mutex
		procs []*Process // the last process started per node; nil: never started
		// wiped[i]: node i's data was wiped; its next start passes
		// --rejoin (and clears it).
		wiped  []bool
		closed bool
	}
}

// New checks cfg and returns a cluster with nothing started.
func New(cfg Config) (*Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = DefaultStopTimeout
	}
	cfg.Nodes = append([]Node(nil), cfg.Nodes...)
	c := &Cluster{cfg: cfg, logger: cfg.Logger}
	if err := c.prepareSecurity(); err != nil {
		return nil, err
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	c.mu.procs = make([]*Process, len(cfg.Nodes))
	c.mu.wiped = make([]bool, len(cfg.Nodes))
	return c, nil
}

// Nodes returns the nodes' layout.
func (c *Cluster) Nodes() []Node { return append([]Node(nil), c.cfg.Nodes...) }

// Node returns node i's layout.
func (c *Cluster) Node(i int) Node { return c.cfg.Nodes[i] }

// GRPCAddrs returns the nodes' gRPC addresses.
func (c *Cluster) GRPCAddrs() []string {
	addrs := make([]string, len(c.cfg.Nodes))
	for i, n := range c.cfg.Nodes {
		addrs[i] = n.GRPCAddr
	}
	return addrs
}

// Start starts node i with extra flags for this start only; it is a no-op
// when node i runs. After Wipe the start also passes --rejoin. The output
// is appended to the node's LogPath.
//
// Start holds the cluster's lock across creating the directories and
// forking, an exception to "no lock across I/O": it is what makes two
// concurrent Starts of a node, or a Start racing Wipe or Close, start at
// most one process; the work is a few system calls.
func (c *Cluster) Start(i int, extraArgs ...string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.closed {
		return ErrClosed
	}
	if p := c.mu.procs[i]; p != nil && !p.done() {
		return nil
	}
	n := c.cfg.Nodes[i]
	if err := os.MkdirAll(n.DataDir, 0o755); err != nil {
		return fmt.Errorf("proccluster: %s: %w", n.ID, err)
	}
	if err := os.MkdirAll(filepath.Dir(n.LogPath), 0o755); err != nil {
		return fmt.Errorf("proccluster: %s: %w", n.ID, err)
	}
	logFile, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("proccluster: %s: %w", n.ID, err)
	}
	defer logFile.Close() // the child holds its own descriptor
	args := []string{"serve", "--id", n.ID, "--data", n.DataDir,
		"--grpc", n.GRPCAddr, "--http", n.HTTPAddr, "--peers", Peers(c.cfg.Nodes)}
	if n.AdminAddr != "" {
		args = append(args, "--admin-addr", n.AdminAddr)
	}
	args = append(args, c.securityArgs(n)...)
	if c.cfg.NodeArgs != nil {
		args = append(args, c.cfg.NodeArgs(i)...)
	}
	args = append(args, c.cfg.ServeArgs...)
	args = append(args, extraArgs...)
	rejoin := c.mu.wiped[i]
	if rejoin {
		args = append(args, "--rejoin")
	}
	cmd := exec.Command(c.cfg.Binary, args...)
	if c.cfg.Env != nil {
		cmd.Env = c.cfg.Env(i)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("proccluster: starting %s (%s serve): %w", n.ID, c.cfg.Binary, err)
	}
	p := &Process{cmd: cmd, exited: make(chan struct{})}
	c.mu.procs[i] = p
	c.mu.wiped[i] = false
	c.logger.Debug("proccluster: node started", "node", n.ID, "pid", cmd.Process.Pid, "grpc", n.GRPCAddr, "rejoin", rejoin)
	go c.reap(i, p) // owned by the process: ends when it exits
	return nil
}

// reap waits for p, then reports its exit.
func (c *Cluster) reap(i int, p *Process) {
	p.err = p.cmd.Wait()
	close(p.exited)
	c.logger.Debug("proccluster: node exited", "node", c.cfg.Nodes[i].ID, "err", p.err)
	if c.cfg.OnExit != nil {
		c.cfg.OnExit(Exit{Node: i, Process: p, Err: p.err})
	}
}

// StartAll starts every node that does not run.
func (c *Cluster) StartAll() error {
	var errs []error
	for i := range c.cfg.Nodes {
		errs = append(errs, c.Start(i))
	}
	return errors.Join(errs...)
}

// Process returns node i's last started process (running or exited), nil
// before its first start.
func (c *Cluster) Process(i int) *Process {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.procs[i]
}

// running returns node i's process if it runs, else nil.
func (c *Cluster) running(i int) *Process {
	if p := c.Process(i); p != nil && !p.done() {
		return p
	}
	return nil
}

// Running reports whether node i's process runs (a paused one counts).
func (c *Cluster) Running(i int) bool { return c.running(i) != nil }

// Kill sends SIGKILL to node i and waits for it to be reaped.
func (c *Cluster) Kill(i int) error {
	p := c.running(i)
	if p == nil {
		return nil
	}
	return c.kill(i, p)
}

func (c *Cluster) kill(i int, p *Process) error {
	_ = p.cmd.Process.Kill()
	if !p.awaitExit(reapTimeout) {
		return fmt.Errorf("proccluster: %s (pid %d) not reaped %s after SIGKILL", c.cfg.Nodes[i].ID, p.Pid(), reapTimeout)
	}
	return nil
}

// Stop sends SIGTERM to node i (SIGCONT first, should it be paused) and
// waits for it to exit; after Config.StopTimeout it kills it and says so.
func (c *Cluster) Stop(i int) error {
	p := c.running(i)
	if p == nil {
		return nil
	}
	_ = terminate(p.cmd.Process)
	if p.awaitExit(c.cfg.StopTimeout) {
		return nil
	}
	return errors.Join(
		fmt.Errorf("proccluster: %s did not exit within %s of SIGTERM; killed", c.cfg.Nodes[i].ID, c.cfg.StopTimeout),
		c.kill(i, p))
}

// Restart stops node i (as Stop) and starts it again.
func (c *Cluster) Restart(i int) error {
	stopErr := c.Stop(i)
	return errors.Join(stopErr, c.Start(i))
}

// Pause sends SIGSTOP to node i.
func (c *Cluster) Pause(i int) error { return c.signal(i, "pause", pause) }

// Resume sends SIGCONT to node i.
func (c *Cluster) Resume(i int) error { return c.signal(i, "resume", resume) }

func (c *Cluster) signal(i int, what string, send func(*os.Process) error) error {
	p := c.running(i)
	if p == nil {
		return fmt.Errorf("proccluster: %s %s: %w", what, c.cfg.Nodes[i].ID, ErrNotRunning)
	}
	if err := send(p.cmd.Process); err != nil {
		return fmt.Errorf("proccluster: %s %s: %w", what, c.cfg.Nodes[i].ID, err)
	}
	return nil
}

// Wipe kills node i and deletes its data (its log is kept, also when it
// lies inside the data directory); the node's next start passes --rejoin,
// as a node that lost its disk must.
func (c *Cluster) Wipe(i int) error {
	if err := c.Kill(i); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.cfg.Nodes[i]
	if p := c.mu.procs[i]; p != nil && !p.done() { // started again meanwhile
		return fmt.Errorf("proccluster: wipe %s: it runs", n.ID)
	}
	if err := removeData(n); err != nil {
		return fmt.Errorf("proccluster: wipe %s: %w", n.ID, err)
	}
	c.mu.wiped[i] = true
	return nil
}

// removeData deletes n's data directory, or, when its log lies inside,
// everything there but the log.
func removeData(n Node) error {
	if filepath.Dir(n.LogPath) != filepath.Clean(n.DataDir) {
		return os.RemoveAll(n.DataDir)
	}
	entries, err := os.ReadDir(n.DataDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() != filepath.Base(n.LogPath) {
			if err := os.RemoveAll(filepath.Join(n.DataDir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// AwaitReady waits until every given node (all when none is given)
// answers 200 on /readyz: a controller leader is known and every replica
// assigned to it is open. It fails at once when one of them is not
// running, quoting the end of its log; ctx bounds the wait.
func (c *Cluster) AwaitReady(ctx context.Context, nodes ...int) error {
	if len(nodes) == 0 {
		for i := range c.cfg.Nodes {
			nodes = append(nodes, i)
		}
	}
	hc := &http.Client{Timeout: readyProbeTimeout, Transport: &http.Transport{TLSClientConfig: c.clientTLS}}
	defer hc.CloseIdleConnections()
	tick := time.NewTicker(readyPollInterval)
	defer tick.Stop()
	for {
		ready := 0
		for _, i := range nodes {
			if p := c.Process(i); p == nil || p.done() {
				var why error = ErrNotRunning
				if p != nil {
					why = p.Err()
				}
				return fmt.Errorf("proccluster: node %s exited before it was ready (%v); its log ends:\n%s", c.cfg.Nodes[i].ID, why, c.LogTail(i))
			}
			if ProbeReady(ctx, hc, c.HTTPURL(i)+"/readyz") {
				ready++
			}
		}
		if ready == len(nodes) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("proccluster: not ready (%d of %d nodes): %w", ready, len(nodes), ctx.Err())
		case <-tick.C:
		}
	}
}

// ProbeReady asks one node's /readyz (url) once with hc: true on 200.
// A request that fails counts as not ready.
func ProbeReady(ctx context.Context, hc *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<10))
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// LogTail returns the end of node i's log.
func (c *Cluster) LogTail(i int) string {
	b, err := os.ReadFile(c.cfg.Nodes[i].LogPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) > logTailBytesMax {
		b = b[len(b)-logTailBytesMax:]
	}
	return string(bytes.TrimSpace(b))
}

// Close stops every running node together (SIGCONT and SIGTERM, SIGKILL
// after Config.StopTimeout) and waits for them; later Starts fail. It is
// idempotent. It returns an error only when a process could not be reaped.
func (c *Cluster) Close() error {
	c.mu.Lock()
	c.mu.closed = true
	procs := append([]*Process(nil), c.mu.procs...)
	c.mu.Unlock()
	for _, p := range procs {
		if p != nil && !p.done() {
			_ = terminate(p.cmd.Process)
		}
	}
	deadline := time.NewTimer(c.cfg.StopTimeout)
	defer deadline.Stop()
	var errs []error
	killed := false
	for i, p := range procs {
		if p == nil || p.done() {
			continue
		}
		if !killed {
			select {
			case <-p.exited:
				continue
			case <-deadline.C:
				killed = true
				for _, q := range procs { // every one still running, at once
					if q != nil && !q.done() {
						_ = q.cmd.Process.Kill()
					}
				}
			}
		}
		errs = append(errs, c.kill(i, p))
	}
	return errors.Join(errs...)
}
