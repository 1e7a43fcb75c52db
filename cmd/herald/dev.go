package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/server/certs"
	"github.com/heraldlog/herald/server/proccluster"
)

// Limits and delays of `herald dev`.
const (
	// devNodesMax keeps HTTP ports (port-base+100+i) clear of gRPC ports,
	// and admin ports (port-base+200+i) clear of HTTP ports.
	devNodesMax          = 99
	devRestartDelay      = time.Second
	devStopTimeout       = 10 * time.Second
	devReadyPollInterval = 250 * time.Millisecond
	devReadyProbeTimeout = time.Second
)

// newDevCommand runs a local cluster of child `herald serve` processes.
func newDevCommand() *cobra.Command {
	var (
		nodes, portBase int
		dataDir         string
		restart         bool
		withTLS         bool
		withAuth        bool
		limits          nodeLimitFlags
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a local cluster: nodes n1..nN as child processes",
		Long: `Run a local cluster of N nodes, each a child process running this binary's
"serve". Node i listens for gRPC on 127.0.0.1:<port-base+i>, for HTTP on
127.0.0.1:<port-base+100+i> and has its admin listener (pprof, the full
/metrics) on 127.0.0.1:<port-base+200+i>; it keeps its data in <data>/n<i>
and writes its stdout and stderr to <data>/n<i>/node.log.

Prints one line per node ("n1 pid=... grpc=... http=... admin=... data=..."), then
"ready" once the controller has a leader. A node that dies is reported as
"n1 exited: <reason>"; with --restart it is started again after 1s. SIGINT
or SIGTERM stops every node (SIGTERM, then SIGKILL after 10s) and exits 0.
Running dev again on the same --data resumes the cluster.

Peers are kept apart from clients: dev makes <data>/cluster.secret once
(reused on restart) and gives it to every node (--cluster-secret-file), so
a client cannot reach the Raft transport. With --tls, dev makes <data>/tls/
once instead (a CA, node certificates and a client certificate "admin",
see "herald certs") and every node serves gRPC, HTTP and wss over TLS and
speaks mutual TLS to its peers; dev prints the CA's path ("tls ca=...")
for clients.

With --auth, every node requires a signed token from its clients: dev
makes a signing key once in <data>/auth/ (signing.key, signing.pub), signs
an admin token for a day at each start (<data>/auth/admin.token), and
prints the line "context export HERALD_CONFIG=<data>/config.json": that
file holds a context "dev" with the servers, the CA and the admin token,
so every client verb works with that one variable. --tls --auth is the
secure setup of docs/security.md on one machine.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			layout, err := devLayout(nodes, dataDir, portBase)
			if err != nil {
				return err
			}
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("dev: finding this binary: %w", err)
			}
			addrs := make([]string, len(layout))
			for i, n := range layout {
				addrs[i] = n.GRPCAddr
			}
			cluster := proccluster.Config{Binary: exe, Nodes: layout, StopTimeout: devStopTimeout, ServeArgs: limits.serveArgs()}
			var clientTLS *tls.Config
			if withTLS {
				tlsDir := filepath.Join(dataDir, "tls")
				cluster.TLSDir = tlsDir
				// Made here (proccluster.New keeps what exists) to print
				// the paths and poll over TLS.
				ids := make([]string, len(layout))
				for i, n := range layout {
					ids[i] = n.ID
				}
				if err := certs.EnsureDev(tlsDir, ids); err != nil {
					return fmt.Errorf("dev: %w", err)
				}
				caFile := filepath.Join(tlsDir, certs.CACertFile)
				certFile, keyFile := certs.ClientFiles(tlsDir, "admin")
				if clientTLS, err = certs.ClientConfig(caFile, certFile, keyFile); err != nil {
					return fmt.Errorf("dev: %w", err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "tls ca=%s client-cert=%s client-key=%s\n", caFile, certFile, keyFile)
			} else {
				if err := os.MkdirAll(dataDir, 0o755); err != nil {
					return fmt.Errorf("dev: %w", err)
				}
				cluster.ClusterSecretFile = filepath.Join(dataDir, "cluster.secret")
			}
			var token string
			if withAuth {
				pubFile, tok, err := ensureDevAuth(filepath.Join(dataDir, "auth"))
				if err != nil {
					return fmt.Errorf("dev: %w", err)
				}
				token = tok
				cluster.ServeArgs = append(cluster.ServeArgs, "--auth-keys", pubFile)
			}
			if withTLS || withAuth {
				path, err := writeDevContext(dataDir, layout, withTLS, withAuth)
				if err != nil {
					return fmt.Errorf("dev: %w", err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "context export %s=%s\n", configEnv, path)
			}
			s := &supervisor{
				cluster:      cluster,
				ready:        pollReady(addrs, clientTLS, token, devReadyPollInterval),
				restart:      restart,
				restartDelay: devRestartDelay,
				out:          cmd.OutOrStdout(),
			}
			return s.run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.IntVar(&nodes, "nodes", 3, "number of nodes")
	f.StringVar(&dataDir, "data", "./data", "parent of the nodes' data directories")
	f.IntVar(&portBase, "port-base", 7700, "node i uses gRPC port port-base+i, HTTP port port-base+100+i and admin port port-base+200+i")
	f.BoolVar(&restart, "restart", false, "restart a node 1s after it exits")
	f.BoolVar(&withTLS, "tls", false, "run every node with TLS, with certificates made once in <data>/tls")
	f.BoolVar(&withAuth, "auth", false, "require client tokens; dev signs an admin token and writes <data>/config.json with a context for it")
	// The node limits, passed on to every node's serve.
	limits.register(f)
	return cmd
}

// devLayout places nodes n1..nN: gRPC on 127.0.0.1:<portBase+i>, HTTP on
// 127.0.0.1:<portBase+100+i>, admin on 127.0.0.1:<portBase+200+i>, data in <dataDir>/n<i>, log in
// <dataDir>/n<i>/node.log.
func devLayout(nodes int, dataDir string, portBase int) ([]proccluster.Node, error) {
	var errs []error
	if nodes < 1 || nodes > devNodesMax {
		errs = append(errs, fmt.Errorf("--nodes %d: want 1 to %d", nodes, devNodesMax))
	}
	if portBase < 1 || portBase+200+nodes > 65535 {
		errs = append(errs, fmt.Errorf("--port-base %d: ports %d to %d must lie in 1-65535", portBase, portBase+1, portBase+200+nodes))
	}
	if dataDir == "" {
		errs = append(errs, errors.New("--data is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, usageError{err}
	}
	layout := make([]proccluster.Node, nodes)
	for i := range layout {
		id := fmt.Sprintf("n%d", i+1)
		dir := filepath.Join(dataDir, id)
		layout[i] = proccluster.Node{
			ID:       id,
			GRPCAddr: fmt.Sprintf("127.0.0.1:%d", portBase+i+1),
			HTTPAddr: fmt.Sprintf("127.0.0.1:%d", portBase+100+i+1),
			// Loopback only: pprof and every tenant's metrics.
			AdminAddr: fmt.Sprintf("127.0.0.1:%d", portBase+200+i+1),
			DataDir:   dir,
			LogPath:   filepath.Join(dir, "node.log"),
		}
	}
	return layout, nil
}

// pollReady returns a readiness check that asks the nodes for metadata
// every interval until one names a controller leader, or ctx ends.
// With conf the nodes are asked over TLS.
func pollReady(addrs []string, conf *tls.Config, token string, interval time.Duration) func(context.Context) error {
	return func(ctx context.Context) error {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			if controllerLeaderKnown(ctx, addrs, conf, token) {
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-tick.C:
			}
		}
	}
}

// controllerLeaderKnown asks the nodes once whether a controller leader exists.
func controllerLeaderKnown(ctx context.Context, addrs []string, conf *tls.Config, token string) bool {
	c, err := client.New(ctx, client.Config{
		Servers: addrs, TLS: conf, Token: token, DialTimeout: devReadyProbeTimeout, RequestTimeout: devReadyProbeTimeout,
		MaxRetries: -1, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return false
	}
	defer c.Close()
	md, err := c.Metadata(ctx)
	return err == nil && md.GetControllerLeaderId() != ""
}

// supervisor starts the dev nodes (server/proccluster), reports and
// restarts the ones that exit, and stops them all when its context ends.
// One goroutine (run's) owns every field after start; the harness's
// waiter goroutine of each child sends its one exit event and ends, and
// the readiness check has one goroutine that run cancels and waits for.
type supervisor struct {
	// cluster is the nodes' configuration; run sets OnExit. Its
	// StopTimeout bounds the wait after SIGTERM before SIGKILL.
	cluster proccluster.Config
	ready   func(context.Context) error
	restart bool
	// restartDelay is the pause before restarting an exited node.
	restartDelay time.Duration
	out          io.Writer
}

// run supervises until ctx ends (nil: every node was stopped) or, without
// restart, until every node has exited (an error).
func (s *supervisor) run(ctx context.Context) error {
	nodes := s.cluster.Nodes
	// At most one live child per node, each sending one exit that run
	// receives before it starts that node again: the buffer never blocks
	// a waiter.
	exits := make(chan proccluster.Exit, len(nodes))
	restarts := make(chan int, len(nodes))
	cfg := s.cluster
	cfg.OnExit = func(e proccluster.Exit) { exits <- e }
	cluster, err := proccluster.New(cfg)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	alive := make(map[int]*proccluster.Process, len(nodes))
	timers := make(map[int]*time.Timer)

	start := func(i int) error {
		if err := cluster.Start(i); err != nil {
			return fmt.Errorf("dev: %w", err)
		}
		p := cluster.Process(i)
		alive[i] = p
		n := nodes[i]
		fmt.Fprintf(s.out, "%s pid=%d grpc=%s http=%s admin=%s data=%s\n", n.ID, p.Pid(), n.GRPCAddr, n.HTTPAddr, n.AdminAddr, n.DataDir)
		return nil
	}
	for i := range nodes {
		if err := start(i); err != nil {
			_ = cluster.Close()
			return err
		}
	}

	readyCtx, cancelReady := context.WithCancel(ctx)
	defer cancelReady()
	readyDone := make(chan error, 1)
	go func() { readyDone <- s.ready(readyCtx) }()
	readyPending := readyDone

	var result error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-readyPending:
			readyPending = nil
			if err == nil {
				fmt.Fprintln(s.out, "ready")
			}
		case ex := <-exits:
			if alive[ex.Node] != ex.Process {
				continue // not a current child; cannot happen, but never double-count
			}
			delete(alive, ex.Node)
			fmt.Fprintf(s.out, "%s exited: %s\n", nodes[ex.Node].ID, exitReason(ex.Err))
			if s.restart {
				i := ex.Node
				timers[i] = time.AfterFunc(s.restartDelay, func() { restarts <- i })
			} else if len(alive) == 0 {
				result = errors.New("dev: every node exited; see the node.log files")
				break loop
			}
		case i := <-restarts:
			delete(timers, i)
			if err := start(i); err != nil {
				fmt.Fprintf(s.out, "%s restart failed: %v\n", nodes[i].ID, err)
				timers[i] = time.AfterFunc(s.restartDelay, func() { restarts <- i })
			}
		}
	}
	cancelReady()
	if readyPending != nil {
		<-readyPending
	}
	for _, t := range timers {
		t.Stop() // a timer that already fired sent into restarts' buffer
	}
	_ = cluster.Close() // SIGTERM, SIGKILL after StopTimeout; reaps every node
	return result
}

// exitReason describes how a child ended: "exit status 1", "signal: killed".
func exitReason(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}
