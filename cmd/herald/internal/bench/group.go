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

// Group scenario bounds.
const (
	// groupMembers is the size of the consumer group, as in the issue's
	// comparison with JetStream's durable consumer.
	groupMembers = 3
	// groupBatchEvents is the largest batch a member asks for (the
	// server's maximum).
	groupBatchEvents = 1000
	// groupSettleAttempts bounds the joins until the three members agree
	// on one generation.
	groupSettleAttempts = 20
)

// runGroup produces opts.Count events (batched, not timed), creates a
// consumer group at earliest, lets three members join it and settle on one
// assignment, then times the members consuming every event of their
// partitions with explicit acks (one cumulative ack per batch, on the
// partition's leader), until every partition's acknowledged position
// reaches its end. Latency is per batch: delivery to ack result.
func runGroup(ctx context.Context, e *env) error {
	ends, total, err := preload(ctx, e, "group")
	if err != nil {
		return err
	}
	const group = "bench"
	if _, err := e.admin.CreateGroup(ctx, e.topic, group, &client.GroupConfig{AckWaitMs: 30_000, MaxPending: 65_536}, client.GroupStartEarliest()); err != nil {
		return fmt.Errorf("bench: create group: %w", err)
	}
	owners, generation, interval, err := settleGroup(ctx, e.admin, e.topic, group)
	if err != nil {
		return err
	}

	prog := startProgress(e.progress, "group", total)
	lat := newLatency()
	var acked atomic.Int64
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	failure := &firstFailure{cancel: cancel}
	var wg sync.WaitGroup
	e.cpu.begin(ctx)
	start := time.Now()
	// The members heartbeat while they consume (a member that does not
	// expires after its session timeout, and the rebalance fences its
	// streams); a rebalance during the run fails it.
	for i := range groupMembers {
		wg.Go(func() {
			if err := heartbeatMember(ctx, e.admin, e.topic, group, fmt.Sprintf("m%d", i), generation, interval); err != nil {
				failure.set(err)
			}
		})
	}
	// One histogram per partition's goroutine (a latency is not safe for
	// concurrent use), merged once they are done.
	var consumers sync.WaitGroup
	histograms := make(map[int]*latency, len(owners))
	for p := range owners {
		histograms[p] = newLatency()
	}
	for p, member := range owners {
		consumers.Go(func() {
			if err := consumePartition(ctx, e.admin, e.topic, group, member, generation, uint32(p), ends[p], e.opts.GroupWindow, histograms[p], &acked, prog); err != nil {
				failure.set(err)
			}
		})
	}
	consumers.Wait()
	for _, h := range histograms {
		lat.merge(h)
	}
	elapsed := time.Since(start)
	prog.stop()
	if err := failure.err(); err != nil {
		wg.Wait()
		return err
	}
	e.result.setThroughput(acked.Load(), e.opts.SizeBytes, elapsed.Seconds())
	e.finishCPU(ctx)
	cancel() // ends the heartbeats
	wg.Wait()
	e.result.setLatency(lat.percentiles(), latencyPerBatch)
	e.note("%d members of a consumer group (ack wait 30 s), one cumulative ack per batch of up to %d events, %d batches in flight per partition; counted when the ack is applied", groupMembers, groupBatchEvents, e.opts.GroupWindow)
	return nil
}

// heartbeatMember heartbeats member at interval until ctx ends; a
// heartbeat that asks for a rebalance, or fails past the session, is an
// error.
func heartbeatMember(ctx context.Context, cl *client.Client, topic, group, member string, generation uint64, interval time.Duration) error {
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		_, rebalance, err := cl.GroupHeartbeat(ctx, topic, group, member, generation)
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil && rebalance:
			return fmt.Errorf("bench: member %s of group %s: a rebalance during the run (a member expired, or the coordinator moved)", member, group)
		case err == nil:
			last = time.Now()
		case time.Since(last) > 3*interval:
			return fmt.Errorf("bench: heartbeat of member %s of group %s: %w", member, group, err)
		}
	}
}

// settleGroup joins groupMembers members and rejoins until all of them
// hold the same generation; it returns each partition's owner, the
// generation and the members' heartbeat interval.
func settleGroup(ctx context.Context, cl *client.Client, topic, group string) (map[int]string, uint64, time.Duration, error) {
	for range groupSettleAttempts {
		joined := make([]*client.GroupMembership, groupMembers)
		errs := make([]error, groupMembers)
		var wg sync.WaitGroup
		for i := range groupMembers {
			wg.Go(func() {
				joined[i], errs[i] = cl.JoinGroup(ctx, topic, group, fmt.Sprintf("m%d", i), 0)
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			if ctx.Err() != nil {
				return nil, 0, 0, err
			}
			continue
		}
		gen := joined[0].Generation
		owners := map[int]string{}
		same := true
		for i, m := range joined {
			same = same && m.Generation == gen
			for _, p := range m.Partitions {
				owners[int(p)] = fmt.Sprintf("m%d", i)
			}
		}
		if same {
			return owners, gen, joined[0].HeartbeatInterval, nil
		}
	}
	return nil, 0, 0, fmt.Errorf("bench: the %d members of group %s did not settle on one generation in %d joins", groupMembers, group, groupSettleAttempts)
}

// consumePartition consumes partition as member until its acknowledged
// position reaches end, acknowledging each batch at once.
func consumePartition(ctx context.Context, cl *client.Client, topic, group, member string, generation uint64, partition uint32, end uint64, window int, lat *latency, acked *atomic.Int64, prog *progress) error {
	s, err := cl.GroupConsume(ctx, client.GroupConsumeOptions{Topic: topic, Group: group, Partition: partition,
		MemberID: member, Generation: generation, MaxBatchEvents: groupBatchEvents, MaxBatchesInFlight: uint32(window)})
	if err != nil {
		return fmt.Errorf("bench: group consume %s/%d: %w", topic, partition, err)
	}
	defer s.Close()
	sent := map[uint64]time.Time{} // ack id -> when the batch arrived
	floor := s.Started().GetFloor()
	for floor < end {
		batch, result, err := s.Recv()
		if err != nil {
			return fmt.Errorf("bench: group consume %s/%d at %d: %w", topic, partition, floor, err)
		}
		if batch != nil {
			evs := batch.GetEvents()
			if len(evs) == 0 {
				continue
			}
			id, err := s.Ack(evs[len(evs)-1].GetOffset() + 1)
			if err != nil {
				return fmt.Errorf("bench: ack %s/%d: %w", topic, partition, err)
			}
			sent[id] = time.Now()
			continue
		}
		if result.GetUnknownOutcome() || result.GetRefused() {
			return fmt.Errorf("bench: ack %s/%d: %v", topic, partition, result)
		}
		if at, ok := sent[result.GetId()]; ok {
			lat.record(time.Since(at))
			delete(sent, result.GetId())
		}
		if f := result.GetFloor(); f > floor {
			acked.Add(int64(f - floor))
			prog.add(int64(f - floor))
			floor = f
		}
	}
	return nil
}
