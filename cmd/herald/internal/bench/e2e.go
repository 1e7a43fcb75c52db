package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldlog/herald/client"
)

// E2E bounds and pacing.
const (
	// e2eSendsPerSecond sizes the paced requests: about one request per
	// millisecond across all producers (at least rate/1000 events, at
	// least 1; more when the senders fall behind, up to --batch).
	e2eSendsPerSecond = 1000
	// e2eKeptUpShare is the share of the target rate under which the
	// result notes that the cluster did not keep up.
	e2eKeptUpShare = 0.9
	// The quick peak measurement that sets the default rate produces
	// Count events, but at least e2ePeakEventsMin and at most
	// e2ePeakEventsMax.
	e2ePeakEventsMin = 2_000
	e2ePeakEventsMax = 50_000
	// e2eDrainTimeout bounds the wait for the readers once every event
	// is acknowledged.
	e2eDrainTimeout = 30 * time.Second
)

// errDrainTimeout is returned when the readers do not see every event in
// time after the producers are done.
var errDrainTimeout = errors.New("bench: e2e readers did not receive every event in time")

// runE2E produces opts.Count events at a fixed rate while one subscriber
// per partition (client.Subscribe, a gRPC Subscribe stream) follows it
// from its high watermark; each
// delivered event's latency is the reader's clock at receipt minus the
// event's produced_at (stamped by the leader; same machine, same clock
// for a local cluster).
func runE2E(ctx context.Context, e *env) error {
	rate := e.opts.Rate
	if rate == 0 {
		peak, err := quickPeak(ctx, e)
		if err != nil {
			return err
		}
		rate = peak / 2
		e.result.PeakEventsPerSec = round(peak, 1)
	}
	e.result.RateTarget = round(rate, 1)
	e.note("delivery is by Subscribe streams (client.Subscribe, one per partition, on a replica chosen by the SDK): a replica sends events as soon as it applies them")
	if e.result.Cluster != "local" {
		e.note("latency compares the leader's clock (produced_at) with this machine's: meaningful only if they agree")
	}

	starts, err := highWatermarks(ctx, e.admin, e.topic, e.opts.Partitions)
	if err != nil {
		return err
	}
	batch, minBatch, inflight := e.opts.Batch, pacedBatch(rate, e.opts.Batch), e.opts.Inflight
	if e.opts.Sync {
		batch, minBatch, inflight = 1, 1, 1
	}

	prog := startProgress(e.progress, "e2e", e.opts.Count)
	readCtx, cancelRead := context.WithCancel(ctx)
	defer cancelRead()
	var (
		delivered atomic.Int64
		readers   sync.WaitGroup
	)
	failure := &firstFailure{cancel: cancelRead}
	histograms := make([]*latency, len(starts))
	// The subscriptions end together once every event has arrived (a
	// partition's own subscription would otherwise wait for more).
	subCtx, allDelivered := context.WithCancel(readCtx)
	defer allDelivered()
	e.cpu.begin(ctx)
	start := time.Now()
	for p, from := range starts {
		histograms[p] = newLatency()
		readers.Go(func() {
			if err := tailPartition(subCtx, e.admin, e.topic, p, from, e.opts.Count, &delivered, histograms[p], prog, allDelivered); err != nil && subCtx.Err() == nil {
				failure.set(err)
			}
		})
	}
	plan := &sendPlan{
		topic: e.topic, clients: e.clients, work: e.work, total: e.opts.Count,
		batch: batch, inflight: inflight, rate: rate, minBatch: minBatch,
	}
	if _, err := plan.run(readCtx); err != nil && readCtx.Err() == nil {
		failure.set(err)
	}
	// Every event is acknowledged (or the run failed): the readers end
	// once they have seen them all, or at the drain deadline.
	drain := time.AfterFunc(e2eDrainTimeout, func() {
		if got := delivered.Load(); got < e.opts.Count {
			failure.set(fmt.Errorf("%w: %d of %d after %s", errDrainTimeout, got, e.opts.Count, e2eDrainTimeout))
		}
	})
	readers.Wait()
	drain.Stop()
	elapsed := time.Since(start)
	prog.stop()
	if err := failure.err(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	e.result.setThroughput(delivered.Load(), e.opts.SizeBytes, elapsed.Seconds())
	if e.result.EventsPerSec < e2eKeptUpShare*rate {
		e.note("the cluster did not keep up with the target rate (%.0f of %.0f events/s): latency includes queueing", e.result.EventsPerSec, rate)
	}
	e.finishCPU(ctx)
	all := newLatency()
	for _, h := range histograms {
		all.merge(h)
	}
	e.result.setLatency(all.percentiles(), latencyDelivered)
	return nil
}

// quickPeak measures batched produce throughput briefly (not reported as
// the run's figures) to derive the default e2e rate.
func quickPeak(ctx context.Context, e *env) (float64, error) {
	n := min(max(e.opts.Count, e2ePeakEventsMin), e2ePeakEventsMax)
	prog := startProgress(e.progress, "e2e: measuring peak", n)
	plan := &sendPlan{
		topic: e.topic, clients: e.clients, work: e.work, total: n,
		batch: e.opts.Batch, inflight: e.opts.Inflight, progress: prog,
	}
	out, err := plan.run(ctx)
	prog.stop()
	if err != nil {
		return 0, err
	}
	if out.elapsed <= 0 || out.events == 0 {
		return 0, errors.New("bench: e2e peak measurement produced nothing")
	}
	return float64(out.events) / out.elapsed.Seconds(), nil
}

// pacedBatch returns the fewest events per paced request at rate
// events/s: about one request per millisecond, at least 1, at most
// batchMax.
func pacedBatch(rate float64, batchMax int) int {
	b := int(rate / e2eSendsPerSecond)
	return min(max(b, 1), batchMax)
}

// tailPartition follows partition from offset from with a subscription,
// recording each event's produced_at-to-receipt latency, until total
// events have been delivered over all partitions (delivered: the
// subscription that delivers the last one calls done) or ctx ends.
func tailPartition(ctx context.Context, cl *client.Client, topic string, partition int, from uint64, total int64, delivered *atomic.Int64, lat *latency, prog *progress, done func()) error {
	if delivered.Load() >= total {
		done()
		return nil
	}
	opts := client.SubscribeOptions{Partitions: []uint32{uint32(partition)}, Start: client.FromOffset(from)}
	for d, err := range cl.Subscribe(ctx, topic, opts) {
		if err != nil {
			return fmt.Errorf("bench: e2e subscription to %s/%d: %w", topic, partition, err)
		}
		lat.record(time.Duration(time.Now().UnixNano() - d.Event.GetProducedAtUnixNano()))
		prog.add(1)
		if delivered.Add(1) >= total {
			done()
			return nil
		}
	}
	return ctx.Err()
}
