package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/partition"
)

// Acks and nacks of a GroupConsume stream: the loop gathers what the
// member sent within groupConsumeAckLinger (up to GroupCommandOffsetsMax
// offsets per proposal), proposes consecutive acks as one GroupAck and
// consecutive nacks of one delay as one GroupNack, and answers each
// request with its own ack_result. An error after a proposal is an
// unknown outcome, said so in the result (the member may resend: an ack
// applied twice answers already_done); a fenced generation ends the
// stream.

// groupNackDelayMax bounds a nack's delay, as the ack wait is bounded.
const groupNackDelayMax = groupAckWaitMax

// answer handles first and whatever else arrives within the linger.
func (c *groupConsumer) answer(ctx context.Context, first *groupAckItem) error {
	items := []*groupAckItem{first}
	count := len(first.offsets)
	linger := time.NewTimer(groupConsumeAckLinger)
	defer linger.Stop()
gather:
	for count < partition.GroupCommandOffsetsMax && len(items) < groupConsumeAckQueueMax {
		select {
		case it := <-c.acks:
			items = append(items, it)
			count += len(it.offsets)
		case <-linger.C:
			break gather
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	// Runs of compatible items, each within the command's offset bound.
	for len(items) > 0 {
		run, n, marks := items[:1], len(items[0].offsets), len(items[0].marks)
		for _, it := range items[1:] {
			if it.nack != items[0].nack || it.delayMs != items[0].delayMs || n+len(it.offsets) > partition.GroupCommandOffsetsMax ||
				marks+len(it.marks) > partition.GroupCommandOffsetsMax {
				break
			}
			run = items[:len(run)+1]
			n += len(it.offsets)
			marks += len(it.marks)
		}
		items = items[len(run):]
		if err := c.propose(run); err != nil {
			return err
		}
	}
	return nil
}

// propose proposes one run of acks (or of nacks with one delay) and sends
// each item's result.
func (c *groupConsumer) propose(run []*groupAckItem) error {
	m := c.n.metrics.groupConsume
	st, err := c.state()
	if err != nil {
		return err
	}
	results := make([]*heraldpb.GroupAckResult, len(run))
	var offsets []uint64
	var before uint64
	var marks []partition.GroupMark
	var counted []int // indices of the items in the proposal
	for i, it := range run {
		results[i] = &heraldpb.GroupAckResult{Id: it.id, Nack: it.nack}
		itemMarks, problem := groupMarksFromWire(it.marks, it.before, it.offsets)
		if problem == "" {
			problem = marksBelowCursor(itemMarks, st.Delivered)
		}
		switch {
		case problem != "":
			results[i].Refused = true
			results[i].Error = problem
			continue
		case !it.nack && it.before > st.Delivered:
			results[i].Refused = true
			results[i].Error = fmt.Sprintf("before %d is above the group's cursor %d: those offsets were never delivered; nothing acknowledged", it.before, st.Delivered)
			continue
		case it.nack && time.Duration(it.delayMs)*time.Millisecond > groupNackDelayMax:
			results[i].Refused = true
			results[i].Error = fmt.Sprintf("nack delay %d ms above the limit %s; nothing nacked", it.delayMs, groupNackDelayMax)
			continue
		}
		offsets = append(offsets, it.offsets...)
		marks = append(marks, itemMarks...)
		before = max(before, it.before)
		counted = append(counted, i)
	}
	if len(counted) > 0 {
		var res partition.GroupResult
		if run[0].nack {
			c.mayBeDue(time.Now().Add(time.Duration(run[0].delayMs) * time.Millisecond))
			res, err = c.r.GroupNack(partition.GroupNackRequest{Group: c.group, Generation: c.generation, Member: c.member,
				Offsets: offsets, Delay: time.Duration(run[0].delayMs) * time.Millisecond, NowUnixNano: time.Now().UnixNano()})
		} else {
			res, err = c.r.GroupAck(partition.GroupAckRequest{Group: c.group, Generation: c.generation, Member: c.member,
				Before: before, Offsets: offsets, Marks: marks})
		}
		switch {
		case errors.Is(err, partition.ErrUnknownOutcome):
			for _, i := range counted {
				results[i].UnknownOutcome = true
				results[i].Error = fmt.Sprintf("the proposal's outcome is unknown (%v); resend to learn it", err)
			}
		case err != nil:
			return c.error(err) // fenced, not leader, unknown group: nothing written; the stream ends
		default:
			k := 0
			applied := 0
			for _, i := range counted {
				it := run[i]
				for _, off := range it.offsets {
					o := res.Outcomes[k]
					k++
					results[i].Results = append(results[i].Results, &heraldpb.GroupOffsetResult{Offset: off, Outcome: offsetOutcomeWire(o)})
					if o == partition.OffsetApplied {
						applied++
					}
					if o == partition.OffsetApplied || o == partition.OffsetAlreadyDone {
						c.settle(off)
					}
				}
				if it.before > 0 {
					c.settleBelow(it.before)
				}
				results[i].Floor = res.State.Floor
			}
			if run[0].nack {
				m.nacks.WithLabelValues(c.topic, c.group).Add(float64(applied))
			} else {
				m.acks.WithLabelValues(c.topic, c.group).Add(float64(res.Done))
				c.recordMarks(res)
			}
		}
	}
	for _, r := range results {
		if err := c.stream.Send(&heraldpb.GroupConsumeResponse{Msg: &heraldpb.GroupConsumeResponse_AckResult{AckResult: r}}); err != nil {
			return err
		}
	}
	return nil
}

// offsetOutcomeWire is o on the wire.
func offsetOutcomeWire(o partition.OffsetOutcome) heraldpb.GroupOffsetOutcome {
	switch o {
	case partition.OffsetApplied:
		return heraldpb.GroupOffsetOutcome_GROUP_OFFSET_APPLIED
	case partition.OffsetAlreadyDone:
		return heraldpb.GroupOffsetOutcome_GROUP_OFFSET_ALREADY_DONE
	case partition.OffsetNotDelivered:
		return heraldpb.GroupOffsetOutcome_GROUP_OFFSET_NOT_DELIVERED
	}
	return heraldpb.GroupOffsetOutcome_GROUP_OFFSET_OUTCOME_UNSPECIFIED
}
