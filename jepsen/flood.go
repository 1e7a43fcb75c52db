package jepsen

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldlog/herald/client"
)

// The flood workload (Options.Flood): one tenant with a quota produces as
// fast as it can, unpaced, from floodWorkers goroutines through
// Client.Produce (no idempotent producer, no pacing by throttle_ms or
// retry_after), beside the other workloads and under the same nemeses.
// The admission controller is expected to refuse most of it (THROTTLED,
// limit tenant_quota); the flood checker (checkFlood) holds the cluster to
// what a refusal promises: every acknowledged flood event is in every final
// log exactly once, no refused one is anywhere, and an unknown outcome is
// in a log at most once.
//
// It writes a topic of its own (floodTopicName), replicated on every node
// like the live topic, so it shares the nodes, their Raft groups' disks
// and network and the tenant-independent limits with the other workloads,
// but not the live topic's partitions: the live topic's linearizability
// check needs every event of a partition produced one op at a time, and a
// flood of batches would make it skip (see checkLinearizable).
const (
	floodTopicName = "jepsen-flood"
	// floodTenant is the flooding tenant, created with floodQuota before
	// the run.
	floodTenant = "flood"
	// floodWorkers is how many goroutines flood at once, each with one
	// Produce in flight.
	floodWorkers = 4
	// floodBatchEvents is the events a flood request carries.
	floodBatchEvents = 20
	// floodRequestsMax bounds the flood's requests over a whole run (one
	// history op each): refusals come back in well under a millisecond, so
	// an unbounded flood would make the history, not the cluster, the
	// limit. Past it the flood stops and says so.
	floodRequestsMax = 150_000
	// floodProduceTimeout bounds one flood request, the SDK's retries
	// included; past it the outcome is unknown unless the SDK says nothing
	// was written.
	floodProduceTimeout = 8 * time.Second
	// floodProcessBase numbers the flood's goroutines in the history,
	// apart from every other worker's process numbers.
	floodProcessBase = 1 << 17
	// floodRefused is the Mode of a failed flood batch that the cluster
	// refused for backpressure (matched client.ErrThrottled: THROTTLED or
	// QUEUE_FULL).
	floodRefused = "throttled"
)

// The flooding tenant's quota: a rate the cluster sustains easily, far
// below what the flood offers.
const (
	floodQuotaEventsPerSec = 200
	floodQuotaBurst        = 200
)

// floodQuota returns the flooding tenant's quota.
func floodQuota() *client.TenantQuota {
	return &client.TenantQuota{EventsPerSec: floodQuotaEventsPerSec, Burst: floodQuotaBurst}
}

// floodTopicConfig is the flood topic: as many partitions as the live
// topic, on every node.
func floodTopicConfig(opts Options) *client.TopicConfig {
	return &client.TopicConfig{Name: floodTopicName, Partitions: uint32(opts.Partitions), ReplicationFactor: uint32(opts.Nodes), AutoTenants: true}
}

// setupFlood creates the flooding tenant with floodQuota (or gives an
// existing one that quota), retrying what may be retried until setupTimeout.
func setupFlood(ctx context.Context, c *Cluster) error {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	var last error
	for {
		cl, err := c.newClient(ctx)
		if err == nil {
			_, err = cl.CreateTenant(ctx, &client.Tenant{Id: floodTenant, Quota: floodQuota()})
			if errors.Is(err, client.ErrTenantExists) {
				_, err = cl.SetTenantQuota(ctx, floodTenant, floodQuota())
			}
			_ = cl.Close()
		}
		if err == nil {
			return nil
		}
		last = err
		if !sleepCtx(ctx, 250*time.Millisecond) {
			return fmt.Errorf("jepsen: creating the flooding tenant %s: %w", floodTenant, errors.Join(last, ctx.Err()))
		}
	}
}

// floodWorker is the flood: floodWorkers goroutines sending through one
// client.
type floodWorker struct {
	cluster    *Cluster
	partitions uint32
	// requests counts the requests sent, against floodRequestsMax.
	requests atomic.Int64
}

// floodStats is what a flood did, for the progress line.
type floodStats struct {
	Requests, Acked, Refused, Unknown, Failed int64
	Capped                                    bool
}

// run floods until ctx ends or floodRequestsMax requests were sent; a
// request in flight then completes (within floodProduceTimeout) and is
// recorded.
func (w *floodWorker) run(ctx context.Context, rec *Recorder) floodStats {
	// A misbehaving tenant: it neither waits out throttle hints nor waits
	// after a refusal before its next request.
	cl, err := w.cluster.newClientMode(ctx, client.BackpressureIgnore)
	if err != nil {
		return floodStats{}
	}
	defer cl.Close()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		stats floodStats
	)
	for slot := range floodWorkers {
		wg.Add(1)
		go func() { // owned by run: ends with ctx or at floodRequestsMax
			defer wg.Done()
			var mine floodStats
			for n := 0; ctx.Err() == nil; n++ {
				if w.requests.Add(1) > floodRequestsMax {
					mine.Capped = true
					break
				}
				mine.Requests++
				switch op := w.send(cl, rec, floodProcessBase+slot, fmt.Sprintf("f%d-%d", slot, n)); {
				case op.Type == TypeOK:
					mine.Acked++
				case op.Type == TypeInfo:
					mine.Unknown++
				case op.Mode == floodRefused:
					mine.Refused++
				default:
					mine.Failed++
				}
			}
			mu.Lock()
			stats.Requests += mine.Requests
			stats.Acked += mine.Acked
			stats.Refused += mine.Refused
			stats.Unknown += mine.Unknown
			stats.Failed += mine.Failed
			stats.Capped = stats.Capped || mine.Capped
			mu.Unlock()
		}()
	}
	wg.Wait()
	return stats
}

// send sends one request of floodBatchEvents events whose ids are
// BatchEventID(prefix, k) and records it as one FProduceBatch op of the
// flood topic. The tenant's events all route to one partition, so the
// request is one group: acknowledged, refused or unknown as a whole.
func (w *floodWorker) send(cl *client.Client, rec *Recorder, process int, prefix string) Op {
	part := client.PartitionForTenant(floodTenant, w.partitions)
	events := make([]*client.Event, floodBatchEvents)
	for k := range events {
		id := BatchEventID(prefix, k)
		events[k] = &client.Event{EventId: id, TenantId: floodTenant, Payload: []byte(id)}
	}
	op := Op{F: FProduceBatch, Process: process, Topic: floodTopicName, Tenant: floodTenant, EventID: prefix, Partition: part, Count: len(events)}
	inv := rec.Now()
	sendCtx, cancel := context.WithTimeout(context.Background(), floodProduceTimeout) // not ctx: a request in flight completes
	res, err := cl.Produce(sendCtx, floodTopicName, events...)
	cancel()
	op.Time = rec.Now()
	op.LatencyNs = op.Time - inv
	settleBatch(&op, res, len(events), err)
	if op.Type == TypeFail && errors.Is(err, client.ErrThrottled) {
		op.Mode = floodRefused
	}
	rec.Record(op)
	return op
}

// String is the flood's progress line.
func (s floodStats) String() string {
	out := fmt.Sprintf("%d requests of %d events: %d acknowledged, %d refused (throttled), %d refused otherwise, %d unknown",
		s.Requests, floodBatchEvents, s.Acked, s.Refused, s.Failed, s.Unknown)
	if s.Capped {
		out += fmt.Sprintf("; stopped at the bound of %d requests", floodRequestsMax)
	}
	return out
}
