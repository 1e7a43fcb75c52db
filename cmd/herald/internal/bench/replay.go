package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldlog/herald/client"
)

// replayEmptyPagesMax bounds the empty pages a replay reader accepts below
// the end it was given (a replica catching up) before it gives up.
const replayEmptyPagesMax = 1000

// runReplay produces opts.Count events (batched, not timed), then times
// reading every partition from offset 0 to its end with one client (one
// subscriber): pages of up to 10,000 events, one page at a time per
// partition, the partitions in parallel.
func runReplay(ctx context.Context, e *env) error {
	ends, total, err := preload(ctx, e, "replay")
	if err != nil {
		return err
	}
	if total != e.opts.Count {
		e.note("the topic holds %d events, %d were produced", total, e.opts.Count)
	}

	prog := startProgress(e.progress, "replay", total)
	histograms := make([]*latency, len(ends))
	var (
		read atomic.Int64
		wg   sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	failure := &firstFailure{cancel: cancel}
	e.cpu.begin(ctx)
	start := time.Now()
	for p, end := range ends {
		histograms[p] = newLatency()
		wg.Go(func() {
			if err := readPartition(ctx, e.admin, e.topic, p, end, histograms[p], &read, prog); err != nil {
				failure.set(err)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	prog.stop()
	if err := failure.err(); err != nil {
		return err
	}
	e.result.setThroughput(read.Load(), e.opts.SizeBytes, elapsed.Seconds())
	e.finishCPU(ctx)
	all := newLatency()
	for _, h := range histograms {
		all.merge(h)
	}
	e.result.setLatency(all.percentiles(), latencyPerPage)
	return nil
}

// preload produces opts.Count events (batched, not timed; one per request
// with --sync) for a scenario that then reads them, and returns each
// partition's end and the events the topic holds.
func preload(ctx context.Context, e *env, scenario string) (ends []uint64, total int64, err error) {
	load := startProgress(e.progress, scenario+": loading", e.opts.Count)
	plan := &sendPlan{
		topic: e.topic, clients: e.clients, work: e.work, total: e.opts.Count,
		batch: e.opts.Batch, inflight: e.opts.Inflight, progress: load,
	}
	if e.opts.Sync {
		plan.batch, plan.inflight = 1, 1
	}
	_, err = plan.run(ctx)
	load.stop()
	if err != nil {
		return nil, 0, err
	}
	if ends, err = highWatermarks(ctx, e.admin, e.topic, e.opts.Partitions); err != nil {
		return nil, 0, err
	}
	for _, end := range ends {
		total += int64(end)
	}
	return ends, total, nil
}

// readPartition reads partition from offset 0 up to end, one page at a
// time, recording each page's latency and counting events into read.
func readPartition(ctx context.Context, cl *client.Client, topic string, partition int, end uint64, lat *latency, read *atomic.Int64, prog *progress) error {
	r, err := client.NewReader(cl, pageReader(topic, partition, client.FromOffset(0)))
	if err != nil {
		return err
	}
	empty := 0
	for offset := uint64(0); offset < end; {
		sent := time.Now()
		resp, err := r.Next(ctx)
		if err != nil {
			return fmt.Errorf("bench: replay of %s/%d at offset %d: %w", topic, partition, offset, err)
		}
		lat.record(time.Since(sent))
		n := len(resp.GetEvents())
		if n == 0 {
			if empty++; empty > replayEmptyPagesMax {
				return fmt.Errorf("bench: replay of %s/%d: %d empty pages at offset %d, below the end %d", topic, partition, empty, offset, end)
			}
			continue
		}
		if first := resp.GetEvents()[0].GetOffset(); first != offset {
			return fmt.Errorf("bench: replay of %s/%d: asked for offset %d, the page starts at %d", topic, partition, offset, first)
		}
		offset, _ = r.Position().Offset()
		read.Add(int64(n))
		prog.add(int64(n))
	}
	return nil
}
