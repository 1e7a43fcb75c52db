package server

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// startHTTP serves /metrics, /healthz (the process is up), /readyz (the
// controller has a leader and every replica assigned here is open) and the
// WebSocket gateway at /v1/ws.
func (n *Node) startHTTP() error {
	reg := n.registry
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(n.metrics.collectors()...)
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
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	// Profiles for operators (CPU, heap, goroutines): the HTTP port is an
	// operations port, not for clients.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// The WebSocket gateway (ws_gateway.go): a client port, beside the
	// operations endpoints.
	n.ws = newWSGateway(n)
	mux.Handle(wsPath, n.ws)
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
	lis := n.cfg.HTTPListener
	if lis == nil {
		var err error
		if lis, err = net.Listen("tcp", n.cfg.HTTPAddr); err != nil {
			return fmt.Errorf("server: listen http: %w", err)
		}
	}
	lis = n.limits.limitConns(lis, listenerHTTP, n.logger)
	n.httpLis = lis
	n.httpServer = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.httpServer.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.logger.Error("http server stopped", "err", err)
		}
	}()
	return nil
}

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
