package server

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
	heraldlog "github.com/heraldlog/herald/log"
	"github.com/heraldlog/herald/partition"
)

// One step of a GroupConsume stream's serving loop: dead-letter what is
// due at max deliveries, then redeliver what is due and deliver new
// offsets from the group's cursor, recording the delivery (one
// GroupDeliver proposal) before the batch is sent.
//
// Offsets that cannot or need not be sent are "skipped": an event whose
// TTL has passed, and an offset below the low watermark (retention removed
// it). A skipped offset is recorded as delivered like the others (so new
// offsets stay contiguous from the cursor) and then acknowledged by the
// leader itself (one GroupAck under the member's generation), never sent:
// the group moves past it and never stalls on it. If that ack's outcome is
// unknown, the offset comes due again after the ack wait and is skipped
// again.

// groupEntry is one offset of a delivery being prepared.
type groupEntry struct {
	offset     uint64
	deliveries uint32 // the count after this delivery
	wire       []byte // appendWireEvent's encoding; nil when skipped
	skip       string // why it is skipped ("expired", "retention"), or ""
	redelivery bool
	key        string  // its order key, when the group keeps per-key order
	mark       markKey // the event's idempotency key (group_consume_marks.go)
	sequence   uint64  // the event's tenant sequence
}

// Outcomes of prepare's take.
const (
	entryTaken = iota
	entryFull  // the batch has no room for it
	entryHeld  // per-key order holds it
)

// step makes one step of the loop. progressed reports that it changed
// something (sent a batch, dead-lettered, proposed): the loop steps again
// at once. Otherwise next is when something becomes due (zero: nothing
// is), besides new events, acks and the member's room.
func (c *groupConsumer) step(ctx context.Context, now time.Time) (progressed bool, next time.Time, err error) {
	st, err := c.state()
	if err != nil {
		return false, time.Time{}, err
	}
	due, err := c.dueScan(now)
	if err != nil {
		return false, time.Time{}, err
	}
	var deadLetters, redeliver []partition.PendingDelivery
	takingOver := c.takeoverFrom < c.takeoverEnd
	if takingOver {
		pending, err := c.r.GroupPending(c.group, c.takeoverFrom, c.batchEvents)
		if err != nil {
			return false, time.Time{}, c.error(err)
		}
		c.takeoverFrom = c.takeoverEnd // nothing left unless a page says otherwise
		for _, d := range pending {
			if d.Offset >= c.takeoverEnd {
				break
			}
			c.takeoverFrom = d.Offset + 1
			if c.config.MaxDeliveries > 0 && d.Deliveries >= c.config.MaxDeliveries {
				continue // dead-lettered when due
			}
			redeliver = append(redeliver, d)
		}
		// Due offsets are served by the takeover's pages as they come.
		due = due[:0]
	}
	for _, d := range due {
		if c.config.MaxDeliveries > 0 && d.Deliveries >= c.config.MaxDeliveries {
			if len(deadLetters) < groupDeadLettersPerStepMax {
				deadLetters = append(deadLetters, d)
			}
			continue
		}
		if len(redeliver) < c.batchEvents {
			redeliver = append(redeliver, d)
		}
	}
	if len(deadLetters) > 0 {
		if now.Before(c.deadLetterRetryAt) {
			next = c.deadLetterRetryAt
		} else {
			done, err := c.deadLetter(ctx, deadLetters)
			if err != nil || done {
				return done, time.Time{}, err
			}
			next = c.deadLetterRetryAt
		}
	}

	entries, consumed, order, err := c.prepare(st, redeliver, now)
	if err != nil {
		return false, time.Time{}, err
	}
	if takingOver {
		// prepare goes through a prefix of redeliver (the batch's bounds):
		// the takeover resumes after it.
		if consumed < len(redeliver) {
			c.takeoverFrom = redeliver[consumed].Offset
		}
		if len(entries) == 0 && c.takeoverFrom < c.takeoverEnd {
			return true, time.Time{}, nil
		}
	}
	if order != nil && order.heldNew {
		c.n.metrics.groupConsume.keyOrderHolds.WithLabelValues(c.topic, c.group).Inc()
	}
	if len(entries) == 0 {
		wake := c.dueScanAt
		if order != nil {
			wake = order.wake
		}
		return false, earliest(next, wake), nil
	}
	return true, time.Time{}, c.deliver(st, entries, now)
}

// earliest returns the earlier of two times, zero meaning none.
func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}

// dueScan returns the group's pending offsets due at now (at most a
// batch and the dead letters of a step), scanning the due index only when
// something may be due: the index is a queue in the LSM whose acknowledged
// entries are tombstones, so a scan costs more the more was acknowledged
// lately (a tenth of a node's CPU in the group bench when it ran every
// step). After a scan that found nothing, the next is due at the earliest
// of groupDueScanInterval and what this stream makes due (mayBeDue: a
// delivery's ack wait, a nack's delay); after one that found something, at
// the next step.
func (c *groupConsumer) dueScan(now time.Time) ([]partition.PendingDelivery, error) {
	if now.Before(c.dueScanAt) {
		return nil, nil
	}
	due, err := c.r.GroupExpired(c.group, now, c.batchEvents+groupDeadLettersPerStepMax)
	if err != nil {
		return nil, c.error(err)
	}
	c.dueScanAt = time.Time{}
	if len(due) == 0 {
		c.dueScanAt = now.Add(groupDueScanInterval)
	}
	return due, nil
}

// mayBeDue notes that a pending offset may become due at at.
func (c *groupConsumer) mayBeDue(at time.Time) {
	if at.Before(c.dueScanAt) {
		c.dueScanAt = at
	}
}

// redeliveryReadMax bounds the records one read of redelivered offsets
// takes (the log reads whole chunks of up to ~1,024 records: one read
// serves the redeliveries that fall in it).
const redeliveryReadMax = 1024

// pageReader reads the records of increasing offsets for one step,
// keeping the last page read (at most redeliveryReadMax records and the
// batch's bytes, or one record) so that offsets close together cost one
// read.
type pageReader struct {
	c    *groupConsumer
	page []heraldlog.Record
}

// read returns the record at offset (offsets asked in increasing order, up
// to last), or why it is skipped.
func (p *pageReader) read(offset, last uint64, now time.Time) (*heraldlog.Record, string, error) {
	c := p.c
	if offset < c.r.LowWatermark() {
		return nil, "retention", nil
	}
	if len(p.page) == 0 || offset < p.page[0].Offset || offset > p.page[len(p.page)-1].Offset {
		recs, err := c.r.Read(offset, int(min(last-offset+1, redeliveryReadMax)), c.batchBytes)
		var oor *partition.OffsetOutOfRangeError
		switch {
		case errors.As(err, &oor) && offset < oor.Low:
			return nil, "retention", nil
		case err != nil:
			return nil, "", c.error(err)
		}
		p.page = recs
	}
	i := int(offset - min(offset, p.pageStart()))
	if i >= len(p.page) || p.page[i].Offset != offset {
		return nil, "retention", nil // the log's offsets are dense: only retention leaves a hole
	}
	rec := &p.page[i]
	if e := rec.ExpireAtUnixNano; e != 0 && e <= now.UnixNano() {
		return nil, "expired", nil
	}
	return rec, "", nil
}

func (p *pageReader) pageStart() uint64 {
	if len(p.page) == 0 {
		return 0
	}
	return p.page[0].Offset
}

// prepare picks this step's entries: the due redeliveries, then new
// offsets from the cursor, within the batch's events and bytes (the first
// event goes whatever its size), the group's max pending and, when the
// group keeps per-key order, its held keys (group_consume_order.go; order
// is then that view, else nil). consumed is how many of redeliver it went
// through (taken or held) before the batch was full.
func (c *groupConsumer) prepare(st partition.GroupState, redeliver []partition.PendingDelivery, now time.Time) (entries []groupEntry, consumed int, order *keyOrder, err error) {
	slices.SortFunc(redeliver, func(a, b partition.PendingDelivery) int {
		return cmp.Compare(a.Offset, b.Offset)
	})
	if st.Config.KeyOrder {
		if order, err = c.keyOrderView(st, now); err != nil {
			return nil, 0, nil, err
		}
	}
	sent, bytes := 0, 0
	// take adds e, with rec's event unless e is skipped, or reports why
	// it added nothing.
	take := func(e groupEntry, rec *heraldlog.Record) int {
		if e.skip == "" {
			if order != nil {
				e.key = orderKey(rec)
				if order.holds(e.key, e.offset) {
					return entryHeld
				}
			}
			e.wire = appendWireEvent(nil, rec, c.index)
			e.mark, e.sequence = idempotencyKeyOf(rec), rec.Sequence
			if sent >= c.batchEvents || (sent > 0 && bytes+len(e.wire) > c.batchBytes) {
				return entryFull
			}
			sent++
			bytes += len(e.wire)
			if order != nil {
				order.take(e.key)
			}
		}
		entries = append(entries, e)
		return entryTaken
	}
	reader := &pageReader{c: c}
redeliveries:
	for _, d := range redeliver {
		rec, skip, err := reader.read(d.Offset, redeliver[len(redeliver)-1].Offset, now)
		if err != nil {
			return nil, 0, nil, err
		}
		switch take(groupEntry{offset: d.Offset, deliveries: d.Deliveries + 1, skip: skip, redelivery: true}, rec) {
		case entryFull:
			break redeliveries
		default:
			consumed++
		}
	}
	high, low := c.r.HighWatermark(), c.r.LowWatermark()
	if st.Pending >= uint64(st.Config.MaxPending) || st.Delivered >= high {
		return entries, consumed, order, nil
	}
	room := min(uint64(c.batchEvents-sent), uint64(st.Config.MaxPending)-st.Pending,
		uint64(partition.GroupCommandOffsetsMax-len(entries)))
	if room == 0 {
		return entries, consumed, order, nil
	}
	from := st.Delivered
	if from < low {
		// Removed by retention before the group reached them.
		for off := from; off < min(low, from+room); off++ {
			entries = append(entries, groupEntry{offset: off, deliveries: 1, skip: "retention"})
		}
		return entries, consumed, order, nil
	}
	recs, err := c.r.Read(from, int(room), c.batchBytes)
	var oor *partition.OffsetOutOfRangeError
	if errors.As(err, &oor) {
		return entries, consumed, order, nil // retention moved under us: the next step sees it
	}
	if err != nil {
		return nil, 0, nil, c.error(err)
	}
newOffsets:
	for i := range recs {
		rec := &recs[i]
		if rec.Offset != from+uint64(i) {
			break // new offsets are contiguous from the cursor
		}
		e := groupEntry{offset: rec.Offset, deliveries: 1}
		if x := rec.ExpireAtUnixNano; x != 0 && x <= now.UnixNano() {
			e.skip = "expired"
		}
		switch take(e, rec) {
		case entryHeld:
			order.heldNew = true
			break newOffsets
		case entryFull:
			break newOffsets
		}
	}
	return entries, consumed, order, nil
}

// deliver records entries as delivered (one GroupDeliver), sends the
// events the state machine applied to the member, and acknowledges the
// skipped ones as the leader.
func (c *groupConsumer) deliver(st partition.GroupState, entries []groupEntry, now time.Time) error {
	m := c.n.metrics.groupConsume
	req := partition.GroupDeliverRequest{Group: c.group, Generation: c.generation, Member: c.member, NowUnixNano: now.UnixNano()}
	var fresh []groupEntry
	var redelivered []groupEntry
	for _, e := range entries {
		if e.redelivery {
			req.Redeliver = append(req.Redeliver, e.offset)
			redelivered = append(redelivered, e)
		} else {
			fresh = append(fresh, e)
		}
	}
	if len(fresh) > 0 {
		req.NewFrom, req.NewCount = fresh[0].offset, uint64(len(fresh))
	}
	res, err := c.r.GroupDeliver(req)
	c.mayBeDue(now.Add(st.Config.AckWait)) // whatever the outcome: it may have applied
	var cm *partition.CursorMovedError
	var mp *partition.MaxPendingError
	switch {
	case errors.As(err, &cm), errors.As(err, &mp):
		// Another stream of the member delivered meanwhile (nothing
		// written): the next step reads the state again.
		c.n.logger.Debug("group consume: delivery refused; reading the state again", "topic", c.topic, "partition", c.index, "group", c.group, "err", err)
		return nil
	case errors.Is(err, partition.ErrUnknownOutcome):
		// The offsets may be pending now: if so they come due after the
		// ack wait and are redelivered then. Nothing was sent.
		c.n.logger.Warn("group consume: delivery outcome unknown; the offsets come due again after the ack wait if it applied",
			"topic", c.topic, "partition", c.index, "group", c.group, "err", err)
		return nil
	case err != nil:
		return c.error(err)
	}
	batch := &heraldpb.GroupConsumeBatch{Partition: c.index, HighWatermark: c.r.HighWatermark()}
	var frame []byte
	var skipped []uint64
	var sentOffsets []uint64
	var sent []groupEntry
	newSent, reSent := 0, 0
	take := func(e groupEntry) {
		if e.skip != "" {
			skipped = append(skipped, e.offset)
			m.skipped.WithLabelValues(c.topic, c.group, e.skip).Inc()
			return
		}
		frame = append(frame, e.wire...)
		batch.DeliveryCounts = append(batch.DeliveryCounts, e.deliveries)
		sentOffsets = append(sentOffsets, e.offset)
		if c.orderKeys != nil && e.key != "" {
			c.orderKeys[e.offset] = e.key // pending now: the next step's view needs no read for it
		}
		sent = append(sent, e)
	}
	// The batch is in offset order: redeliveries (all below the cursor)
	// first, then the new offsets.
	for i, e := range redelivered {
		if res.Outcomes[i] != partition.OffsetApplied {
			continue // acknowledged meanwhile, or at max deliveries: a later step dead-letters it
		}
		if e.skip == "" {
			reSent++
		}
		take(e)
	}
	for _, e := range fresh {
		if e.skip == "" {
			newSent++
		}
		take(e)
	}
	if len(sentOffsets) > 0 {
		batch.ProcessedSequences = c.processedSequences(sent)
		batch.ProtoReflect().SetUnknown(frame)
		if err := c.stream.Send(&heraldpb.GroupConsumeResponse{Msg: &heraldpb.GroupConsumeResponse_Batch{Batch: batch}}); err != nil {
			return err
		}
		c.track(sentOffsets, now.Add(st.Config.AckWait))
		m.deliveries.WithLabelValues(c.topic, c.group).Add(float64(newSent))
		m.redeliveries.WithLabelValues(c.topic, c.group).Add(float64(reSent))
	}
	if len(skipped) > 0 {
		_, err := c.r.GroupAck(partition.GroupAckRequest{Group: c.group, Generation: c.generation, Member: c.member, Offsets: skipped})
		if err != nil && !errors.Is(err, partition.ErrUnknownOutcome) {
			return c.error(err)
		}
		if err != nil {
			c.n.logger.Warn("group consume: acknowledging skipped offsets: outcome unknown; they come due again after the ack wait",
				"topic", c.topic, "partition", c.index, "group", c.group, "offsets", len(skipped), "err", err)
		}
	}
	return nil
}
