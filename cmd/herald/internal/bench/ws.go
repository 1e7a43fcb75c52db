package bench

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// The WebSocket scenario (`herald bench ws`) measures the gateway the way
// ../shared/anchors/centrifugo measures Centrifugo: N connections to one
// node, each subscribed to a stream of its own (its tenant on a shared
// topic) and to one stream every connection shares; then
//
//  1. memory: the node's RSS and its live heap+stack after a forced GC
//     (pprof's heap profile with gc=1), per connection, minus a baseline
//     taken before connecting;
//  2. broadcast: BroadcastRate events/s for BroadcastDuration to the
//     shared stream, each delivered to every connection;
//  3. own streams: OwnRate events/s for OwnDuration, round-robin over the
//     connections' tenants, each delivered to one connection.
//
// Every event's payload carries its send time; latency is receive time
// minus send time on this machine's clock. Events are produced with the
// SDK over gRPC (Centrifugo's anchor publishes over its HTTP API).

// WSOptions configure the WebSocket scenario.
type WSOptions struct {
	// NodeArgs are extra `herald serve` flags for the local cluster's nodes.
	NodeArgs []string
	// Connections is the number of WebSocket connections.
	Connections int
	// DialConcurrency bounds dials in flight.
	DialConcurrency int
	// BroadcastRate and BroadcastDuration: the shared stream's phase (0
	// duration: skipped).
	BroadcastRate     float64
	BroadcastDuration time.Duration
	// OwnRate and OwnDuration: the own streams' phase (0 duration: skipped).
	OwnRate     float64
	OwnDuration time.Duration
	// Partitions of the topic holding the own streams.
	Partitions int
	// Replication of both topics.
	Replication int
	// Drain bounds the wait for deliveries after a phase's last publish.
	Drain time.Duration
	// HeartbeatMs is each subscription's heartbeat interval.
	HeartbeatMs int
}

// wsConnsPerAddrMargin is what the local nodes' per-address connection
// bound leaves above the scenario's connections: the metrics scrapes and
// readiness checks of the run come from the same address.
const wsConnsPerAddrMargin = 64

// DefaultWSOptions are the anchor's sizes at 1,000 connections.
func DefaultWSOptions() WSOptions {
	return WSOptions{Connections: 1000, DialConcurrency: 200, BroadcastRate: 20, BroadcastDuration: 20 * time.Second,
		OwnRate: 5000, OwnDuration: 20 * time.Second, Partitions: 8, Replication: 3, Drain: 20 * time.Second, HeartbeatMs: 30_000}
}

// Validate checks the options' bounds.
func (o *WSOptions) Validate() error {
	switch {
	case o.Connections < 1 || o.Connections > 1_000_000:
		return fmt.Errorf("%w: connections %d: want 1..1000000", ErrInvalidOptions, o.Connections)
	case o.DialConcurrency < 1 || o.DialConcurrency > 10_000:
		return fmt.Errorf("%w: dial concurrency %d: want 1..10000", ErrInvalidOptions, o.DialConcurrency)
	case o.BroadcastRate <= 0 || o.BroadcastRate > 1e6 || o.OwnRate <= 0 || o.OwnRate > 1e7:
		return fmt.Errorf("%w: rates must be positive (broadcast ≤ 1e6/s, own ≤ 1e7/s)", ErrInvalidOptions)
	case o.BroadcastDuration < 0 || o.OwnDuration < 0 || o.Drain <= 0:
		return fmt.Errorf("%w: durations must not be negative, drain must be positive", ErrInvalidOptions)
	case o.Partitions < 1 || o.Partitions > partitionsMax:
		return fmt.Errorf("%w: partitions %d: want 1..%d", ErrInvalidOptions, o.Partitions, partitionsMax)
	case o.Replication < 1 || o.Replication > localNodes:
		return fmt.Errorf("%w: replication %d: want 1..%d", ErrInvalidOptions, o.Replication, localNodes)
	case o.HeartbeatMs < 0:
		return fmt.Errorf("%w: heartbeat %d ms is negative", ErrInvalidOptions, o.HeartbeatMs)
	}
	return nil
}

// WSPhase is one publishing phase's outcome.
type WSPhase struct {
	Name          string      `json:"name"`
	Published     int64       `json:"published"`
	PublishErrors int64       `json:"publish_errors"`
	PublishRate   float64     `json:"publish_per_s"`
	Expected      int64       `json:"expected_deliveries"`
	Delivered     int64       `json:"delivered"`
	DeliveredRate float64     `json:"delivered_per_s"`
	Latency       Percentiles `json:"latency_ms"`
	NodeCPUPct    float64     `json:"node_cpu_pct_of_one_core"`
	ClusterCPUPct float64     `json:"cluster_cpu_pct_of_one_core"`
}

// WSResult is the WebSocket scenario's outcome.
type WSResult struct {
	Connections      int       `json:"connections"`
	Connected        int64     `json:"connected"`
	ConnectFailed    int64     `json:"connect_failed"`
	FirstError       string    `json:"first_error,omitempty"`
	ConnectSeconds   float64   `json:"connect_seconds"`
	RSSBaseKiB       int64     `json:"node_rss_baseline_kib"`
	RSSKiB           int64     `json:"node_rss_connected_kib"`
	RSSKiBPerConn    float64   `json:"node_rss_kib_per_conn"`
	LiveBaseKiB      float64   `json:"node_live_baseline_kib"`
	LiveKiB          float64   `json:"node_live_connected_kib"`
	LiveKiBPerConn   float64   `json:"node_live_kib_per_conn_after_gc"`
	Goroutines       int64     `json:"node_goroutines"`
	FDs              int       `json:"node_fds"`
	IdleNodeCPUPct   float64   `json:"idle_node_cpu_pct_of_one_core"`
	Phases           []WSPhase `json:"phases"`
	UnexpectedFrames int64     `json:"unexpected_frames"`
}

// wsConn is one measured connection.
type wsConn struct {
	idx       int
	c         *websocket.Conn
	delivered atomic.Int64
}

// wsLoad holds the connections and what they received.
type wsLoad struct {
	conns  []*wsConn
	shards [64]struct {
		mu  sync.Mutex
		lat *latency
	}
	unexpected atomic.Int64
	firstBad   atomic.Value // string
	wg         sync.WaitGroup
}

func (l *wsLoad) resetLatency() {
	for i := range l.shards {
		l.shards[i].mu.Lock()
		l.shards[i].lat = newLatency()
		l.shards[i].mu.Unlock()
	}
	for _, c := range l.conns {
		if c != nil {
			c.delivered.Store(0)
		}
	}
}

func (l *wsLoad) latency() Percentiles {
	all := newLatency()
	for i := range l.shards {
		l.shards[i].mu.Lock()
		all.merge(l.shards[i].lat)
		l.shards[i].mu.Unlock()
	}
	return all.percentiles()
}

func (l *wsLoad) delivered() int64 {
	var n int64
	for _, c := range l.conns {
		if c != nil {
			n += c.delivered.Load()
		}
	}
	return n
}

var payloadField = []byte(`"payload":"`)

// readLoop counts the events of every frame and records their latency
// until the connection ends.
func (l *wsLoad) readLoop(c *wsConn) {
	defer l.wg.Done()
	shard := &l.shards[c.idx%len(l.shards)]
	var raw [24]byte
	for {
		_, msg, err := c.c.ReadMessage()
		if err != nil {
			return
		}
		now := time.Now().UnixNano()
		if !bytes.HasPrefix(msg, []byte(`{"type":"events"`)) {
			if !bytes.HasPrefix(msg, []byte(`{"type":"heartbeat"`)) {
				l.unexpected.Add(1)
				l.firstBad.CompareAndSwap(nil, string(msg[:min(len(msg), 300)]))
			}
			continue
		}
		n := int64(0)
		shard.mu.Lock()
		for rest := msg; ; {
			i := bytes.Index(rest, payloadField)
			if i < 0 {
				break
			}
			rest = rest[i+len(payloadField):]
			end := bytes.IndexByte(rest, '"')
			if end < 0 {
				break
			}
			if k, err := base64.StdEncoding.Decode(raw[:], rest[:end]); err == nil && k >= 8 {
				sent := int64(binary.BigEndian.Uint64(raw[:8]))
				shard.lat.record(time.Duration(now - sent))
			}
			n++
			rest = rest[end:]
		}
		shard.mu.Unlock()
		c.delivered.Add(n)
	}
}

// RunWS runs the WebSocket scenario against node 0 of a local cluster
// started from exe.
func RunWS(ctx context.Context, exe string, opts WSOptions, progress io.Writer) (*WSResult, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	logf := func(format string, args ...any) { fmt.Fprintf(progress, "bench ws: "+format+"\n", args...) }
	// Every connection comes from 127.0.0.1: raise node 0's per-address
	// bound above them (a --node-arg given after it still wins).
	nodeArgs := append([]string{fmt.Sprintf("--limit-ws-conns-per-addr=%d", opts.Connections+wsConnsPerAddrMargin)}, opts.NodeArgs...)
	cluster, err := StartLocalCluster(ctx, exe, localNodes, nodeArgs, progress)
	if err != nil {
		return nil, err
	}
	defer cluster.Close()
	pids := cluster.PIDs()
	node := cluster.procs.Nodes()[0]
	cl, err := client.New(ctx, client.Config{Servers: cluster.GRPCAddrs()})
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	suffix := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	shared, own := "bench-ws-shared-"+suffix, "bench-ws-own-"+suffix
	for _, t := range []*heraldpb.TopicConfig{
		{Name: shared, Partitions: 1, ReplicationFactor: uint32(opts.Replication), AutoTenants: true},
		{Name: own, Partitions: uint32(opts.Partitions), ReplicationFactor: uint32(opts.Replication), AutoTenants: true},
	} {
		if _, err := cl.CreateTopic(ctx, t); err != nil {
			return nil, fmt.Errorf("bench ws: create topic %s: %w", t.Name, err)
		}
		if _, err := awaitLeaders(ctx, cl, t.Name, 10*time.Second); err != nil {
			return nil, err
		}
	}
	res := &WSResult{Connections: opts.Connections}
	res.RSSBaseKiB = procRSSKiB(pids[0])
	base, _, err := liveMemory(ctx, node.AdminAddr)
	if err != nil {
		return nil, err
	}
	res.LiveBaseKiB = float64(base) / 1024

	// Connect.
	load := &wsLoad{conns: make([]*wsConn, opts.Connections)}
	load.resetLatency()
	url := "ws://" + node.HTTPAddr + "/v1/ws"
	sem := make(chan struct{}, opts.DialConcurrency)
	var failed atomic.Int64
	var firstErr atomic.Value
	var dials sync.WaitGroup
	t0 := time.Now()
	for i := range opts.Connections {
		sem <- struct{}{}
		dials.Add(1)
		go func() {
			defer dials.Done()
			defer func() { <-sem }()
			c, err := wsDial(ctx, url, i, shared, own, opts)
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			load.conns[i] = &wsConn{idx: i, c: c}
		}()
	}
	dials.Wait()
	res.ConnectSeconds = time.Since(t0).Seconds()
	res.ConnectFailed = failed.Load()
	res.Connected = int64(opts.Connections) - res.ConnectFailed
	if s, ok := firstErr.Load().(string); ok {
		res.FirstError = s
	}
	defer func() {
		for _, c := range load.conns {
			if c != nil {
				_ = c.c.Close()
			}
		}
		load.wg.Wait()
	}()
	for _, c := range load.conns {
		if c != nil {
			load.wg.Add(1)
			go load.readLoop(c)
		}
	}
	logf("connected %d of %d in %.2fs (first error: %s)", res.Connected, opts.Connections, res.ConnectSeconds, res.FirstError)
	if res.Connected == 0 {
		return res, fmt.Errorf("bench ws: no connection: %s", res.FirstError)
	}

	// Memory and idle CPU, connected.
	time.Sleep(3 * time.Second)
	res.RSSKiB = procRSSKiB(pids[0])
	res.FDs = procFDs(pids[0])
	res.RSSKiBPerConn = float64(res.RSSKiB) / float64(res.Connected)
	live, goroutines, err := liveMemory(ctx, node.AdminAddr)
	if err != nil {
		return nil, err
	}
	res.LiveKiB, res.Goroutines = float64(live)/1024, goroutines
	res.LiveKiBPerConn = (res.LiveKiB - res.LiveBaseKiB) / float64(res.Connected)
	nodeCPU := procCPU{pids: pids[:1]}
	clusterCPU := procCPU{pids: pids}
	idle0, _ := nodeCPU.cpuSeconds(ctx)
	time.Sleep(5 * time.Second)
	idle1, _ := nodeCPU.cpuSeconds(ctx)
	res.IdleNodeCPUPct = (idle1 - idle0) / 5 * 100
	logf("node RSS %d KiB (baseline %d) = %.1f KiB/conn; live after GC %.0f KiB (baseline %.0f) = %.1f KiB/conn; %d goroutines, %d fds; idle CPU %.1f%% of a core",
		res.RSSKiB, res.RSSBaseKiB, res.RSSKiBPerConn, res.LiveKiB, res.LiveBaseKiB, res.LiveKiBPerConn, res.Goroutines, res.FDs, res.IdleNodeCPUPct)

	phase := func(name, topic string, rate float64, dur time.Duration, tenantOf func(seq int64) string, fanout int64) error {
		if dur == 0 {
			return nil
		}
		load.resetLatency()
		n0, _ := nodeCPU.cpuSeconds(ctx)
		c0, _ := clusterCPU.cpuSeconds(ctx)
		start := time.Now()
		published, errs := publishAt(ctx, cl, topic, rate, dur, tenantOf)
		pubSecs := time.Since(start).Seconds()
		ph := WSPhase{Name: name, Published: published, PublishErrors: errs, PublishRate: float64(published) / pubSecs, Expected: published * fanout}
		deadline := time.Now().Add(opts.Drain)
		for load.delivered() < ph.Expected && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		secs := time.Since(start).Seconds()
		ph.Delivered = load.delivered()
		ph.DeliveredRate = float64(ph.Delivered) / secs
		ph.Latency = load.latency()
		n1, _ := nodeCPU.cpuSeconds(ctx)
		c1, _ := clusterCPU.cpuSeconds(ctx)
		ph.NodeCPUPct, ph.ClusterCPUPct = (n1-n0)/secs*100, (c1-c0)/secs*100
		res.Phases = append(res.Phases, ph)
		logf("%s: published %d (%.1f/s, %d errors), delivered %d of %d (%.0f/s), latency p50 %.2f ms p99 %.2f ms max %.2f ms; node CPU %.0f%%, cluster %.0f%% of a core",
			name, ph.Published, ph.PublishRate, ph.PublishErrors, ph.Delivered, ph.Expected, ph.DeliveredRate,
			ph.Latency.P50, ph.Latency.P99, ph.Latency.Max, ph.NodeCPUPct, ph.ClusterCPUPct)
		return ctx.Err()
	}
	if err := phase("broadcast", shared, opts.BroadcastRate, opts.BroadcastDuration, func(int64) string { return "bench" }, res.Connected); err != nil {
		return res, err
	}
	// Own streams: only to connected tenants, so that every event has a reader.
	var liveTenants []int
	for i, c := range load.conns {
		if c != nil {
			liveTenants = append(liveTenants, i)
		}
	}
	if err := phase("own-streams", own, opts.OwnRate, opts.OwnDuration, func(seq int64) string { return wsTenant(liveTenants[seq%int64(len(liveTenants))]) }, 1); err != nil {
		return res, err
	}
	res.UnexpectedFrames = load.unexpected.Load()
	if s, ok := load.firstBad.Load().(string); ok {
		logf("unexpected frames: %d, the first: %s", res.UnexpectedFrames, s)
	}
	return res, cluster.Exited()
}

func wsTenant(i int) string { return "u" + strconv.Itoa(i) }

// wsDial opens connection i from a source address of its own among
// 127.0.0.2–9 (ephemeral ports run out past ~28,000 connections from one
// address) and subscribes it to its own stream and the shared one.
func wsDial(ctx context.Context, url string, i int, shared, own string, opts WSOptions) (*websocket.Conn, error) {
	nd := &net.Dialer{Timeout: 30 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%8))}}
	d := &websocket.Dialer{NetDialContext: nd.DialContext, HandshakeTimeout: 60 * time.Second, ReadBufferSize: 1024, WriteBufferSize: 1024}
	var c *websocket.Conn
	var err error
	for attempt := range 3 {
		if attempt > 0 {
			time.Sleep(200 * time.Millisecond)
		}
		if c, _, err = d.DialContext(ctx, url, nil); err == nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	tenant := wsTenant(i)
	subs := []map[string]any{
		{"type": "subscribe", "id": "own", "topic": own, "partition": wire.PartitionForTenant(tenant, uint32(opts.Partitions)),
			"start": "latest", "tenant": tenant, "heartbeat_ms": opts.HeartbeatMs},
		{"type": "subscribe", "id": "shared", "topic": shared, "partition": 0, "start": "latest", "heartbeat_ms": opts.HeartbeatMs},
	}
	for _, s := range subs {
		if err := c.WriteJSON(s); err != nil {
			_ = c.Close()
			return nil, err
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
	for got := 0; got < len(subs); {
		var f struct {
			Type    string `json:"type"`
			ID      string `json:"id"`
			Code    string `json:"code"`
			Message string `json:"message"`
		}
		if err := c.ReadJSON(&f); err != nil {
			_ = c.Close()
			return nil, err
		}
		switch f.Type {
		case "subscribed":
			got++
		case "error":
			_ = c.Close()
			return nil, fmt.Errorf("subscribe %s: %s: %s", f.ID, f.Code, f.Message)
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, nil
}

// publishAt produces events to topic at rate for dur: one produce call per
// 10 ms tick carrying the tick's events, each with its send time and
// sequence in the payload. It returns the events acknowledged and the
// events whose call failed.
func publishAt(ctx context.Context, cl *client.Client, topic string, rate float64, dur time.Duration, tenantOf func(int64) string) (published, failed int64) {
	const tick = 10 * time.Millisecond
	start := time.Now()
	var seq int64
	var inflight sync.WaitGroup
	var ok, bad atomic.Int64
	sem := make(chan struct{}, 16)
	t := time.NewTicker(tick)
	defer t.Stop()
	for now := range t.C {
		elapsed := now.Sub(start)
		if elapsed >= dur || ctx.Err() != nil {
			break
		}
		due := int64(rate * elapsed.Seconds())
		if due <= seq {
			continue
		}
		events := make([]*heraldpb.Event, 0, due-seq)
		for ; seq < due; seq++ {
			p := make([]byte, 16)
			binary.BigEndian.PutUint64(p[8:], uint64(seq))
			events = append(events, &heraldpb.Event{TenantId: tenantOf(seq), Payload: p})
		}
		sent := time.Now().UnixNano()
		for _, ev := range events {
			binary.BigEndian.PutUint64(ev.Payload[:8], uint64(sent))
		}
		sem <- struct{}{}
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			defer func() { <-sem }()
			if _, err := cl.Produce(ctx, topic, events...); err != nil {
				bad.Add(int64(len(events)))
				return
			}
			ok.Add(int64(len(events)))
		}()
	}
	inflight.Wait()
	return ok.Load(), bad.Load()
}

// liveMemory forces a GC on the node (pprof's heap profile with gc=1) and
// returns its heap in use plus its goroutine stacks, in bytes, and its
// goroutine count. pprof is served only on a node's admin listener:
// adminAddr is its address.
func liveMemory(ctx context.Context, adminAddr string) (live, goroutines int64, err error) {
	get := func(path string) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+adminAddr+path, nil)
		if err != nil {
			return "", err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("GET %s on the admin listener %s: %s", path, adminAddr, resp.Status)
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		return string(b), err
	}
	heap, err := get("/debug/pprof/heap?debug=1&gc=1")
	if err != nil {
		return 0, 0, fmt.Errorf("bench ws: node memory: %w", err)
	}
	var heapInuse, stack int64
	for _, line := range strings.Split(heap, "\n") {
		if v, ok := strings.CutPrefix(line, "# HeapInuse = "); ok {
			heapInuse, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
		if v, ok := strings.CutPrefix(line, "# Stack = "); ok {
			stack, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	if heapInuse == 0 {
		return 0, 0, errors.New("bench ws: no HeapInuse in the node's heap profile")
	}
	g, err := get("/debug/pprof/goroutine?debug=1")
	if err != nil {
		return 0, 0, err
	}
	if v, ok := strings.CutPrefix(strings.SplitN(g, "\n", 2)[0], "goroutine profile: total "); ok {
		goroutines, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	}
	return heapInuse + stack, goroutines, nil
}

// procRSSKiB reads a process's resident set from /proc (-1 if unknown).
func procRSSKiB(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return -1
}

// procFDs counts a process's open files (-1 if unknown).
func procFDs(pid int) int {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// WriteSummary prints the result as the anchor's table row and the
// phases' lines.
func (r *WSResult) WriteSummary(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "connections: %d of %d in %.2f s\n", r.Connected, r.Connections, r.ConnectSeconds)
	fmt.Fprintf(&b, "node memory: RSS %.1f KiB/conn (%d KiB, baseline %d); live heap+stack after GC %.1f KiB/conn; %d goroutines; idle CPU %.1f%% of a core\n",
		r.RSSKiBPerConn, r.RSSKiB, r.RSSBaseKiB, r.LiveKiBPerConn, r.Goroutines, r.IdleNodeCPUPct)
	for _, p := range r.Phases {
		fmt.Fprintf(&b, "%s: %d published (%.1f/s), %d of %d delivered (%.0f/s), p50 %.2f ms, p99 %.2f ms, max %.2f ms; node CPU %.0f%%\n",
			p.Name, p.Published, p.PublishRate, p.Delivered, p.Expected, p.DeliveredRate, p.Latency.P50, p.Latency.P99, p.Latency.Max, p.NodeCPUPct)
	}
	if r.UnexpectedFrames > 0 {
		fmt.Fprintf(&b, "unexpected frames: %d\n", r.UnexpectedFrames)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON prints the result as one JSON line.
func (r *WSResult) WriteJSON(w io.Writer) error {
	return json.NewEncoder(w).Encode(r)
}
