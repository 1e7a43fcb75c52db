package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeConn is a connection from a chosen remote address that records
// whether it was closed.
type fakeConn struct {
	net.Conn
	remote net.Addr
	mu     sync.Mutex
	closed int
}

func (c *fakeConn) RemoteAddr() net.Addr { return c.remote }
func (c *fakeConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed++
	return nil
}
func (c *fakeConn) closes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// fakeListener hands out the connections sent on conns.
type fakeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newFakeListener() *fakeListener {
	return &fakeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *fakeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l *fakeListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *fakeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }

// countingHandler counts the WARN records logged through it.
type countingHandler struct {
	mu    sync.Mutex
	warns int
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn {
		h.mu.Lock()
		h.warns++
		h.mu.Unlock()
	}
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }
func (h *countingHandler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.warns
}

// TestAddrConnLimiter: the bound holds per remote address (IPv4-mapped
// IPv6 counted as IPv4); the connection past it is closed at once and
// counted, another address still gets in, closing an admitted connection
// (twice) frees one slot, connections without an IP address are not
// bounded, and the refusals log one WARN per interval.
func TestAddrConnLimiter(t *testing.T) {
	fake := newFakeListener()
	refused := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_refused"})
	logs := &countingHandler{}
	lis := newAddrConnLimiter(fake, listenerGRPC, 2, refused, slog.New(logs))
	defer lis.Close()

	accepted := make(chan net.Conn)
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	a, b := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	from := func(ip net.IP) *fakeConn { return &fakeConn{remote: &net.TCPAddr{IP: ip, Port: 5000}} }
	admitted := func(c *fakeConn) net.Conn {
		t.Helper()
		fake.conns <- c
		got := <-accepted
		if got.RemoteAddr() != c.remote {
			t.Fatalf("accepted %v, want %v", got.RemoteAddr(), c.remote)
		}
		return got
	}

	first := admitted(from(net.IPv4(127, 0, 0, 1)))
	admitted(from(net.ParseIP("::ffff:127.0.0.1"))) // the same address, mapped
	if got := lis.openFrom(a); got != 2 {
		t.Fatalf("%d open from %v, want 2", got, a)
	}
	// The third from 127.0.0.1 is closed without being returned; then
	// 127.0.0.2 is admitted (Accept handed on past the refused one).
	over := from(net.IPv4(127, 0, 0, 1))
	fake.conns <- over
	other := admitted(from(net.IPv4(127, 0, 0, 2)))
	if over.closes() != 1 {
		t.Fatalf("refused connection closed %d times, want 1", over.closes())
	}
	if got := testutil.ToFloat64(refused); got != 1 {
		t.Fatalf("refused counter %v, want 1", got)
	}
	// Closing an admitted connection (twice) frees exactly one slot.
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	_ = first.Close()
	if got := lis.openFrom(a); got != 1 {
		t.Fatalf("%d open from %v after a close, want 1", got, a)
	}
	admitted(from(net.IPv4(127, 0, 0, 1)))
	// A second refusal within the interval: counted, not logged again.
	again := from(net.IPv4(127, 0, 0, 1))
	fake.conns <- again
	admitted(from(net.IPv4(127, 0, 0, 2))) // Accept went on past the refused one
	if again.closes() != 1 {
		t.Fatal("refused connection not closed")
	}
	if got := testutil.ToFloat64(refused); got != 2 {
		t.Fatalf("refused counter %v, want 2", got)
	}
	if got := logs.count(); got != 1 {
		t.Fatalf("%d WARN lines for 2 refusals within the interval, want 1", got)
	}
	if got := lis.openFrom(b); got != 2 {
		t.Fatalf("%d open from %v, want 2", got, b)
	}
	_ = other.Close()
	if got := lis.openFrom(b); got != 1 {
		t.Fatalf("%d open from %v after a close, want 1", got, b)
	}
	// A connection without an IP address is not bounded.
	for range 3 {
		admitted(&fakeConn{remote: &net.UnixAddr{Name: "@x", Net: "unix"}})
	}
}

// dialState dials addr and reports whether the connection was refused
// (closed by the server at once) or stays open (the server waits for a
// request or speaks first); the connection is returned open or nil.
func dialState(t *testing.T, addr string) (net.Conn, bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadDeadline(time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	var b [64]byte
	_, err = c.Read(b[:])
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		_ = c.Close()
		return nil, true
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, false
}

// TestConnLimitsPerAddressOnNode: a node's gRPC and HTTP listeners close
// the connections from 127.0.0.1 past their per-address bounds at once,
// count them in herald_conn_refused_total{listener}, and admit again once
// connections close.
func TestConnLimitsPerAddressOnNode(t *testing.T) {
	const grpcMax, httpMax = 4, 3
	c := startClusterConfig(t, 1, func(cfg *Config) {
		cfg.Limits.GRPCConnsPerAddrMax = grpcMax
		cfg.Limits.HTTPConnsPerAddrMax = httpMax
	})
	n := c.nodes[0]
	for _, l := range []struct {
		name string
		addr string
		max  int
	}{
		{listenerGRPC, c.cfgs[0].GRPCAddr, grpcMax},
		{listenerHTTP, n.httpLis.Addr().String(), httpMax},
	} {
		t.Run(l.name, func(t *testing.T) {
			var open []net.Conn
			defer func() {
				for _, conn := range open {
					_ = conn.Close()
				}
			}()
			refusedAt := -1
			for i := range l.max + 2 {
				conn, refused := dialState(t, l.addr)
				if refused {
					refusedAt = i
					break
				}
				open = append(open, conn)
			}
			// The node's own connections (if any) share the address: the
			// refusal comes at the bound or before it, never after.
			if refusedAt < 0 || refusedAt > l.max {
				t.Fatalf("no connection refused after %d from one address (bound %d)", len(open), l.max)
			}
			if got := testutil.ToFloat64(n.limits.metrics.connRefused.WithLabelValues(l.name)); got < 1 {
				t.Fatalf("herald_conn_refused_total{listener=%q} = %v", l.name, got)
			}
			for _, conn := range open {
				_ = conn.Close()
			}
			open = nil
			eventually(t, 10*time.Second, func() error {
				conn, refused := dialState(t, l.addr)
				if refused {
					return errors.New("still refused after the connections closed")
				}
				open = append(open, conn)
				return nil
			})
		})
	}
	// The HTTP listener serves again: /healthz answers (once the node has
	// seen the test's connections close and given their slots back).
	eventually(t, 10*time.Second, func() error {
		resp, err := http.Get("http://" + n.httpLis.Addr().String() + "/healthz")
		if err != nil {
			return err
		}
		return resp.Body.Close()
	})
}
