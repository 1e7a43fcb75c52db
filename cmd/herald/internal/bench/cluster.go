package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Bounds of the local cluster.
const (
	clusterReadyTimeout      = 60 * time.Second
	clusterReadyPollInterval = 100 * time.Millisecond
	clusterProbeTimeout      = time.Second
	// clusterStopTimeout bounds the wait after SIGTERM before SIGKILL.
	clusterStopTimeout = 10 * time.Second
	// nodeLogTailBytes is how much of a failed node's log an error quotes.
	nodeLogTailBytes = 2 << 10
)

// localNode is one `herald serve` child.
type localNode struct {
	id, grpcAddr, httpAddr, dataDir string
	cmd                             *exec.Cmd
	exited                          chan struct{} // closed by the node's waiter once cmd.Wait returned
	waitErr                         error         // set before exited is closed
}

// LocalCluster is a throwaway cluster of `herald serve` child processes
// on 127.0.0.1 with their data in a temporary directory. Its methods are
// called by one goroutine (the run that owns it); each node has a waiter
// goroutine, owned by the cluster, that ends when the node exits. Close
// stops the nodes, waits for the waiters and removes the directory.
type LocalCluster struct {
	dir   string
	nodes []*localNode
}

// StartLocalCluster starts n nodes of exe (`exe serve ...`) on free
// 127.0.0.1 ports, each with its data and node.log under one new
// temporary directory, and waits until /readyz answers 200 on every node.
// On failure every node already started is stopped and the directory
// removed. log (nil: discarded) gets one line per node.
func StartLocalCluster(ctx context.Context, exe string, n int, log io.Writer) (*LocalCluster, error) {
	if log == nil {
		log = io.Discard
	}
	dir, err := os.MkdirTemp("", "herald-bench-*")
	if err != nil {
		return nil, fmt.Errorf("bench: cluster directory: %w", err)
	}
	c := &LocalCluster{dir: dir}
	ports, err := freePorts(2 * n)
	if err != nil {
		c.Close()
		return nil, err
	}
	peers := make([]string, n)
	for i := range n {
		node := &localNode{
			id:       fmt.Sprintf("n%d", i+1),
			grpcAddr: fmt.Sprintf("127.0.0.1:%d", ports[i]),
			httpAddr: fmt.Sprintf("127.0.0.1:%d", ports[n+i]),
			exited:   make(chan struct{}),
		}
		node.dataDir = filepath.Join(dir, node.id)
		peers[i] = node.id + "=" + node.grpcAddr
		c.nodes = append(c.nodes, node)
	}
	for _, node := range c.nodes {
		if err := c.start(exe, node, strings.Join(peers, ",")); err != nil {
			c.Close()
			return nil, err
		}
		fmt.Fprintf(log, "bench: started %s pid=%d grpc=%s http=%s\n", node.id, node.cmd.Process.Pid, node.grpcAddr, node.httpAddr)
	}
	if err := c.awaitReady(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// start launches one node with its output in <data>/node.log.
func (c *LocalCluster) start(exe string, node *localNode, peers string) error {
	if err := os.MkdirAll(node.dataDir, 0o755); err != nil {
		return fmt.Errorf("bench: %s: %w", node.id, err)
	}
	logFile, err := os.Create(filepath.Join(node.dataDir, "node.log"))
	if err != nil {
		return fmt.Errorf("bench: %s: %w", node.id, err)
	}
	defer logFile.Close() // the child holds its own descriptor
	cmd := exec.Command(exe, "serve", "--id", node.id, "--data", node.dataDir,
		"--grpc", node.grpcAddr, "--http", node.httpAddr, "--peers", peers, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = childSysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("bench: starting %s (%s serve): %w", node.id, exe, err)
	}
	node.cmd = cmd
	go func() {
		node.waitErr = cmd.Wait()
		close(node.exited)
	}()
	return nil
}

// awaitReady polls every node's /readyz until all answer 200, a node
// exits, ctx ends or clusterReadyTimeout passes.
func (c *LocalCluster) awaitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, clusterReadyTimeout)
	defer cancel()
	hc := &http.Client{Timeout: clusterProbeTimeout}
	tick := time.NewTicker(clusterReadyPollInterval)
	defer tick.Stop()
	for {
		ready := 0
		for _, node := range c.nodes {
			select {
			case <-node.exited:
				return fmt.Errorf("bench: node %s exited before it was ready (%v); its log ends:\n%s", node.id, node.waitErr, c.logTail(node))
			default:
			}
			if probeReady(ctx, hc, node.httpAddr) {
				ready++
			}
		}
		if ready == len(c.nodes) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench: local cluster not ready (%d of %d nodes): %w; logs in %s", ready, len(c.nodes), ctx.Err(), c.dir)
		case <-tick.C:
		}
	}
}

// probeReady asks one node's /readyz once.
func probeReady(ctx context.Context, hc *http.Client, httpAddr string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/readyz", nil)
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

// logTail returns the end of a node's log.
func (c *LocalCluster) logTail(node *localNode) string {
	b, err := os.ReadFile(filepath.Join(node.dataDir, "node.log"))
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) > nodeLogTailBytes {
		b = b[len(b)-nodeLogTailBytes:]
	}
	return string(bytes.TrimSpace(b))
}

// GRPCAddrs returns the nodes' gRPC addresses.
func (c *LocalCluster) GRPCAddrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.grpcAddr
	}
	return addrs
}

// PIDs returns the nodes' process ids.
func (c *LocalCluster) PIDs() []int {
	pids := make([]int, len(c.nodes))
	for i, n := range c.nodes {
		pids[i] = n.cmd.Process.Pid
	}
	return pids
}

// Exited returns an error naming the nodes that have exited, or nil.
func (c *LocalCluster) Exited() error {
	var errs []error
	for _, n := range c.nodes {
		select {
		case <-n.exited:
			errs = append(errs, fmt.Errorf("bench: node %s exited (%v); its log ends:\n%s", n.id, n.waitErr, c.logTail(n)))
		default:
		}
	}
	return errors.Join(errs...)
}

// Close stops every node (SIGTERM, then SIGKILL after
// clusterStopTimeout), waits for them and removes the directory. It is
// called once.
func (c *LocalCluster) Close() error {
	for _, n := range c.nodes {
		if n.cmd != nil {
			_ = terminate(n.cmd.Process)
		}
	}
	deadline := time.NewTimer(clusterStopTimeout)
	defer deadline.Stop()
	for _, n := range c.nodes {
		if n.cmd == nil {
			continue
		}
		select {
		case <-n.exited:
		case <-deadline.C:
			for _, m := range c.nodes {
				if m.cmd != nil {
					_ = m.cmd.Process.Kill()
				}
			}
			<-n.exited
		}
	}
	if err := os.RemoveAll(c.dir); err != nil {
		return fmt.Errorf("bench: removing %s: %w", c.dir, err)
	}
	return nil
}

// freePorts returns n distinct ports free on 127.0.0.1 just now. They are
// held open together while chosen, so none repeats; another process may
// still take one before a node listens on it (the node then fails and
// StartLocalCluster says so).
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	listeners := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("bench: finding a free port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
