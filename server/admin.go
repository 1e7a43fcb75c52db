package server

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The admin listener (Config.AdminAddr) serves what operators need and
// nobody else may see: every pprof endpoint (profiles and traces reveal
// the process's memory and work), the full /metrics (with the tenant
// series the public port hides when credentials are required), /healthz
// and /readyz. It is plaintext and checks no credentials: it is meant for
// loopback, and a non-loopback address is logged as a warning. Off unless
// configured.

// httpReadHeaderTimeout bounds the reading of one request's header on the
// node's HTTP servers (public and admin).
const httpReadHeaderTimeout = 5 * time.Second

// startAdmin starts the admin listener when one is configured. Close shuts
// it down before the gRPC server.
func (n *Node) startAdmin() error {
	lis := n.cfg.AdminListener
	if lis == nil {
		if n.cfg.AdminAddr == "" {
			return nil
		}
		var err error
		if lis, err = net.Listen("tcp", n.cfg.AdminAddr); err != nil {
			return fmt.Errorf("server: listen admin: %w", err)
		}
	}
	if !isLoopback(lis.Addr()) {
		n.logger.Warn("admin listener is not on loopback: pprof and every tenant's metrics are served without credentials to whoever reaches it",
			"admin", lis.Addr().String())
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(n.registry, promhttp.HandlerOpts{Registry: n.registry}))
	// pprof.Index serves every named profile (heap, goroutine, allocs,
	// block, mutex, threadcreate) under /debug/pprof/<name>; the others
	// are their own handlers.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	n.handleHealth(mux)
	n.adminLis = lis
	n.adminServer = &http.Server{Handler: mux, ReadHeaderTimeout: httpReadHeaderTimeout}
	n.wg.Add(1)
	go func() { // owned by the node: ends when Close shuts the server down
		defer n.wg.Done()
		if err := n.adminServer.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.logger.Error("admin server stopped", "err", err)
		}
	}()
	n.logger.Info("admin listener", "admin", lis.Addr().String())
	return nil
}

// AdminAddr is the admin listener's address, "" when there is none.
func (n *Node) AdminAddr() string {
	if n.adminLis == nil {
		return ""
	}
	return n.adminLis.Addr().String()
}

// isLoopback reports whether a listener's address is a loopback one
// (127.0.0.0/8, ::1). An unspecified address (every interface) is not.
func isLoopback(addr net.Addr) bool {
	if tcp, ok := addr.(*net.TCPAddr); ok {
		return tcp.IP.IsLoopback()
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
