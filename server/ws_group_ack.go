package server

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/wire"
)

// Acks and nacks of a WebSocket group subscription (ws_group.go): an ack
// or nack frame is checked whole on the connection's reader, then settled
// by a goroutine of its own, through the messages that delivered its
// offsets, and answered with ack_result.

// groupSettle acknowledges (or nacks) the offsets an ack (nack) frame
// names. The frame is checked whole first: a bad one, or one naming an
// offset the subscription holds no delivery of (never delivered, already
// acknowledged, or of an older generation), is answered by an error frame
// and settles nothing.
func (c *wsConn) groupSettle(msg *wsClientMessage, nack bool) {
	forType := wsTypeGroupAck
	if nack {
		forType = wsTypeGroupNack
	}
	fail := func(err error) { c.sendError(wsErrorOf(msg.ID, forType, err)) }
	if msg.Sub == "" {
		fail(wire.InvalidArgument("sub", "%s needs sub, the id of a group subscription", forType))
		return
	}
	if msg.Partition == nil {
		fail(wire.InvalidArgument("partition", "%s needs a partition", forType))
		return
	}
	if *msg.Partition < 0 || *msg.Partition > 1<<31 {
		fail(wire.InvalidArgument("partition", "partition %d is out of range", *msg.Partition))
		return
	}
	partition := uint32(*msg.Partition)
	if (len(msg.Offsets) == 0) == (msg.Before == nil) {
		fail(wire.InvalidArgument("offsets", "%s needs either offsets or before", forType))
		return
	}
	if len(msg.Offsets) > wsGroupOffsetsMax {
		fail(wire.InvalidArgument("offsets", "%d offsets: at most %d per frame", len(msg.Offsets), wsGroupOffsetsMax))
		return
	}
	for _, o := range msg.Offsets {
		if o < 0 {
			fail(wire.InvalidArgument("offsets", "offset %d is negative", o))
			return
		}
	}
	if msg.Before != nil && *msg.Before < 0 {
		fail(wire.InvalidArgument("before", "before %d is negative", *msg.Before))
		return
	}
	var delay time.Duration
	if msg.DelayMs != nil {
		if !nack {
			fail(wire.InvalidArgument("delay_ms", "delay_ms is for nack"))
			return
		}
		if *msg.DelayMs < 0 || *msg.DelayMs > wsGroupNackDelayMsMax {
			fail(wire.InvalidArgument("delay_ms", "delay_ms %d: want 0 to %d (24 h)", *msg.DelayMs, wsGroupNackDelayMsMax))
			return
		}
		delay = time.Duration(*msg.DelayMs) * time.Millisecond
	}
	c.groups.mu.Lock()
	gs, ok := c.groups.mu.subs[msg.Sub]
	c.groups.mu.Unlock()
	if !ok {
		fail(wire.InvalidArgument("sub", "no group subscription %q on this connection", msg.Sub))
		return
	}
	msgs, err := gs.deliveries(partition, msg.Offsets, msg.Before)
	if err != nil {
		fail(err)
		return
	}
	select {
	case c.groups.acks <- struct{}{}:
	case <-c.ctx.Done():
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer func() { <-c.groups.acks }()
		results := c.settleAll(gs, msgs, nack, delay)
		_ = c.sendJSON(c.ctx, wsTypeGroupAckResult, &wire.WSGroupAckResult{Type: wsTypeGroupAckResult, ID: msg.ID, Sub: gs.id,
			Partition: partition, Nack: nack, Results: results})
	}()
}

// deliveries returns the deliveries held of offsets on partition (or of
// every offset below before), in offset order; an error naming the
// offsets it holds none of, if any.
func (gs *wsGroupSub) deliveries(partition uint32, offsets []int64, before *int64) ([]*client.GroupMessage, error) {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	var out []*client.GroupMessage
	if before != nil {
		for k, m := range gs.mu.delivered {
			if k.partition == partition && k.offset < uint64(*before) {
				out = append(out, m)
			}
		}
	} else {
		var missing []int64
		seen := make(map[uint64]bool, len(offsets))
		for _, o := range offsets {
			if seen[uint64(o)] {
				continue
			}
			seen[uint64(o)] = true
			m, ok := gs.mu.delivered[wsGroupKey{partition, uint64(o)}]
			if !ok {
				missing = append(missing, o)
				continue
			}
			out = append(out, m)
		}
		if len(missing) > 0 {
			if len(missing) > 10 {
				missing = missing[:10]
			}
			return nil, wire.InvalidArgument("offsets", "group subscription %q holds no delivery of offset(s) %v of partition %d "+
				"(never delivered to it, acknowledged already, or delivered under an older generation); nothing was acknowledged",
				gs.id, missing, partition)
		}
	}
	slices.SortFunc(out, func(a, b *client.GroupMessage) int {
		switch {
		case a.Offset < b.Offset:
			return -1
		case a.Offset > b.Offset:
			return 1
		}
		return 0
	})
	return out, nil
}

// settleAll acks (or nacks) msgs, wsGroupAckParallel at a time, and
// returns each one's outcome in their order. A delivery acknowledged,
// nacked or fenced is forgotten (a nacked one comes again as a new
// delivery); one of unknown outcome is kept, to be acknowledged again.
func (c *wsConn) settleAll(gs *wsGroupSub, msgs []*client.GroupMessage, nack bool, delay time.Duration) []wire.WSGroupOffsetResult {
	ctx, cancel := context.WithTimeout(c.ctx, wsGroupAckTimeout)
	defer cancel()
	results := make([]wire.WSGroupOffsetResult, len(msgs))
	slots := make(chan struct{}, wsGroupAckParallel)
	var wg sync.WaitGroup
	for i, m := range msgs {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			var err error
			if nack {
				err = m.Nack(ctx, delay)
			} else {
				err = m.Ack(ctx)
			}
			results[i] = wsGroupOutcome(m.Offset, err)
		}()
	}
	wg.Wait()
	op := "ack"
	if nack {
		op = "nack"
	}
	gs.mu.Lock()
	for i, m := range msgs {
		c.n.metrics.wsGroup.acks.WithLabelValues(op, results[i].Outcome).Inc()
		if results[i].Outcome == wire.WSAckUnknown {
			continue
		}
		k := wsGroupKey{m.Partition, m.Offset}
		if gs.mu.delivered[k] == m {
			delete(gs.mu.delivered, k)
		}
	}
	gs.mu.Unlock()
	return results
}

// wsGroupOutcome classifies the answer to one offset's ack or nack.
func wsGroupOutcome(offset uint64, err error) wire.WSGroupOffsetResult {
	r := wire.WSGroupOffsetResult{Offset: offset}
	switch {
	case err == nil:
		r.Outcome = wire.WSAckAcked
	case errors.Is(err, client.ErrUnknownOutcome), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		r.Outcome, r.Message = wire.WSAckUnknown, err.Error()
	case errors.Is(err, client.ErrGroupFenced), errors.Is(err, client.ErrStaleGeneration):
		r.Outcome, r.Message = wire.WSAckFenced, err.Error()
	default:
		r.Outcome, r.Message = wire.WSAckFailed, err.Error()
	}
	return r
}
