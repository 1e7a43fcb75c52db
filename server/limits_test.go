package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// requireNodeLimit fails unless err (as a client receives it) is a
// THROTTLED node_limit refusal at what, with a retry hint.
func requireNodeLimit(t *testing.T, err error, what string) {
	t.Helper()
	err = wire.FromStatus(err)
	var e *wire.Error
	if !errors.Is(err, wire.ErrThrottled) || !errors.As(err, &e) {
		t.Fatalf("got %v, want THROTTLED node_limit %s", err, what)
	}
	if e.Metadata[wire.MetadataLimit] != wire.LimitNodeLimit || e.Metadata[wire.MetadataWhat] != what {
		t.Fatalf("refusal %v names limit %q what %q, want node_limit %s", err, e.Metadata[wire.MetadataLimit], e.Metadata[wire.MetadataWhat], what)
	}
	if d, _, ok := wire.RetryAfter(err); !ok || d <= 0 {
		t.Fatalf("refusal %v carries no retry hint", err)
	}
}

// TestByteBudget: reservations are granted in arrival order (a large one
// at the head is not overtaken), one that times out leaves the queue and
// lets the ones behind it in, and the gauge follows what is reserved.
func TestByteBudget(t *testing.T) {
	gauge := prometheus.NewGauge(prometheus.GaugeOpts{Name: "test"})
	b := newByteBudget(10, gauge)
	ctx := context.Background()
	if !b.acquire(ctx, 6, 0) {
		t.Fatal("6 of 10 refused")
	}
	if b.acquire(ctx, 5, 0) {
		t.Fatal("5 more admitted over 10 without waiting")
	}
	// A large reservation waits at the head; a small one that would fit
	// now queues behind it.
	large := make(chan bool, 1)
	go func() { large <- b.acquire(ctx, 9, 10*time.Second) }()
	eventually(t, 5*time.Second, func() error {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.mu.waiters.Len() != 1 {
			return fmt.Errorf("%d waiters, want 1", b.mu.waiters.Len())
		}
		return nil
	})
	if b.acquire(ctx, 1, 20*time.Millisecond) {
		t.Fatal("a small reservation overtook the large one waiting at the head")
	}
	b.release(6)
	if !<-large {
		t.Fatal("the large reservation was not granted once room was made")
	}
	if got := testutil.ToFloat64(gauge); got != 9 {
		t.Fatalf("gauge %v, want 9", got)
	}
	// A waiter at the head that gives up lets the one behind it in.
	head := make(chan bool, 1)
	go func() { head <- b.acquire(ctx, 5, 200*time.Millisecond) }()
	eventually(t, 5*time.Second, func() error {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.mu.waiters.Len() != 1 {
			return fmt.Errorf("%d waiters, want 1", b.mu.waiters.Len())
		}
		return nil
	})
	behind := make(chan bool, 1)
	go func() { behind <- b.acquire(ctx, 1, 10*time.Second) }()
	if <-head {
		t.Fatal("5 over 9 of 10 granted")
	}
	if !<-behind {
		t.Fatal("the reservation behind a waiter that gave up was not granted")
	}
	b.release(9)
	b.release(1)
	if got := testutil.ToFloat64(gauge); got != 0 {
		t.Fatalf("gauge %v after every release, want 0", got)
	}
}

// TestNodeLimitLongPolls: long polls over the per-connection cap are
// refused on that connection while another connection still gets its
// long poll, up to the node's cap; the ones admitted are answered when an
// event arrives.
func TestNodeLimitLongPolls(t *testing.T) {
	c := startClusterConfig(t, 1, func(cfg *Config) {
		cfg.Limits = NodeLimits{LongPollsPerConnectionMax: 3, LongPollsMax: 4}
	})
	a, b := c.rawClient(0), c.rawClient(0) // two connections
	createTopic(t, a, "polls", 1, 1)
	createTenant(t, a, "acme")
	limits := c.nodes[0].limits
	poll := &heraldpb.FetchRequest{Topic: "polls", Start: &heraldpb.FetchRequest_Offset{Offset: 0}, MaxWaitMs: 20_000}
	answers := make(chan error, 4)
	start := func(hc heraldpb.HeraldClient) {
		go func() {
			resp, err := hc.Fetch(ctxTimeout(t, 30*time.Second), poll)
			if err == nil && len(resp.GetEvents()) != 1 {
				err = fmt.Errorf("long poll answered %d events, want the one produced", len(resp.GetEvents()))
			}
			answers <- err
		}()
	}
	waitPolls := func(n int) {
		eventually(t, 10*time.Second, func() error {
			if got := testutil.ToFloat64(limits.metrics.inflight.WithLabelValues(limitLongPolls)); got != float64(n) {
				return fmt.Errorf("%v long polls in flight, want %d", got, n)
			}
			return nil
		})
	}
	for range 3 {
		start(a)
	}
	waitPolls(3)
	_, err := a.Fetch(ctxTimeout(t, 10*time.Second), poll)
	requireNodeLimit(t, err, limitLongPolls)
	// Another connection is still admitted, up to the node's cap.
	start(b)
	waitPolls(4)
	_, err = b.Fetch(ctxTimeout(t, 10*time.Second), poll)
	requireNodeLimit(t, err, limitLongPolls)
	// A fetch without a wait is not a long poll.
	if _, err := b.Fetch(ctxTimeout(t, 10*time.Second), &heraldpb.FetchRequest{Topic: "polls", Start: &heraldpb.FetchRequest_Offset{Offset: 0}}); err != nil {
		t.Fatalf("fetch without a wait at the long-poll cap: %v", err)
	}
	produceRetry(t, a, "polls", &heraldpb.Event{TenantId: "acme", Payload: []byte("wake")})
	for range 4 {
		if err := <-answers; err != nil {
			t.Fatalf("admitted long poll: %v", err)
		}
	}
	waitPolls(0)
	if got := testutil.ToFloat64(limits.metrics.refused.WithLabelValues(limitLongPolls)); got != 2 {
		t.Fatalf("herald_node_limit_refused_total{what=long_polls} %v, want 2", got)
	}
}

// TestNodeLimitStreams: Subscribe streams over the per-connection cap are
// refused on that connection while another connection still gets one, up
// to the node's cap; a stream that ends frees its place.
func TestNodeLimitStreams(t *testing.T) {
	c := startClusterConfig(t, 1, func(cfg *Config) {
		cfg.Limits = NodeLimits{StreamsPerConnectionMax: 2, StreamsMax: 3}
	})
	a, b := c.rawClient(0), c.rawClient(0) // two connections
	createTopic(t, a, "streams", 1, 1)
	start := &heraldpb.SubscribeStart{Topic: "streams", Start: &heraldpb.SubscribeStart_Position{Position: heraldpb.StartPosition_EARLIEST}, HeartbeatMs: 100}
	// open starts a stream and returns it with its first answer's error
	// (an admitted stream heartbeats).
	open := func(hc heraldpb.HeraldClient) (heraldpb.Herald_SubscribeClient, context.CancelFunc, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		t.Cleanup(cancel)
		s, err := hc.Subscribe(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&heraldpb.SubscribeRequest{Msg: &heraldpb.SubscribeRequest_Start{Start: start}}); err != nil {
			t.Fatal(err)
		}
		_, err = s.Recv()
		return s, cancel, err
	}
	for i := range 2 {
		if _, _, err := open(a); err != nil {
			t.Fatalf("stream %d on connection a: %v", i, err)
		}
	}
	_, _, err := open(a)
	requireNodeLimit(t, err, limitStreams)
	_, cancelB, err := open(b)
	if err != nil {
		t.Fatalf("first stream on connection b: %v", err)
	}
	_, _, err = open(b)
	requireNodeLimit(t, err, limitStreams)
	// Ending b's stream frees a place on the node.
	cancelB()
	eventually(t, 10*time.Second, func() error {
		_, cancel, err := open(b)
		if err == nil {
			cancel()
		}
		return err
	})
}

// TestNodeLimitFetchAndProduceBytes: with the node's fetch budget taken,
// a fetch is refused fetch_bytes (a LATEST fetch, which reads no event,
// is still answered); with its produce budget taken, a produce is
// refused produce_bytes and nothing is written. Both are served again
// once the budget is given back.
func TestNodeLimitFetchAndProduceBytes(t *testing.T) {
	c := startClusterConfig(t, 1, func(cfg *Config) {
		cfg.Limits = NodeLimits{FetchBytesMax: 8 << 20, ProduceBytesMax: 1 << 20, LimitWait: 20 * time.Millisecond}
	})
	hc := c.rawClient(0)
	createTopic(t, hc, "bytes", 1, 1)
	createTenant(t, hc, "acme")
	produceRetry(t, hc, "bytes", &heraldpb.Event{TenantId: "acme", Payload: []byte("one")})
	limits := c.nodes[0].limits
	ctx := context.Background()

	if !limits.fetchBytes.acquire(ctx, 8<<20, 0) {
		t.Fatal("could not take the fetch budget")
	}
	fromZero := &heraldpb.FetchRequest{Topic: "bytes", Start: &heraldpb.FetchRequest_Offset{Offset: 0}, MaxBytes: 1 << 20}
	_, err := hc.Fetch(ctxTimeout(t, 10*time.Second), fromZero)
	requireNodeLimit(t, err, limitFetchBytes)
	if _, err := hc.Fetch(ctxTimeout(t, 10*time.Second), &heraldpb.FetchRequest{Topic: "bytes",
		Start: &heraldpb.FetchRequest_Position{Position: heraldpb.StartPosition_LATEST}}); err != nil {
		t.Fatalf("LATEST fetch with the fetch budget taken: %v", err)
	}
	limits.fetchBytes.release(8 << 20)
	resp, err := hc.Fetch(ctxTimeout(t, 10*time.Second), fromZero)
	if err != nil || len(resp.GetEvents()) != 1 {
		t.Fatalf("fetch after the budget was given back: %v, %d events", err, len(resp.GetEvents()))
	}

	if !limits.produceBytes.acquire(ctx, 1<<20, 0) {
		t.Fatal("could not take the produce budget")
	}
	_, err = hc.Produce(ctxTimeout(t, 10*time.Second), &heraldpb.ProduceRequest{Topic: "bytes",
		Events: []*heraldpb.Event{{TenantId: "acme", Payload: []byte("refused")}}})
	requireNodeLimit(t, err, limitProduceBytes)
	limits.produceBytes.release(1 << 20)
	produceRetry(t, hc, "bytes", &heraldpb.Event{TenantId: "acme", Payload: []byte("two")})
	resp, err = hc.Fetch(ctxTimeout(t, 10*time.Second), fromZero)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range resp.GetEvents() {
		got = append(got, string(e.GetPayload()))
	}
	if fmt.Sprint(got) != "[one two]" {
		t.Fatalf("log holds %v, want [one two]: the refused produce wrote nothing", got)
	}
	for _, what := range []string{limitFetchBytes, limitProduceBytes} {
		if got := testutil.ToFloat64(limits.metrics.inflight.WithLabelValues(what)); got != 0 {
			t.Fatalf("herald_node_limit_inflight{what=%s} %v once every call ended, want 0", what, got)
		}
	}
}

// TestPublishThrottle: the pause a publish's answer asks for.
func TestPublishThrottle(t *testing.T) {
	for _, tc := range []struct {
		name string
		resp *heraldpb.ProduceResponse
		err  error
		want time.Duration
	}{
		{"healthy ack", &heraldpb.ProduceResponse{}, nil, 0},
		{"ack with throttle_ms", &heraldpb.ProduceResponse{ThrottleMs: 250}, nil, 250 * time.Millisecond},
		{"quota", nil, wire.QuotaExceeded("acme", "events/s", 300), 300 * time.Millisecond},
		{"queue full", nil, wire.QueueFull(10, 5, 40), 40 * time.Millisecond},
		{"node limit", nil, wire.NodeLimit(limitProduceBytes, "full", 200), 200 * time.Millisecond},
		{"not a throttle", nil, wire.NotLeader("n2", "127.0.0.1:1"), 0},
	} {
		if got := publishThrottle(tc.resp, tc.err); got != tc.want {
			t.Errorf("%s: pause %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestNodeLimitStreamBytesCounted: the batch a Subscribe stream has sent
// stays counted against the node's fetch budget while gRPC may still hold
// it (until the stream's next send returns, here its next heartbeat, or
// the stream ends), shrunk to the batch's size; ending the stream gives it
// back.
func TestNodeLimitStreamBytesCounted(t *testing.T) {
	c := startClusterConfig(t, 1, nil)
	hc := c.rawClient(0)
	createTopic(t, hc, "counted", 1, 1)
	createTenant(t, hc, "acme")
	payload := make([]byte, 64<<10)
	produceRetry(t, hc, "counted", &heraldpb.Event{TenantId: "acme", Payload: payload})
	gauge := c.nodes[0].limits.metrics.inflight.WithLabelValues(limitFetchBytes)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := hc.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A heartbeat long after the test: the batch stays held until the end.
	if err := s.Send(&heraldpb.SubscribeRequest{Msg: &heraldpb.SubscribeRequest_Start{Start: &heraldpb.SubscribeStart{Topic: "counted",
		Start: &heraldpb.SubscribeStart_Position{Position: heraldpb.StartPosition_EARLIEST}, HeartbeatMs: 60_000}}}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Recv()
	if err != nil || len(resp.GetEvents()) != 1 {
		t.Fatalf("first answer %v, %v: want the one event", resp, err)
	}
	held := testutil.ToFloat64(gauge)
	if held < float64(len(payload)) || held > float64(subscribeCreditBytesDefault) {
		t.Fatalf("fetch_bytes in flight %v with one %d-byte batch sent: want the batch's size (not the %d-byte page)", held, len(payload), subscribeCreditBytesDefault)
	}
	cancel()
	eventually(t, 10*time.Second, func() error {
		if got := testutil.ToFloat64(gauge); got != 0 {
			return fmt.Errorf("fetch_bytes in flight %v after the stream ended, want 0", got)
		}
		return nil
	})
}

// NodeLimits: zero takes the defaults; Validate names every problem.
func TestNodeLimitsDefaultsAndValidate(t *testing.T) {
	var l NodeLimits
	if err := l.Validate(); err != nil {
		t.Fatalf("zero limits: %v", err)
	}
	l.EnsureDefaults()
	if l.ProduceBytesMax != 256<<20 || l.FetchBytesMax != 256<<20 || l.LongPollsMax != 4096 || l.LongPollsPerConnectionMax != 256 ||
		l.StreamsMax != 4096 || l.StreamsPerConnectionMax != 256 || l.LimitWait != 100*time.Millisecond || l.RetryAfter != 200*time.Millisecond ||
		l.GRPCConnsPerAddrMax != 1024 || l.HTTPConnsPerAddrMax != 4096 {
		t.Fatalf("defaults %+v", l)
	}
	bad := NodeLimits{FetchBytesMax: -1, LimitWait: -time.Second, StreamsMax: 10, StreamsPerConnectionMax: 11, LongPollsMax: 100,
		GRPCConnsPerAddrMax: -1, HTTPConnsPerAddrMax: -2}
	err := bad.Validate()
	if err == nil {
		t.Fatal("bad limits accepted")
	}
	for _, want := range []string{"fetch bytes is negative", "wait is negative", "streams per connection 11 exceeds streams per node 10",
		"long polls per connection 256 exceeds long polls per node 100",
		"gRPC connections per address is negative", "HTTP connections per address is negative"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q not reported in: %v", want, err)
		}
	}
	if err := (&Config{Limits: bad}).Validate(); err == nil || !strings.Contains(err.Error(), "fetch bytes is negative") {
		t.Errorf("Config.Validate does not report its limits: %v", err)
	}
	w := WebSocketConfig{PublishPauseMax: time.Minute}
	if err := w.Validate(); err == nil || !strings.Contains(err.Error(), "publish pause") {
		t.Errorf("a publish pause above the pong timeout accepted: %v", err)
	}
}

// TestNodeLimitForwardedLongPollsHoldNoBytes: long polls forwarded by a
// node without a replica hold none of its fetch budget while they wait at
// the replica (three of them with a budget of one), and each reserves for
// its answer when it arrives.
func TestNodeLimitForwardedLongPollsHoldNoBytes(t *testing.T) {
	c := startClusterConfig(t, 3, func(cfg *Config) {
		cfg.Limits = NodeLimits{FetchBytesMax: 1 << 20}
	})
	info := createTopic(t, c.rawClient(0), "far", 1, 1)
	createTenant(t, c.rawClient(0), "acme")
	replica := info.GetPartitions()[0].GetReplicas()[0]
	via := -1
	for i, cfg := range c.cfgs {
		if cfg.NodeID != replica {
			via = i
			break
		}
	}
	hc := c.rawClient(via)
	limits := c.nodes[via].limits
	// Until the replica is open, the forward finds none.
	eventually(t, 20*time.Second, func() error {
		_, err := hc.Fetch(ctxTimeout(t, 10*time.Second), &heraldpb.FetchRequest{Topic: "far", Start: &heraldpb.FetchRequest_Offset{Offset: 0}})
		return err
	})
	answers := make(chan error, 3)
	for range 3 {
		go func() {
			resp, err := hc.Fetch(ctxTimeout(t, 30*time.Second), &heraldpb.FetchRequest{Topic: "far",
				Start: &heraldpb.FetchRequest_Offset{Offset: 0}, MaxWaitMs: 20_000, MaxBytes: 1 << 20})
			if err == nil && len(resp.GetEvents()) != 1 {
				err = fmt.Errorf("forwarded long poll answered %d events, want 1", len(resp.GetEvents()))
			}
			answers <- err
		}()
	}
	eventually(t, 10*time.Second, func() error {
		if got := testutil.ToFloat64(limits.metrics.inflight.WithLabelValues(limitLongPolls)); got != 3 {
			return fmt.Errorf("%v long polls on the forwarding node, want 3", got)
		}
		return nil
	})
	if got := testutil.ToFloat64(limits.metrics.inflight.WithLabelValues(limitFetchBytes)); got != 0 {
		t.Fatalf("forwarded long polls hold %v bytes of the fetch budget while they wait, want 0", got)
	}
	produceRetry(t, hc, "far", &heraldpb.Event{TenantId: "acme", Payload: []byte("wake")})
	for range 3 {
		if err := <-answers; err != nil {
			t.Fatalf("forwarded long poll: %v", err)
		}
	}
}
