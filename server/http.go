package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// startHTTP registers the node's metrics and serves the public HTTP port:
// /metrics (without tenant series when credentials are required),
// /healthz, /readyz and the WebSocket gateway at /v1/ws. pprof is only on
// the admin listener (admin.go).
func (n *Node) startHTTP() error {
	reg := n.registry
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(n.metrics.collectors()...)
	reg.MustRegister(n.authz.collectors()...)
	reg.MustRegister(n.limits.metrics.collectors()...)
	reg.MustRegister(n.partitionMetrics.Collectors()...)
	reg.MustRegister(n.mux.Collectors()...)
	reg.MustRegister(newPartitionCollector(n))
	reg.MustRegister(newGroupCollector(n))
	reg.MustRegister(n.lag)
	reg.MustRegister(n.coordinatorMetrics.collectors()...)
	// The node's Pebble compactions: db is opened before this and closed
	// after the HTTP server has shut down (Close), so a scrape never sees it
	// closed.
	if db := n.db; db != nil {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "herald_pebble_compactions_total",
			Help: "Pebble compactions completed by this process (the log's LSM, every partition on the node).",
		}, func() float64 { return float64(db.Pebble().Metrics().Compact.Count) }))
	}

	mux := http.NewServeMux()
	// The public port is reachable by clients: its /metrics hides the
	// tenant series when credentials are required (metrics_public.go), and
	// it serves no pprof at all (profiles are on the admin listener,
	// admin.go).
	public := publicGatherer(reg, n.cfg.Auth)
	mux.Handle("/metrics", promhttp.HandlerFor(public, promhttp.HandlerOpts{Registry: reg}))
	// The WebSocket gateway (ws_gateway.go): a client port, beside the
	// operations endpoints.
	n.ws = newWSGateway(n)
	mux.Handle(wsPath, n.ws)
	n.handleHealth(mux)
	lis := n.cfg.HTTPListener
	if lis == nil {
		var err error
		if lis, err = net.Listen("tcp", n.cfg.HTTPAddr); err != nil {
			return fmt.Errorf("server: listen http: %w", err)
		}
	}
	lis = n.limits.limitConns(lis, listenerHTTP, n.logger)
	n.httpLis = lis
	if conf := n.peerAuth.httpTLS(); conf != nil {
		lis = tls.NewListener(lis, conf) // https and wss
	}
	n.httpServer = &http.Server{Handler: mux, ReadHeaderTimeout: httpReadHeaderTimeout}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.httpServer.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.logger.Error("http server stopped", "err", err)
		}
	}()
	return nil
}

// handleHealth adds /healthz (the process is up) and /readyz (ready, 200,
// or why not, 503) to mux: the public port and the admin listener serve
// both.
func (n *Node) handleHealth(mux *http.ServeMux) {
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := n.ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
}

// ready returns nil when the node serves: the controller has a leader,
// this node's registry has caught up with it, and every replica assigned
// here is open. /readyz and the gRPC health service (health.go) report it.
func (n *Node) ready() error {
	if id, _ := n.controllerLeader(); id == "" {
		return errors.New("no controller leader")
	}
	if !n.registrySynced.Load() {
		return fmt.Errorf("registry not caught up with the controller leader yet (applied %d)", n.controllerFSM.AppliedIndex())
	}
	for _, a := range n.controllerFSM.AssignedTo(n.cfg.NodeID) {
		if n.replica(a.Partition.GroupID) == nil {
			return fmt.Errorf("replica of %s/%d not open", a.Topic, a.Partition.Index)
		}
	}
	return nil
}

var _ prometheus.Collector = (*partitionCollector)(nil)
