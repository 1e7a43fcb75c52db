package server

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/peer"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// Node limits (issue 13): bounds on what one node holds for its callers,
// whatever tenant or partition they concern. Each is a budget the calls
// draw from before they do the work that holds memory, and give back when
// it is done:
//
//   - produce_bytes: the encoded size of the produce requests being served
//     (heraldService.Produce, WebSocket publishes included), from before
//     they are planned until they are answered;
//   - fetch_bytes: the bytes fetches and subscription streams are reading
//     and encoding: a fetch reserves its max_bytes before it reads and
//     holds it until its answer is returned; a subscription step reserves
//     its page before it reads and holds it until the batch is sent;
//   - long_polls: fetches with max_wait_ms being served, per node and per
//     connection;
//   - streams: Subscribe and GroupConsume streams per node and per
//     connection, and WebSocket subscriptions per node.
//
// A call that cannot have its share within LimitWait is refused with
// wire.NodeLimit (THROTTLED, limit node_limit, what), before it has done
// anything: a refused produce wrote nothing. The counts (long polls,
// streams) are refused at once. A subscription step that cannot reserve
// its page waits instead (it has been admitted; its client's credit and
// heartbeats go on).

// whats of the node limits, as wire.NodeLimit and the metrics name them.
const (
	limitProduceBytes = "produce_bytes"
	limitFetchBytes   = "fetch_bytes"
	limitLongPolls    = "long_polls"
	limitStreams      = "streams"
)

// nodeLimits enforces Config.Limits for one node. Safe for concurrent use.
type nodeLimits struct {
	cfg          NodeLimits
	produceBytes *byteBudget
	fetchBytes   *byteBudget
	longPolls    *callCounter
	streams      *callCounter
	metrics      *nodeLimitMetrics
}

// nodeLimitMetrics are the node limits' gauges and refusal counters.
type nodeLimitMetrics struct {
	inflight *prometheus.GaugeVec
	refused  *prometheus.CounterVec
	// connRefused counts the connections closed at accept for their
	// address's bound, by listener (conn_limits.go).
	connRefused *prometheus.CounterVec
}

func newNodeLimitMetrics() *nodeLimitMetrics {
	return &nodeLimitMetrics{
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_node_limit_inflight",
			Help: "What this node holds against its node limits: bytes for produce_bytes and fetch_bytes, calls for long_polls and streams.",
		}, []string{"what"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_node_limit_refused_total",
			Help: "Calls refused THROTTLED (limit node_limit) at one of this node's limits, by what: produce_bytes, fetch_bytes, long_polls, streams.",
		}, []string{"what"}),
		connRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_conn_refused_total",
			Help: "Connections closed as soon as accepted because their remote address had as many open as the listener's per-address limit, by listener: grpc, http.",
		}, []string{"listener"}),
	}
}

func (m *nodeLimitMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.inflight, m.refused, m.connRefused}
}

// limitConns wraps lis, the raw listener named name (listenerGRPC or
// listenerHTTP), with the per-address connection bound of cfg.
func (l *nodeLimits) limitConns(lis net.Listener, name string, logger *slog.Logger) net.Listener {
	perAddrMax := l.cfg.GRPCConnsPerAddrMax
	if name == listenerHTTP {
		perAddrMax = l.cfg.HTTPConnsPerAddrMax
	}
	return newAddrConnLimiter(lis, name, perAddrMax, l.metrics.connRefused.WithLabelValues(name), logger)
}

// newNodeLimits returns the limits of cfg (defaults filled in).
func newNodeLimits(cfg NodeLimits) *nodeLimits {
	cfg.EnsureDefaults()
	m := newNodeLimitMetrics()
	return &nodeLimits{
		cfg:          cfg,
		produceBytes: newByteBudget(cfg.ProduceBytesMax, m.inflight.WithLabelValues(limitProduceBytes)),
		fetchBytes:   newByteBudget(cfg.FetchBytesMax, m.inflight.WithLabelValues(limitFetchBytes)),
		longPolls:    newCallCounter(cfg.LongPollsMax, cfg.LongPollsPerConnectionMax, m.inflight.WithLabelValues(limitLongPolls)),
		streams:      newCallCounter(cfg.StreamsMax, cfg.StreamsPerConnectionMax, m.inflight.WithLabelValues(limitStreams)),
		metrics:      m,
	}
}

// refuse counts a refusal at what and returns its error.
func (l *nodeLimits) refuse(what, detail string) error {
	l.metrics.refused.WithLabelValues(what).Inc()
	return wire.NodeLimit(what, detail, l.cfg.RetryAfter.Milliseconds())
}

// acquireProduce reserves bytes (a produce request's encoded size) of the
// node's produce budget, waiting LimitWait at most; release gives them
// back (call it once the request is answered). A request larger than the
// whole budget reserves all of it (it waits for every other produce to
// end, and is never refused for its size alone).
func (l *nodeLimits) acquireProduce(ctx context.Context, bytes int) (release func(), err error) {
	n := min(int64(bytes), l.cfg.ProduceBytesMax)
	if !l.produceBytes.acquire(ctx, n, l.cfg.LimitWait) {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, l.refuse(limitProduceBytes, fmt.Sprintf("%d bytes of produce requests in flight on this node, the limit is %d; this request needs %d",
			l.produceBytes.inUse(), l.cfg.ProduceBytesMax, bytes))
	}
	return sync.OnceFunc(func() { l.produceBytes.release(n) }), nil
}

// acquireStream admits one stream from the connection of ctx (Subscribe,
// GroupConsume) at once or refuses it; release ends it. Calls forwarded by
// a peer node, and streams with no gRPC peer (WebSocket subscriptions,
// whose connection bounds its own), count on the node only.
func (l *nodeLimits) acquireStream(ctx context.Context) (release func(), err error) {
	release, perConnection := l.streams.acquire(connectionOf(ctx))
	if release == nil {
		return nil, l.refuse(limitStreams, l.streams.detail("streams", perConnection))
	}
	return release, nil
}

// acquireLongPoll admits one long poll (a fetch with max_wait_ms) from
// the connection of ctx at once or refuses it; release ends it.
func (l *nodeLimits) acquireLongPoll(ctx context.Context) (release func(), err error) {
	release, perConnection := l.longPolls.acquire(connectionOf(ctx))
	if release == nil {
		return nil, l.refuse(limitLongPolls, l.longPolls.detail("long polls", perConnection))
	}
	return release, nil
}

// reserveStreamBytes reserves a subscription step's page of the fetch
// budget, waiting up to wait (a subscription waits rather than fail: it
// tries again after its heartbeat); nil when it could not.
func (l *nodeLimits) reserveStreamBytes(ctx context.Context, bytes int64, wait time.Duration) *budgetShare {
	n := min(bytes, l.cfg.FetchBytesMax)
	if !l.fetchBytes.acquire(ctx, n, wait) {
		return nil
	}
	return &budgetShare{budget: l.fetchBytes, bytes: n}
}

// budgetShare is bytes reserved of a byteBudget, which its holder may
// shrink to what it turned out to need and gives back once. It belongs
// to one goroutine.
type budgetShare struct {
	budget *byteBudget
	bytes  int64
}

// shrink gives back what the share holds above bytes.
func (s *budgetShare) shrink(bytes int64) {
	if bytes < s.bytes {
		s.budget.release(s.bytes - max(bytes, 0))
		s.bytes = max(bytes, 0)
	}
}

// release gives the share back (again: nothing).
func (s *budgetShare) release() { s.shrink(0) }

// fetchHold is one fetch's reservation of the node's fetch budget: taken
// before each read (reserve), given back when a read finds nothing to
// wait on (a long poll holds nothing while it waits) and when the fetch
// returns. It belongs to the Fetch handler's goroutine.
type fetchHold struct {
	l     *nodeLimits
	bytes int64
	held  bool
}

// fetchHold returns the reservation for a fetch of req, not yet taken.
// The bytes are req's max_bytes as the read will bound them (the default
// when 0, capped at fetchBytesMax), and at most the whole budget.
func (l *nodeLimits) fetchHold(req *heraldpb.FetchRequest) *fetchHold {
	bytes := int64(req.GetMaxBytes())
	if bytes == 0 {
		bytes = fetchBytesDefault
	}
	return &fetchHold{l: l, bytes: min(bytes, fetchBytesMax, l.cfg.FetchBytesMax)}
}

// reserve takes the reservation unless it is held, waiting LimitWait at
// most; it refuses with NodeLimit fetch_bytes.
func (h *fetchHold) reserve(ctx context.Context) error {
	if h.held {
		return nil
	}
	if !h.l.fetchBytes.acquire(ctx, h.bytes, h.l.cfg.LimitWait) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return h.l.refuse(limitFetchBytes, fmt.Sprintf("%d bytes of fetches and stream sends in flight on this node, the limit is %d; this fetch needs %d (its max_bytes)",
			h.l.fetchBytes.inUse(), h.l.cfg.FetchBytesMax, h.bytes))
	}
	h.held = true
	return nil
}

// release gives the reservation back, if held.
func (h *fetchHold) release() {
	if h.held {
		h.held = false
		h.l.fetchBytes.release(h.bytes)
	}
}

// connectionOf names the client connection of a gRPC call: its peer's
// address. Calls forwarded by another node (one connection carries many
// clients' calls) and calls without a peer answer "": they count against
// the node's limits only.
func connectionOf(ctx context.Context) string {
	if isForwarded(ctx) {
		return ""
	}
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	return p.Addr.String()
}

// byteBudget is a weighted semaphore of bytes served first come, first
// served: a large reservation waiting at the head is not overtaken by
// small ones (it would starve). Safe for concurrent use.
type byteBudget struct {
	max   int64
	gauge prometheus.Gauge
	mu    struct {
		sync.Mutex
		used    int64
		waiters list.List // of *budgetWaiter, in arrival order
	}
}

// budgetWaiter is one reservation waiting for room; ready is closed when
// it has been granted.
type budgetWaiter struct {
	bytes int64
	ready chan struct{}
}

func newByteBudget(max int64, gauge prometheus.Gauge) *byteBudget {
	return &byteBudget{max: max, gauge: gauge}
}

// acquire reserves n bytes (0 < n <= max), waiting up to wait (and while
// ctx lasts); it reports whether it did.
func (b *byteBudget) acquire(ctx context.Context, n int64, wait time.Duration) bool {
	b.mu.Lock()
	if b.mu.used+n <= b.max && b.mu.waiters.Len() == 0 {
		b.mu.used += n
		b.gauge.Set(float64(b.mu.used))
		b.mu.Unlock()
		return true
	}
	if wait <= 0 {
		b.mu.Unlock()
		return false
	}
	w := &budgetWaiter{bytes: n, ready: make(chan struct{})}
	elem := b.mu.waiters.PushBack(w)
	b.mu.Unlock()

	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-w.ready:
		return true
	case <-timer.C:
	case <-ctx.Done():
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-w.ready:
		// Granted while giving up: keep it (the caller releases it).
		return true
	default:
	}
	head := b.mu.waiters.Front() == elem
	b.mu.waiters.Remove(elem)
	if head {
		// Leaving the head may let the ones behind it in.
		b.grantLocked()
	}
	return false
}

// release gives back n bytes acquired before.
func (b *byteBudget) release(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.mu.used -= n
	if b.mu.used < 0 {
		panic("server: byte budget released more than it acquired")
	}
	b.grantLocked()
	b.gauge.Set(float64(b.mu.used))
}

// grantLocked grants the waiters at the head that fit, in order.
func (b *byteBudget) grantLocked() {
	for {
		front := b.mu.waiters.Front()
		if front == nil {
			return
		}
		w := front.Value.(*budgetWaiter)
		if b.mu.used+w.bytes > b.max {
			return
		}
		b.mu.used += w.bytes
		b.mu.waiters.Remove(front)
		close(w.ready)
		b.gauge.Set(float64(b.mu.used))
	}
}

// inUse returns the bytes reserved now (for refusal messages).
func (b *byteBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.mu.used
}

// callCounter counts calls in progress per node and per connection,
// admitting a call only under both caps. Safe for concurrent use.
type callCounter struct {
	max, perConnectionMax int
	gauge                 prometheus.Gauge
	mu                    struct {
		sync.Mutex
		total        int
		byConnection map[string]int
	}
}

func newCallCounter(max, perConnectionMax int, gauge prometheus.Gauge) *callCounter {
	c := &callCounter{max: max, perConnectionMax: perConnectionMax, gauge: gauge}
	c.mu.byConnection = make(map[string]int)
	return c
}

// acquire admits one call of connection ("" counts on the node only);
// it returns its release, or nil and whether the per-connection cap (not
// the node's) refused it.
func (c *callCounter) acquire(connection string) (release func(), perConnection bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if connection != "" && c.mu.byConnection[connection] >= c.perConnectionMax {
		return nil, true
	}
	if c.mu.total >= c.max {
		return nil, false
	}
	c.mu.total++
	if connection != "" {
		c.mu.byConnection[connection]++
	}
	c.gauge.Set(float64(c.mu.total))
	return sync.OnceFunc(func() { c.release(connection) }), false
}

func (c *callCounter) release(connection string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.total--
	if connection != "" {
		if c.mu.byConnection[connection]--; c.mu.byConnection[connection] <= 0 {
			delete(c.mu.byConnection, connection)
		}
	}
	c.gauge.Set(float64(c.mu.total))
}

// detail says which cap refused a call.
func (c *callCounter) detail(what string, perConnection bool) string {
	if perConnection {
		return fmt.Sprintf("%d %s on this connection, the limit per connection", c.perConnectionMax, what)
	}
	return fmt.Sprintf("%d %s on this node, the limit per node", c.max, what)
}

// NodeLimits bounds what one node holds for its callers (limits.go,
// docs/operations.md "Node limits"). Zero fields take the defaults
// (EnsureDefaults); negative ones are refused by Validate.
type NodeLimits struct {
	// ProduceBytesMax bounds the encoded bytes of the produce requests
	// (WebSocket publishes included) this node serves at once: 256 MiB.
	ProduceBytesMax int64
	// FetchBytesMax bounds the bytes fetches (their max_bytes) and
	// subscription steps (their page) read and encode at once: 256 MiB.
	FetchBytesMax int64
	// LongPollsMax and LongPollsPerConnectionMax bound the fetches with
	// max_wait_ms being served, per node and per gRPC connection: 4096
	// and 256.
	LongPollsMax              int
	LongPollsPerConnectionMax int
	// StreamsMax bounds the Subscribe and GroupConsume streams and the
	// WebSocket subscriptions served by this node: 4096.
	// StreamsPerConnectionMax bounds the gRPC streams of one connection:
	// 256 (a WebSocket connection has WebSocketConfig.SubscriptionsMax).
	StreamsMax              int
	StreamsPerConnectionMax int
	// LimitWait is how long a produce or a fetch waits for room in its
	// byte budget before it is refused: 100 ms.
	LimitWait time.Duration
	// RetryAfter is the retry hint (retry_after_ms) of a refusal at a
	// node limit: 200 ms.
	RetryAfter time.Duration
	// GRPCConnsPerAddrMax and HTTPConnsPerAddrMax bound the concurrent
	// connections from one remote IP address to the gRPC listener and to
	// the HTTP listener (WebSocket, metrics, health): 1,024 and 4,096. A
	// connection past the bound is closed at once (conn_limits.go).
	GRPCConnsPerAddrMax int
	HTTPConnsPerAddrMax int
}

// EnsureDefaults fills the zero fields with the defaults.
func (l *NodeLimits) EnsureDefaults() {
	if l.ProduceBytesMax == 0 {
		l.ProduceBytesMax = 256 << 20
	}
	if l.FetchBytesMax == 0 {
		l.FetchBytesMax = 256 << 20
	}
	if l.LongPollsMax == 0 {
		l.LongPollsMax = 4096
	}
	if l.LongPollsPerConnectionMax == 0 {
		l.LongPollsPerConnectionMax = 256
	}
	if l.StreamsMax == 0 {
		l.StreamsMax = 4096
	}
	if l.StreamsPerConnectionMax == 0 {
		l.StreamsPerConnectionMax = 256
	}
	if l.LimitWait == 0 {
		l.LimitWait = 100 * time.Millisecond
	}
	if l.RetryAfter == 0 {
		l.RetryAfter = 200 * time.Millisecond
	}
	if l.GRPCConnsPerAddrMax == 0 {
		l.GRPCConnsPerAddrMax = 1024
	}
	if l.HTTPConnsPerAddrMax == 0 {
		l.HTTPConnsPerAddrMax = 4096
	}
}

// Validate reports every problem with l (zero fields are defaults).
func (l *NodeLimits) Validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"produce bytes", l.ProduceBytesMax}, {"fetch bytes", l.FetchBytesMax},
		{"long polls", int64(l.LongPollsMax)}, {"long polls per connection", int64(l.LongPollsPerConnectionMax)},
		{"streams", int64(l.StreamsMax)}, {"streams per connection", int64(l.StreamsPerConnectionMax)},
		{"wait", int64(l.LimitWait)}, {"retry after", int64(l.RetryAfter)},
		{"gRPC connections per address", int64(l.GRPCConnsPerAddrMax)}, {"HTTP connections per address", int64(l.HTTPConnsPerAddrMax)},
	} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("server: node limit %s is negative", f.name))
		}
	}
	d := *l
	d.EnsureDefaults()
	if d.LongPollsPerConnectionMax > d.LongPollsMax {
		errs = append(errs, fmt.Errorf("server: node limit long polls per connection %d exceeds long polls per node %d", d.LongPollsPerConnectionMax, d.LongPollsMax))
	}
	if d.StreamsPerConnectionMax > d.StreamsMax {
		errs = append(errs, fmt.Errorf("server: node limit streams per connection %d exceeds streams per node %d", d.StreamsPerConnectionMax, d.StreamsMax))
	}
	return errors.Join(errs...)
}
