package client_test

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/heraldlog/herald/server"
)

// exampleReadyTimeout bounds the wait for a fresh single-node cluster to
// elect its controller leader and report /readyz 200.
const exampleReadyTimeout = 30 * time.Second

// exampleReadyPollInterval is the pause between two /readyz probes.
const exampleReadyPollInterval = 50 * time.Millisecond

// startExampleCluster starts a real single-node Herald cluster in this
// process (node n1 on 127.0.0.1 ports chosen by the kernel, data in a fresh
// temporary directory, logs discarded) and waits until its /readyz answers
// 200. It returns the node's gRPC address and a stop function that closes
// the node and removes its directory; stop is safe to call once.
//
// Examples have no *testing.T, so a node that cannot start panics: the
// example then fails with the panic's message.
func startExampleCluster() (addr string, stop func()) {
	addr, stop, err := tryStartExampleCluster()
	if err != nil {
		panic(fmt.Sprintf("starting the example cluster: %v", err))
	}
	return addr, stop
}

// tryStartExampleCluster is startExampleCluster returning its error. On
// error nothing it started is left running.
func tryStartExampleCluster() (addr string, stop func(), err error) {
	dir, err := os.MkdirTemp("", "herald-example-")
	if err != nil {
		return "", nil, err
	}
	grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = os.RemoveAll(dir)
		return "", nil, err
	}
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = grpcLis.Close()
		_ = os.RemoveAll(dir)
		return "", nil, err
	}
	addr = grpcLis.Addr().String()
	node, err := server.StartNode(server.Config{
		NodeID:       "n1",
		DataDir:      dir,
		GRPCAddr:     addr,
		HTTPAddr:     httpLis.Addr().String(),
		Peers:        map[string]string{"n1": addr},
		GRPCListener: grpcLis,
		HTTPListener: httpLis,
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err != nil {
		// StartNode closes what it opened, but not necessarily listeners
		// it never got to serve on; closing a closed listener is harmless.
		_ = grpcLis.Close()
		_ = httpLis.Close()
		_ = os.RemoveAll(dir)
		return "", nil, err
	}
	stop = func() {
		node.Close()
		_ = os.RemoveAll(dir)
	}
	if err := waitReady(node.HTTPAddr(), exampleReadyTimeout); err != nil {
		stop()
		return "", nil, err
	}
	return addr, stop, nil
}

// waitReady polls http://httpAddr/readyz until it answers 200 or timeout
// passes. It keeps no connection open afterwards (goleak checks).
func waitReady(httpAddr string, timeout time.Duration) error {
	transport := &http.Transport{DisableKeepAlives: true}
	defer transport.CloseIdleConnections()
	hc := &http.Client{Transport: transport, Timeout: time.Second}
	url := "http://" + httpAddr + "/readyz"
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		resp, err := hc.Get(url)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", url, resp.Status)
		}
		last = err
		time.Sleep(exampleReadyPollInterval)
	}
	return errors.Join(fmt.Errorf("node not ready after %s", timeout), last)
}
