package server

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Connections per remote address (issue 14): each of the node's client
// listeners (gRPC, HTTP) admits at most a bounded number of concurrent
// connections from one remote IP address. A connection past the bound is
// closed as soon as it is accepted, before a byte is read from it (no TLS
// handshake, no HTTP request), counted in
// herald_conn_refused_total{listener}, and logged at WARN at most once per
// connRefusedLogInterval per listener with the address. The bound is per
// address, not per node: one host opening thousands of connections cannot
// take the file descriptors and memory every other client needs, while a
// real client host (a pool of gRPC channels, a gateway fanning out
// WebSocket users) stays far below it. Behind a proxy or NAT every client
// shares the proxy's address: raise the bound there.
//
// The wrapper goes around the raw TCP listener, innermost: TLS and the
// servers wrap it.

// Listener names, as the metric labels them.
const (
	listenerGRPC = "grpc"
	listenerHTTP = "http"
)

// connRefusedLogInterval is the least time between two WARN lines of one
// listener about refused connections; the refusals between are counted in
// the next line (and always in the metric).
const connRefusedLogInterval = 10 * time.Second

// addrConnLimiter wraps a net.Listener: Accept returns only connections
// whose remote address has fewer than perAddrMax open (through this
// listener), and closes the others at once. Connections whose remote
// address is not an IP (a Unix socket, an in-memory pipe) are not bounded.
// Safe for concurrent use, as net.Listener is.
type addrConnLimiter struct {
	net.Listener
	name       string
	perAddrMax int
	refused    prometheus.Counter
	logger     *slog.Logger

	mu struct {
		sync.Mutex
		// open counts the connections returned and not closed yet, by
		// remote address; an address leaves the map at 0.
		open map[netip.Addr]int
		// lastWarn is when the last WARN line was written; suppressed
		// counts the refusals since that were not logged.
		lastWarn   time.Time
		suppressed int
	}
}

// newAddrConnLimiter returns lis bounded to perAddrMax connections per
// remote address, refusals counted in refused and logged to logger.
func newAddrConnLimiter(lis net.Listener, name string, perAddrMax int, refused prometheus.Counter, logger *slog.Logger) *addrConnLimiter {
	l := &addrConnLimiter{Listener: lis, name: name, perAddrMax: perAddrMax, refused: refused, logger: logger}
	l.mu.open = make(map[netip.Addr]int)
	return l
}

// Accept waits for the next connection its address has room for. A
// refused connection is closed and Accept waits for the next one; an
// error of the wrapped listener is returned as it is.
func (l *addrConnLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr, ok := remoteIP(c)
		if !ok {
			return c, nil
		}
		if l.admit(addr) {
			return &addrLimitedConn{Conn: c, release: sync.OnceFunc(func() { l.release(addr) })}, nil
		}
		// Counted before the close: whoever sees the close sees the count.
		l.refused.Inc()
		_ = c.Close()
		l.warn(addr)
	}
}

// admit takes a slot of addr, or reports that it has none left.
func (l *addrConnLimiter) admit(addr netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.open[addr] >= l.perAddrMax {
		return false
	}
	l.mu.open[addr]++
	return true
}

// release gives back a slot of addr (once per admitted connection).
func (l *addrConnLimiter) release(addr netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.open[addr] <= 1 {
		delete(l.mu.open, addr)
		return
	}
	l.mu.open[addr]--
}

// openFrom returns the connections open from addr (for tests).
func (l *addrConnLimiter) openFrom(addr netip.Addr) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.open[addr]
}

// warn logs a refusal of addr, unless one was logged within
// connRefusedLogInterval (then it is counted for the next line).
func (l *addrConnLimiter) warn(addr netip.Addr) {
	l.mu.Lock()
	now := time.Now()
	if !l.mu.lastWarn.IsZero() && now.Sub(l.mu.lastWarn) < connRefusedLogInterval {
		l.mu.suppressed++
		l.mu.Unlock()
		return
	}
	suppressed := l.mu.suppressed
	l.mu.lastWarn, l.mu.suppressed = now, 0
	l.mu.Unlock()
	l.logger.Warn("connection refused: too many connections from one address",
		"listener", l.name, "remote", addr.String(), "limit", l.perAddrMax, "refused_unlogged", suppressed)
}

// remoteIP returns the IP address of c's remote end (an IPv4 address
// mapped into IPv6 as IPv4), or false when it has none.
func remoteIP(c net.Conn) (netip.Addr, bool) {
	tcp, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return netip.Addr{}, false
	}
	addr, ok := netip.AddrFromSlice(tcp.IP)
	if !ok {
		return netip.Addr{}, false
	}
	return addr.Unmap(), true
}

// addrLimitedConn is an admitted connection: closing it gives its slot
// back (once, however often Close is called).
type addrLimitedConn struct {
	net.Conn
	release func()
}

// NetConn returns the connection under the slot (as *tls.Conn's NetConn
// does), so that socket options reach the TCP connection (tcpConnOf).
func (c *addrLimitedConn) NetConn() net.Conn { return c.Conn }

// tcpConnOf returns the TCP connection under c, through the wrappers that
// expose theirs with NetConn (TLS, the per-address slot), if there is one.
// Bounded: a wrapper chain is a few deep.
func tcpConnOf(c net.Conn) (*net.TCPConn, bool) {
	for range 8 {
		if tc, ok := c.(*net.TCPConn); ok {
			return tc, true
		}
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil, false
		}
		c = w.NetConn()
	}
	return nil, false
}

// CloseWrite half-closes a TCP connection (net/http uses it, when the
// connection has it, to end a response cleanly).
func (c *addrLimitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// Close closes the connection and releases its slot.
func (c *addrLimitedConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}
