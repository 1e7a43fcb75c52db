package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldlog/herald/client"
)

// sendPlan is one produce phase: total events sent by len(clients)
// producers, each with at most inflight requests in flight, optionally
// paced to rate events/s across all producers.
type sendPlan struct {
	topic   string
	clients []*client.Client // one per producer; entries may be the same client
	work    *workload
	total   int64
	// batch is the events per request (the most, when paced); inflight
	// the requests in flight per producer (its number of sending
	// goroutines).
	batch, inflight int
	// rate paces the sends: the k-th event of the phase leaves no
	// earlier than start + k/rate. A paced request carries the events due
	// (at least minBatch, so that requests are not needlessly tiny; more
	// when the senders fall behind, up to batch). 0: as fast as possible,
	// batch events per request.
	rate     float64
	minBatch int
	progress *progress // nil: no progress
}

// sendOutcome is what a finished phase measured.
type sendOutcome struct {
	events  int64         // acknowledged
	latency *latency      // one observation per request: call to ack
	elapsed time.Duration // first send to last ack
}

// sendState is shared by a phase's senders.
type sendState struct {
	start    time.Time
	claimed  atomic.Int64 // events handed to senders so far
	requests atomic.Int64 // requests made so far: picks each one's tenant
	acked    atomic.Int64
}

// run sends every event of the plan and returns once all are
// acknowledged or one request failed (then the rest are cancelled and the
// first error is returned). The sending goroutines are owned by run and
// done before it returns.
func (p *sendPlan) run(ctx context.Context) (sendOutcome, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	failure := &firstFailure{cancel: cancel}
	var wg sync.WaitGroup
	workers := len(p.clients) * p.inflight
	histograms := make([]*latency, workers)
	state := &sendState{start: time.Now()}
	for w := range workers {
		histograms[w] = newLatency()
		cl := p.clients[w/p.inflight]
		wg.Go(func() {
			if err := p.sender(ctx, cl, state, histograms[w]); err != nil {
				failure.set(err)
			}
		})
	}
	wg.Wait()
	out := sendOutcome{events: state.acked.Load(), latency: newLatency(), elapsed: time.Since(state.start)}
	for _, h := range histograms {
		out.latency.merge(h)
	}
	return out, failure.err()
}

// sender is one sending goroutine: it claims the next events of the
// phase, sends them and records the latency, until every event is claimed
// or ctx ends.
func (p *sendPlan) sender(ctx context.Context, cl *client.Client, s *sendState, lat *latency) error {
	for {
		first, n, err := p.claim(ctx, s)
		if err != nil || n == 0 {
			return err
		}
		events := p.work.events(s.requests.Add(1)-1, n)
		sent := time.Now()
		if _, err := cl.Produce(ctx, p.topic, events...); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("bench: produce of events %d-%d: %w", first, first+int64(n)-1, err)
		}
		lat.record(time.Since(sent))
		s.acked.Add(int64(n))
		if p.progress != nil {
			p.progress.add(int64(n))
		}
	}
}

// claim takes the next events to send: the first's index in the phase and
// their number, 0 when every event is claimed. Paced, it waits until at
// least min(minBatch, what is left) events are due and takes every due
// event up to batch.
func (p *sendPlan) claim(ctx context.Context, s *sendState) (first int64, n int, err error) {
	if p.rate <= 0 {
		first = s.claimed.Add(int64(p.batch)) - int64(p.batch)
		if first >= p.total {
			return 0, 0, nil
		}
		return first, int(min(int64(p.batch), p.total-first)), nil
	}
	for {
		c := s.claimed.Load()
		if c >= p.total {
			return 0, 0, nil
		}
		need := min(int64(max(p.minBatch, 1)), p.total-c)
		due := int64(time.Since(s.start).Seconds() * p.rate)
		if due < c+need {
			if err := sleepUntil(ctx, s.start.Add(time.Duration(float64(c+need)/p.rate*float64(time.Second)))); err != nil {
				return 0, 0, err
			}
			continue
		}
		take := min(due-c, int64(p.batch), p.total-c)
		if s.claimed.CompareAndSwap(c, c+take) {
			return c, int(take), nil
		}
	}
}

// sleepUntil waits until t or until ctx ends (its error).
func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}
