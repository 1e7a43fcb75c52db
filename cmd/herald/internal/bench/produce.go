package bench

import "context"

// runProduce times producing opts.Count events: sync (one event per
// request, each waiting for its ack) or batched (opts.Batch per request,
// opts.Inflight requests in flight per producer).
func runProduce(ctx context.Context, e *env) error {
	batch, inflight, of := e.opts.Batch, e.opts.Inflight, latencyPerBatch
	if e.opts.Sync {
		batch, inflight, of = 1, 1, latencyPerEvent
	}
	prog := startProgress(e.progress, "produce", e.opts.Count)
	plan := &sendPlan{
		topic: e.topic, clients: e.clients, work: e.work, total: e.opts.Count,
		batch: batch, inflight: inflight, progress: prog,
	}
	e.cpu.begin(ctx)
	out, err := plan.run(ctx)
	prog.stop()
	if err != nil {
		return err
	}
	e.result.setThroughput(out.events, e.opts.SizeBytes, out.elapsed.Seconds())
	e.finishCPU(ctx)
	e.result.setLatency(out.latency.percentiles(), of)
	return nil
}
