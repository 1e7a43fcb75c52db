package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/heraldlog/herald/client/heraldpb"
)

// Produce appends events to topic and returns one result per event, in the
// order given: its partition, offset, tenant sequence and event id. Each
// event needs a tenant id; all of a tenant's events go to the partition
// PartitionForTenant picks, so its sequence orders them.
//
// Events are grouped by partition and each group is sent to that
// partition's leader (any node when it is not known yet), the groups
// concurrently. A group is acknowledged as a whole once committed on a
// quorum. When some groups fail, the returned slice still holds the
// results of the acknowledged events and nil for the others, and the error
// joins each failed group's error.
//
// Retries: a NOT_LEADER answer is followed to the leader it names at once;
// NO_LEADER, or a node that cannot be reached before the request was sent,
// is retried with backoff on another node, at most Config.MaxRetries times
// and while ctx lasts.
//
// No resend of an ambiguous write: Herald has no idempotent producers yet,
// so a request that may have reached a node and failed without a definite
// refusal (an attempt timeout after sending, a connection lost mid-call, an
// UNKNOWN_OUTCOME answer) is not resent, since that could append its events
// twice. Its error matches ErrUnknownOutcome: the events may or may not be
// in the log, and the caller decides (for example by reading the tenant's
// latest events). Producer ids will make such retries safe.
//
// Produce is safe for concurrent use; it blocks until every group is done.
func (c *Client) Produce(ctx context.Context, topic string, events ...*Event) ([]*ProduceResult, error) {
	if topic == "" {
		return nil, InvalidArgument("topic", "a topic name is required")
	}
	for i, e := range events {
		if e == nil {
			return nil, InvalidArgument("events", "event %d is nil", i)
		}
		if e.GetTenantId() == "" {
			return nil, InvalidArgument("tenant_id", "event %d has no tenant id", i)
		}
	}
	if len(events) == 0 {
		return nil, nil
	}
	partitions, err := c.partitions(ctx, topic)
	if err != nil {
		return nil, err
	}

	groups := make(map[uint32][]int) // partition -> indexes into events
	for i, e := range events {
		p := PartitionForTenant(e.GetTenantId(), partitions)
		groups[p] = append(groups[p], i)
	}
	order := make([]uint32, 0, len(groups))
	for p := range groups {
		order = append(order, p)
	}
	slices.Sort(order)

	results := make([]*ProduceResult, len(events))
	errs := make([]error, len(order))
	if len(order) == 1 {
		errs[0] = c.produceGroup(ctx, topic, order[0], groups[order[0]], events, results)
	} else {
		// One goroutine per partition group, each owned by this call and
		// done before it returns; each writes only its own indexes.
		var wg sync.WaitGroup
		for k, p := range order {
			wg.Go(func() {
				errs[k] = c.produceGroup(ctx, topic, p, groups[p], events, results)
			})
		}
		wg.Wait()
	}
	if err := errors.Join(errs...); err != nil {
		return results, err
	}
	return results, nil
}

// produceGroup sends the events at indexes (all for partition) and writes
// their results at the same indexes of results.
func (c *Client) produceGroup(ctx context.Context, topic string, partition uint32, indexes []int, events []*Event, results []*ProduceResult) error {
	req := &heraldpb.ProduceRequest{Topic: topic, Events: make([]*heraldpb.Event, len(indexes))}
	for j, i := range indexes {
		req.Events[j] = events[i]
	}
	op := fmt.Sprintf("produce to %s/%d", topic, partition)
	var resp *heraldpb.ProduceResponse
	err := c.run(ctx, call{
		op: op, topic: topic, partition: partition, bound: true, mutating: true,
		do: func(ctx context.Context, hc heraldpb.HeraldClient) error {
			r, err := hc.Produce(ctx, req)
			resp = r
			return err
		},
	})
	if err != nil {
		return err
	}
	if got := len(resp.GetResults()); got != len(indexes) {
		return fmt.Errorf("client: %s: the server acknowledged %d results for %d events: %w", op, got, len(indexes), ErrUnknownOutcome)
	}
	for j, i := range indexes {
		results[i] = resp.GetResults()[j]
	}
	return nil
}
