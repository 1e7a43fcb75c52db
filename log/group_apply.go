package log

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// The consumer group commands, applied by the partition's single writer
// through its Batch (the rules are in group.go). Every check that can
// refuse a command as a whole runs before its first write, so a refused
// command writes nothing; a storage failure makes the batch unusable.

// checkGroupName returns an error matching ErrInvalidArgument unless name
// is 1..255 bytes.
func checkGroupName(name string) error {
	if len(name) == 0 || len(name) > groupNameBytesMax {
		return fmt.Errorf("%w: consumer group name of %d bytes, want 1..%d", ErrInvalidArgument, len(name), groupNameBytesMax)
	}
	return nil
}

// checkOffsetCount refuses a command naming more than GroupCommandOffsetsMax offsets.
func checkOffsetCount(n uint64) error {
	if n > GroupCommandOffsetsMax {
		return fmt.Errorf("%w: %d offsets in one consumer group command, at most %d", ErrInvalidArgument, n, GroupCommandOffsetsMax)
	}
	return nil
}

// addSaturated returns t + d, held at the ends of int64.
func addSaturated(t int64, d time.Duration) int64 {
	s := t + int64(d)
	switch {
	case d > 0 && s < t:
		return math.MaxInt64
	case d < 0 && s > t:
		return math.MinInt64
	}
	return s
}

// groupLocked reads group's header through the batch; an absent group is
// an error matching ErrUnknownGroup. db.lifecycle must be read-held.
func (b *Batch) groupLocked(name string) (groupHeader, error) {
	if err := checkGroupName(name); err != nil {
		return groupHeader{}, err
	}
	h, found, err := b.groupStoreLocked().header(name)
	if err != nil {
		return h, b.fail(err)
	}
	if !found {
		return h, fmt.Errorf("%w: %q", ErrUnknownGroup, name)
	}
	return h, nil
}

// fenced refuses a command of generation and member unless they are the
// group's current assignment.
func fenced(name string, h groupHeader, generation uint64, member string) error {
	if generation == 0 || generation != h.generation || member != h.member {
		return &StaleGenerationError{Group: name, Generation: generation, Member: member,
			CurrentGeneration: h.generation, CurrentMember: h.member}
	}
	return nil
}

// GroupCreate creates group name with config, its floor and cursor at
// start (at most the high watermark as this batch sees it). Refusals:
// invalid name, config or start, ErrGroupExists, ErrTooManyGroups.
// Writer only.
func (b *Batch) GroupCreate(name string, config GroupConfig, start uint64) (GroupResult, error) {
	if err := b.begin(); err != nil {
		return GroupResult{}, err
	}
	defer b.end()
	if err := errors.Join(checkGroupName(name), config.Validate()); err != nil {
		return GroupResult{}, err
	}
	if start > b.nextOffset {
		return GroupResult{}, fmt.Errorf("%w: consumer group %q: start offset %d above the high watermark %d", ErrInvalidArgument, name, start, b.nextOffset)
	}
	store := b.groupStoreLocked()
	if _, found, err := store.header(name); err != nil {
		return GroupResult{}, b.fail(err)
	} else if found {
		return GroupResult{}, fmt.Errorf("%w: %q", ErrGroupExists, name)
	}
	count := 0
	if err := store.groups(func(string, groupHeader) bool { count++; return count < GroupsMax }); err != nil {
		return GroupResult{}, b.fail(err)
	}
	if count >= GroupsMax {
		return GroupResult{}, fmt.Errorf("%w: %d groups, at most %d", ErrTooManyGroups, count, GroupsMax)
	}
	h := groupHeader{floor: start, delivered: start, config: config}
	if err := b.putGroupLocked(name, h); err != nil {
		return GroupResult{}, err
	}
	return GroupResult{State: h.state(name)}, nil
}

// GroupReset moves group name's floor and cursor to start (at most the
// high watermark as this batch sees it) and drops its pending deliveries;
// the assignment, config, dead-letter count and processed marks stay. Refusals: invalid
// name or start, ErrUnknownGroup. Writer only.
func (b *Batch) GroupReset(name string, start uint64) (GroupResult, error) {
	if err := b.begin(); err != nil {
		return GroupResult{}, err
	}
	defer b.end()
	h, err := b.groupLocked(name)
	if err != nil {
		return GroupResult{}, err
	}
	if start > b.nextOffset {
		return GroupResult{}, fmt.Errorf("%w: consumer group %q: start offset %d above the high watermark %d", ErrInvalidArgument, name, start, b.nextOffset)
	}
	if err := b.deleteGroupEntries(name); err != nil {
		return GroupResult{}, err
	}
	h.floor, h.delivered, h.pending = start, start, 0
	if err := b.putGroupLocked(name, h); err != nil {
		return GroupResult{}, err
	}
	return GroupResult{State: h.state(name)}, nil
}

// GroupDelete deletes group name with everything it holds; the result's
// state is the group's before. Refusals: invalid name, ErrUnknownGroup.
// Writer only.
func (b *Batch) GroupDelete(name string) (GroupResult, error) {
	if err := b.begin(); err != nil {
		return GroupResult{}, err
	}
	defer b.end()
	h, err := b.groupLocked(name)
	if err != nil {
		return GroupResult{}, err
	}
	if err := b.deleteGroupEntries(name); err != nil {
		return GroupResult{}, err
	}
	if err := b.deleteMarks(name); err != nil {
		return GroupResult{}, err
	}
	if err := b.delete(appendGroupKey(nil, b.partition.id, name), "consumer group header"); err != nil {
		return GroupResult{}, err
	}
	return GroupResult{State: h.state(name)}, nil
}

// GroupAssign makes member the owner of the partition for group name
// under generation, which must be above the current one; the current
// assignment again changes nothing (a retried assign). Pending deliveries
// stay as they are: those of a previous owner become due at their
// not-before (its acks are fenced from now on). Refusals: invalid name,
// generation 0 or member not 1..255 bytes, ErrUnknownGroup,
// *StaleGenerationError. Writer only.
func (b *Batch) GroupAssign(name string, generation uint64, member string) (GroupResult, error) {
	if err := b.begin(); err != nil {
		return GroupResult{}, err
	}
	defer b.end()
	if generation == 0 || len(member) == 0 || len(member) > groupMemberBytesMax {
		return GroupResult{}, fmt.Errorf("%w: consumer group %q: assignment of generation %d to a member id of %d bytes, want a generation above 0 and 1..%d bytes",
			ErrInvalidArgument, name, generation, len(member), groupMemberBytesMax)
	}
	h, err := b.groupLocked(name)
	if err != nil {
		return GroupResult{}, err
	}
	switch {
	case generation == h.generation && member == h.member:
		return GroupResult{State: h.state(name)}, nil
	case generation <= h.generation:
		return GroupResult{}, &StaleGenerationError{Group: name, Generation: generation, Member: member,
			CurrentGeneration: h.generation, CurrentMember: h.member}
	}
	h.generation, h.member = generation, member
	if err := b.putGroupLocked(name, h); err != nil {
		return GroupResult{}, err
	}
	return GroupResult{State: h.state(name)}, nil
}

// GroupDeliverRequest is one delivery of a group by its current owner, at
// one time: new offsets from the cursor and redeliveries of pending ones.
type GroupDeliverRequest struct {
	Group      string
	Generation uint64
	Member     string
	// NewFrom and NewCount: the new offsets [NewFrom, NewFrom+NewCount).
	// NewFrom must be the group's cursor (else *CursorMovedError) and the
	// offsets below the high watermark as this batch sees it. NewFrom is
	// ignored when NewCount is 0.
	NewFrom  uint64
	NewCount uint64
	// Redeliver lists pending offsets to deliver again, strictly
	// increasing. A pending offset may be redelivered before its
	// not-before (a new owner taking over).
	Redeliver []uint64
	// NowUnixNano is the delivery's time (the leader's clock when it
	// proposed): the deliveries' last delivered time, and not-before
	// NowUnixNano + ack wait.
	NowUnixNano int64
}

// GroupDeliver records a delivery: each new offset becomes pending with
// one delivery; each redelivered offset that is pending and below max
// deliveries counts one more (per-offset outcomes in Redeliver's order).
// Both are due again at NowUnixNano + ack wait. Refusals (as a whole):
// invalid arguments, ErrUnknownGroup, *StaleGenerationError,
// *CursorMovedError, *MaxPendingError. Writer only.
func (b *Batch) GroupDeliver(req GroupDeliverRequest) (GroupResult, error) {
	if err := b.begin(); err != nil {
		return GroupResult{}, err
	}
	defer b.end()
	name := req.Group
	// min keeps the sum from overflowing.
	if err := checkOffsetCount(min(req.NewCount, GroupCommandOffsetsMax+1) + uint64(len(req.Redeliver))); err != nil {
		return GroupResult{}, err
	}
	for i := 1; i < len(req.Redeliver); i++ {
		if req.Redeliver[i] <= req.Redeliver[i-1] {
			return GroupResult{}, fmt.Errorf("%w: consumer group %q: redelivered offsets not strictly increasing (%d after %d)",
				ErrInvalidArgument, name, req.Redeliver[i], req.Redeliver[i-1])
		}
	}
	h, err := b.groupLocked(name)
	if err != nil {
		return GroupResult{}, err
	}
	if err := fenced(name, h, req.Generation, req.Member); err != nil {
		return GroupResult{}, err
	}
	if req.NewCount > 0 {
		if req.NewFrom != h.delivered {
			return GroupResult{}, &CursorMovedError{Group: name, From: req.NewFrom, Delivered: h.delivered}
		}
		if req.NewFrom > b.nextOffset || req.NewCount > b.nextOffset-req.NewFrom {
			return GroupResult{}, fmt.Errorf("%w: consumer group %q: delivery of offsets [%d, %d) at or above the high watermark %d",
				ErrInvalidArgument, name, req.NewFrom, req.NewFrom+req.NewCount, b.nextOffset)
		}
		if h.pending+req.NewCount > uint64(h.config.MaxPending) {
			return GroupResult{}, &MaxPendingError{Group: name, Pending: h.pending, Adding: req.NewCount, MaxPending: h.config.MaxPending}
		}
	}

	// Nothing is refused as a whole from here on.
	notBefore := addSaturated(req.NowUnixNano, h.config.AckWait)
	fresh := pendingValue{deliveries: 1, lastDeliveredUnixNano: req.NowUnixNano, notBeforeUnixNano: notBefore, member: req.Member}
	outcomes, _, err := b.editRunsLocked(name, h, req.Redeliver, func(r pendingRun) (OffsetOutcome, pendingValue, bool) {
		if r.v.deliveries == math.MaxUint32 || (h.config.MaxDeliveries > 0 && r.v.deliveries >= h.config.MaxDeliveries) {
			return OffsetMaxDeliveries, pendingValue{}, false
		}
		next := fresh
		next.deliveries = r.v.deliveries + 1
		return OffsetApplied, next, false
	})
	if err != nil {
		return GroupResult{}, err
	}
	result := GroupResult{Outcomes: outcomes}
	if req.NewCount > 0 {
		// The new offsets are one run: nothing is pending at or above the cursor.
		run := pendingRun{first: req.NewFrom, last: req.NewFrom + req.NewCount - 1, v: fresh}
		if err := b.putRun(name, run, pendingRun{}, false); err != nil {
			return GroupResult{}, err
		}
		// With nothing pending the floor was the cursor, the first new offset.
		h.pending += req.NewCount
		h.delivered += req.NewCount
		if err := b.putGroupLocked(name, h); err != nil {
			return GroupResult{}, err
		}
	}
	result.State = h.state(name)
	return result, nil
}

// GroupAckRequest is one acknowledgement by a group's current owner.
type GroupAckRequest struct {
	Group      string
	Generation uint64
	Member     string
	// Before acknowledges every pending offset below it (cumulative); 0:
	// none. Above the cursor it refuses the whole command
	// (*NotDeliveredError).
	Before uint64
	// Offsets are acknowledged one by one, after Before, each with its
	// outcome: OffsetApplied, OffsetAlreadyDone (below the cursor, not
	// pending) or OffsetNotDelivered (at or above the cursor).
	Offsets []uint64
	// Marks are processed marks written with the acknowledgement (at most
	// GroupCommandOffsetsMax; rules in group_marks.go): each names an
	// offset below Before or in Offsets. A mark below the cursor is
	// written whatever its offset's outcome (an ack applied twice writes
	// it twice: marks only rise, so the second changes nothing); one at or
	// above the cursor is not written.
	Marks []GroupMark
}

// GroupAck acknowledges offsets of a group: they are done, and the floor
// moves over every done offset above it up to the next pending one (or the
// cursor). Refusals (as a whole): invalid arguments, ErrUnknownGroup,
// *StaleGenerationError, *NotDeliveredError. Writer only.
func (b *Batch) GroupAck(req GroupAckRequest) (GroupResult, error) {
	if err := b.begin(); err != nil {
		return GroupResult{}, err
	}
	defer b.end()
	name := req.Group
	if err := checkOffsetCount(uint64(len(req.Offsets))); err != nil {
		return GroupResult{}, err
	}
	h, err := b.groupLocked(name)
	if err != nil {
		return GroupResult{}, err
	}
	if err := fenced(name, h, req.Generation, req.Member); err != nil {
		return GroupResult{}, err
	}
	if req.Before > h.delivered {
		return GroupResult{}, &NotDeliveredError{Group: name, Before: req.Before, Delivered: h.delivered}
	}
	if err := checkMarks(name, req); err != nil {
		return GroupResult{}, err
	}
	result := GroupResult{}
	if result.MarksWritten, result.MarksEvicted, err = b.putMarksLocked(name, h.delivered, req.Marks); err != nil {
		return GroupResult{}, err
	}
	if req.Before > h.floor {
		deleted, err := b.deletePendingBelowLocked(name, h.floor, req.Before)
		if err != nil {
			return GroupResult{}, err
		}
		result.Done += deleted
	}
	outcomes, done, err := b.finishPendingLocked(name, h, req.Offsets)
	if err != nil {
		return GroupResult{}, err
	}
	result.Outcomes = outcomes
	result.Done += done
	if result.State, err = b.settleGroupLocked(name, h, result.Done, 0); err != nil {
		return GroupResult{}, err
	}
	return result, nil
}

// GroupDeadLetter marks offsets of a group done without an
// acknowledgement: the caller has written them to the dead-letter topic.
// Outcomes per offset as for GroupAck; the group's dead-letter count grows
// by those applied. It carries no generation: the partition's leader
// decides it, not a member. Refusals (as a whole): invalid arguments,
// ErrUnknownGroup. Writer only.
func (b *Batch) GroupDeadLetter(name string, offsets []uint64) (GroupResult, error) {
	if err := b.begin(); err != nil {
		return GroupResult{}, err
	}
	defer b.end()
	if err := checkOffsetCount(uint64(len(offsets))); err != nil {
		return GroupResult{}, err
	}
	h, err := b.groupLocked(name)
	if err != nil {
		return GroupResult{}, err
	}
	outcomes, done, err := b.finishPendingLocked(name, h, offsets)
	if err != nil {
		return GroupResult{}, err
	}
	state, err := b.settleGroupLocked(name, h, done, done)
	if err != nil {
		return GroupResult{}, err
	}
	return GroupResult{State: state, Outcomes: outcomes, Done: done}, nil
}

// finishPendingLocked deletes the pending deliveries of offsets (h is the
// group's header before) and returns each offset's outcome and how many
// were pending. db.lifecycle must be read-held. Failures are sticky.
func (b *Batch) finishPendingLocked(name string, h groupHeader, offsets []uint64) ([]OffsetOutcome, uint64, error) {
	return b.editRunsLocked(name, h, offsets, func(pendingRun) (OffsetOutcome, pendingValue, bool) {
		return OffsetApplied, pendingValue{}, true
	})
}

// settleGroupLocked writes group's header after done of its pending
// deliveries were deleted (deadLettered of them dead-lettered): the
// pending count drops and the floor moves to the lowest pending offset
// left, or the cursor. It returns the new state. db.lifecycle must be
// read-held. Failures are sticky.
func (b *Batch) settleGroupLocked(name string, h groupHeader, done, deadLettered uint64) (GroupState, error) {
	if done == 0 {
		return h.state(name), nil
	}
	if done > h.pending {
		return GroupState{}, b.fail(b.corrupt("consumer group %q: %d deliveries done, %d were pending", name, done, h.pending))
	}
	h.pending -= done
	h.deadLettered += deadLettered
	// Every offset below the old floor is done: the lowest pending offset
	// left is at or above it.
	from := h.floor
	h.floor = h.delivered
	if h.pending > 0 {
		first, found, err := b.groupStoreLocked().firstPending(name, from)
		if err != nil {
			return GroupState{}, b.fail(err)
		}
		if !found {
			return GroupState{}, b.fail(b.corrupt("consumer group %q: %d pending, none stored", name, h.pending))
		}
		h.floor = first
	}
	if err := b.putGroupLocked(name, h); err != nil {
		return GroupState{}, err
	}
	return h.state(name), nil
}

// GroupNackRequest is a negative acknowledgement by a group's current
// owner: offsets to redeliver after a delay.
type GroupNackRequest struct {
	Group      string
	Generation uint64
	Member     string
	Offsets    []uint64
	// Delay (at least 0) after NowUnixNano, the command's time, is the
	// offsets' new not-before.
	Delay       time.Duration
	NowUnixNano int64
}

// GroupNack sets the not-before of the pending offsets named to
// NowUnixNano + Delay; outcomes per offset as for GroupAck. Refusals (as a
// whole): invalid arguments, ErrUnknownGroup, *StaleGenerationError.
// Writer only.
func (b *Batch) GroupNack(req GroupNackRequest) (GroupResult, error) {
	if err := b.begin(); err != nil {
		return GroupResult{}, err
	}
	defer b.end()
	name := req.Group
	if err := checkOffsetCount(uint64(len(req.Offsets))); err != nil {
		return GroupResult{}, err
	}
	if req.Delay < 0 {
		return GroupResult{}, fmt.Errorf("%w: consumer group %q: nack delay %s, want at least 0", ErrInvalidArgument, name, req.Delay)
	}
	h, err := b.groupLocked(name)
	if err != nil {
		return GroupResult{}, err
	}
	if err := fenced(name, h, req.Generation, req.Member); err != nil {
		return GroupResult{}, err
	}
	notBefore := addSaturated(req.NowUnixNano, req.Delay)
	outcomes, _, err := b.editRunsLocked(name, h, req.Offsets, func(r pendingRun) (OffsetOutcome, pendingValue, bool) {
		next := r.v
		next.notBeforeUnixNano = notBefore
		return OffsetApplied, next, false
	})
	if err != nil {
		return GroupResult{}, err
	}
	return GroupResult{State: h.state(name), Outcomes: outcomes}, nil
}
