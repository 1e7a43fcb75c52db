package server

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The send queue holds its bounds (an empty queue takes any frame), waits
// for room while the writer moves, calls a writer that does not move slow,
// and refuses frames once closed.
func TestWSSendQueueBounds(t *testing.T) {
	gauge := prometheus.NewGauge(prometheus.GaugeOpts{Name: "q"})
	q := newWSSendQueue(3, 10, gauge)
	ctx := context.Background()
	frame := func(n int) wsFrame { return wsFrame{typ: "events", data: make([]byte, n)} }
	starts := 0
	start := func() { starts++ } // called under the queue's lock: no race

	if err := q.put(ctx, frame(50), 0, start); err != nil {
		t.Fatalf("an empty queue takes a frame above the byte bound: %v", err)
	}
	if err := q.put(ctx, frame(1), 0, start); !errors.Is(err, errWSQueueFull) {
		t.Fatalf("past the byte bound: %v", err)
	}
	if f, ok := q.take(); !ok || len(f.data) != 50 {
		t.Fatal("take")
	}
	for range 3 {
		if err := q.put(ctx, frame(2), 0, start); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.put(ctx, frame(2), 0, start); !errors.Is(err, errWSQueueFull) {
		t.Fatalf("past the frame bound: %v", err)
	}
	if got := testutil.ToFloat64(gauge); got != 6 {
		t.Fatalf("gauge %v, want 6", got)
	}
	if starts != 1 {
		t.Fatalf("%d writers started while one ran", starts)
	}

	// A writer that takes a frame makes room for a waiting put.
	done := make(chan error, 1)
	go func() { done <- q.put(ctx, frame(2), time.Minute, start) }()
	q.take()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// A writer that takes nothing: slow.
	if err := q.put(ctx, frame(2), 50*time.Millisecond, start); !errors.Is(err, errWSSlowConsumer) {
		t.Fatalf("no room for the timeout: %v", err)
	}
	// A cancelled put returns the cause.
	cctx, cancel := context.WithCancelCause(ctx)
	cancel(errWSUnsubscribed)
	if err := q.put(cctx, frame(2), time.Minute, start); !errors.Is(err, errWSUnsubscribed) {
		t.Fatalf("cancelled: %v", err)
	}
	// Closing drops what is queued, wakes waiters and refuses the rest.
	go func() { done <- q.put(ctx, frame(2), time.Minute, start) }()
	if dropped := q.close(); dropped != 3 {
		t.Fatalf("dropped %d, want 3", dropped)
	}
	if err := <-done; !errors.Is(err, errWSQueueClosed) {
		t.Fatalf("waiter after close: %v", err)
	}
	if got := testutil.ToFloat64(gauge); got != 0 {
		t.Fatalf("gauge %v after close", got)
	}
	if err := q.put(ctx, frame(1), 0, start); !errors.Is(err, errWSQueueClosed) {
		t.Fatalf("put after close: %v", err)
	}
}

// A writer runs only while frames wait: take ends it when it finds the
// queue empty, and the next put starts another.
func TestWSSendQueueStartsWriterOnDemand(t *testing.T) {
	q := newWSSendQueue(8, 1<<20, prometheus.NewGauge(prometheus.GaugeOpts{Name: "q"}))
	ctx := context.Background()
	starts := 0
	start := func() { starts++ }
	for range 3 {
		if err := q.put(ctx, wsFrame{typ: "events", data: []byte("x")}, 0, start); err != nil {
			t.Fatal(err)
		}
	}
	if starts != 1 {
		t.Fatalf("%d writers for one burst", starts)
	}
	for range 3 {
		if _, ok := q.take(); !ok {
			t.Fatal("a queued frame was not taken")
		}
	}
	if starts != 1 {
		t.Fatal("take started a writer")
	}
	if _, ok := q.take(); ok {
		t.Fatal("took from an empty queue")
	}
	if err := q.put(ctx, wsFrame{typ: "events", data: []byte("y")}, 0, start); err != nil {
		t.Fatal(err)
	}
	if starts != 2 {
		t.Fatalf("after the writer ended, a put started %d writers in all, want 2", starts)
	}
}
