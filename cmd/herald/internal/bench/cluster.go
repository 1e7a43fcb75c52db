package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/heraldlog/herald/server/proccluster"
)

// clusterReadyTimeout bounds the wait for every local node's /readyz.
const clusterReadyTimeout = 60 * time.Second

// LocalCluster is a throwaway cluster of `herald serve` child processes
// (server/proccluster) on 127.0.0.1 with their data in a temporary
// directory. Its methods are called by one goroutine (the run that owns
// it); each node has a waiter goroutine, owned by the harness, that ends
// when the node exits. Close stops the nodes, waits for them and removes
// the directory.
type LocalCluster struct {
	dir   string
	procs *proccluster.Cluster
}

// StartLocalCluster starts n nodes of exe (`exe serve ... --log-level
// warn`, then nodeArgs) on free 127.0.0.1 ports, each with an admin
// listener (pprof, the full /metrics) and its data and log under one
// new temporary directory, and waits until /readyz answers 200 on every
// node. On failure every node already started is stopped and the
// directory removed. log (nil: discarded) gets one line per node.
func StartLocalCluster(ctx context.Context, exe string, n int, nodeArgs []string, log io.Writer) (*LocalCluster, error) {
	if log == nil {
		log = io.Discard
	}
	dir, err := os.MkdirTemp("", "herald-bench-*")
	if err != nil {
		return nil, fmt.Errorf("bench: cluster directory: %w", err)
	}
	c := &LocalCluster{dir: dir}
	fail := func(err error) (*LocalCluster, error) {
		return nil, errors.Join(fmt.Errorf("bench: %w", err), c.Close())
	}
	nodes, err := proccluster.Layout(dir, n)
	if err != nil {
		return fail(err)
	}
	if nodes, err = proccluster.WithAdminAddrs(nodes); err != nil {
		return fail(err)
	}
	c.procs, err = proccluster.New(proccluster.Config{Binary: exe, Nodes: nodes, ServeArgs: append([]string{"--log-level", "warn"}, nodeArgs...)})
	if err != nil {
		return fail(err)
	}
	for i, node := range nodes {
		if err := c.procs.Start(i); err != nil {
			return fail(err)
		}
		fmt.Fprintf(log, "bench: started %s pid=%d grpc=%s http=%s admin=%s\n", node.ID, c.procs.Process(i).Pid(), node.GRPCAddr, node.HTTPAddr, node.AdminAddr)
	}
	rctx, cancel := context.WithTimeout(ctx, clusterReadyTimeout)
	defer cancel()
	if err := c.procs.AwaitReady(rctx); err != nil {
		return fail(fmt.Errorf("local cluster: %w; logs in %s", err, dir))
	}
	return c, nil
}

// GRPCAddrs returns the nodes' gRPC addresses.
func (c *LocalCluster) GRPCAddrs() []string { return c.procs.GRPCAddrs() }

// PIDs returns the nodes' process ids.
func (c *LocalCluster) PIDs() []int {
	pids := make([]int, len(c.procs.Nodes()))
	for i := range pids {
		pids[i] = c.procs.Process(i).Pid()
	}
	return pids
}

// Exited returns an error naming the nodes that have exited, or nil.
func (c *LocalCluster) Exited() error {
	var errs []error
	for i, n := range c.procs.Nodes() {
		if !c.procs.Running(i) {
			errs = append(errs, fmt.Errorf("bench: node %s exited (%v); its log ends:\n%s", n.ID, c.procs.Process(i).Err(), c.procs.LogTail(i)))
		}
	}
	return errors.Join(errs...)
}

// Close stops every node (SIGTERM, then SIGKILL after
// proccluster.DefaultStopTimeout), waits for them and removes the
// directory. It is called once.
func (c *LocalCluster) Close() error {
	var errs []error
	if c.procs != nil {
		errs = append(errs, c.procs.Close())
	}
	if err := os.RemoveAll(c.dir); err != nil {
		errs = append(errs, fmt.Errorf("bench: removing %s: %w", c.dir, err))
	}
	return errors.Join(errs...)
}

// startRunCluster starts the local cluster of a run given no servers:
// localNodes nodes of exe (this binary when empty), announced on logOut.
// Defer finishRun with the run's named results to end it.
func startRunCluster(ctx context.Context, exe string, nodeArgs []string, logOut io.Writer) (*LocalCluster, error) {
	exe, err := (&Options{Executable: exe}).executable()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(logOut, "bench: starting a local %d-node cluster (%s serve)\n", localNodes, exe)
	return StartLocalCluster(ctx, exe, localNodes, nodeArgs, logOut)
}

// finishRun ends a run's local cluster, deferred with pointers to the
// run's named results: a node that died during the run makes a run that
// succeeded fail with that error and no result (its figures are suspect),
// and a failure to close the cluster is joined to the run's error.
func finishRun[R any](c *LocalCluster, res *R, err *error) {
	if xerr := c.Exited(); xerr != nil && *err == nil {
		var none R
		*res, *err = none, xerr
	}
	if cerr := c.Close(); cerr != nil {
		*err = errors.Join(*err, cerr)
	}
}
