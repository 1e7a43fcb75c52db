package partition

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	heraldlog "github.com/heraldlog/herald/log"
	"github.com/heraldlog/herald/partition/partitionpb"
)

// Consumer groups (issue 12): their committed positions and pending
// acknowledgements are replicated state of the partition, changed only by
// commands through its Raft log and stored in its Pebble key range (see
// log/group.go for the state and the rules), so that a leader failover or
// the restart of every node loses no acknowledgement and redelivers only
// what was not acknowledged.
//
// The service that drives them (API, coordinator, rebalancing) calls, on
// the partition's leader, the Group* commands below; each proposes one Raft
// entry and waits for it to apply here. Any replica serves the reads
// (GroupState, Groups, GroupPending, GroupExpired), as applied here. The
// leader stamps the time of a delivery or a nack (NowUnixNano) before
// proposing; apply never reads a clock.
//
// The types are the log's, under the partition's names.
type (
	GroupConfig         = heraldlog.GroupConfig
	GroupState          = heraldlog.GroupState
	PendingDelivery     = heraldlog.PendingDelivery
	GroupResult         = heraldlog.GroupResult
	OffsetOutcome       = heraldlog.OffsetOutcome
	GroupDeliverRequest = heraldlog.GroupDeliverRequest
	GroupAckRequest     = heraldlog.GroupAckRequest
	GroupNackRequest    = heraldlog.GroupNackRequest
	GroupMark           = heraldlog.GroupMark
)

// Per-offset outcomes (GroupResult.Outcomes); OffsetOutcome.Err gives the
// sentinel of a refused one.
const (
	OffsetApplied       = heraldlog.OffsetApplied
	OffsetAlreadyDone   = heraldlog.OffsetAlreadyDone
	OffsetNotDelivered  = heraldlog.OffsetNotDelivered
	OffsetMaxDeliveries = heraldlog.OffsetMaxDeliveries
)

// Bounds of the consumer group state (replicated behaviour).
const (
	GroupsMax              = heraldlog.GroupsMax
	GroupPendingMax        = heraldlog.GroupPendingMax
	GroupCommandOffsetsMax = heraldlog.GroupCommandOffsetsMax
	GroupMarksMax          = heraldlog.GroupMarksMax
	GroupMarkKeyBytesMax   = heraldlog.GroupMarkKeyBytesMax
)

// Refusals of a consumer group command by the state machine: every replica
// refuses the command alike, and nothing of it was written. They are the
// log's sentinels and typed errors (errors.Is and errors.As match either
// name), except ErrInvalidGroupCommand.
var (
	ErrUnknownGroup    = heraldlog.ErrUnknownGroup
	ErrGroupExists     = heraldlog.ErrGroupExists
	ErrTooManyGroups   = heraldlog.ErrTooManyGroups
	ErrStaleGeneration = heraldlog.ErrStaleGeneration
	ErrMaxPending      = heraldlog.ErrMaxPending
	ErrCursorMoved     = heraldlog.ErrCursorMoved
	ErrNotDelivered    = heraldlog.ErrNotDelivered
	// Per-offset outcomes only (OffsetOutcome.Err).
	ErrAlreadyDone   = heraldlog.ErrAlreadyDone
	ErrMaxDeliveries = heraldlog.ErrMaxDeliveries
	// ErrInvalidGroupCommand: an argument outside its domain (a name or
	// member id length, a config, too many offsets, offsets out of order,
	// an offset above the high watermark, a negative delay). It wraps the
	// log's error (heraldlog.ErrInvalidArgument) and keeps its message.
	ErrInvalidGroupCommand = errors.New("partition: invalid consumer group command")
)

// Typed refusals, matching the sentinels above.
type (
	StaleGenerationError = heraldlog.StaleGenerationError
	MaxPendingError      = heraldlog.MaxPendingError
	CursorMovedError     = heraldlog.CursorMovedError
	NotDeliveredError    = heraldlog.NotDeliveredError
)

// groupApplyResult is the FSM's response to a consumer group entry.
type groupApplyResult struct {
	result GroupResult
	err    error
}

func groupConfigFromProto(c *partitionpb.GroupConfig) GroupConfig {
	return GroupConfig{
		AckWait:       time.Duration(c.GetAckWaitNanos()),
		MaxDeliveries: c.GetMaxDeliveries(),
		MaxPending:    c.GetMaxPending(),
		KeyOrder:      c.GetKeyOrder(),
	}
}

func groupConfigToProto(c GroupConfig) *partitionpb.GroupConfig {
	return &partitionpb.GroupConfig{AckWaitNanos: int64(c.AckWait), MaxDeliveries: c.MaxDeliveries, MaxPending: c.MaxPending, KeyOrder: c.KeyOrder}
}

// applyGroup applies one consumer group command to the batch. A refusal is
// the command's result (nothing written); a storage failure stops the node.
func (f *FSM) applyGroup(batch *heraldlog.Batch, index uint64, cmd proto.Message) *groupApplyResult {
	var res GroupResult
	var err error
	switch c := cmd.(type) {
	case *partitionpb.GroupCreateCommand:
		res, err = batch.GroupCreate(c.Group, groupConfigFromProto(c.Config), c.StartOffset)
	case *partitionpb.GroupResetCommand:
		res, err = batch.GroupReset(c.Group, c.StartOffset)
	case *partitionpb.GroupDeleteCommand:
		res, err = batch.GroupDelete(c.Group)
	case *partitionpb.GroupAssignCommand:
		res, err = batch.GroupAssign(c.Group, c.Generation, c.Member)
	case *partitionpb.GroupDeliverCommand:
		res, err = batch.GroupDeliver(GroupDeliverRequest{Group: c.Group, Generation: c.Generation, Member: c.Member,
			NewFrom: c.NewFrom, NewCount: c.NewCount, Redeliver: c.Redeliver, NowUnixNano: c.NowUnixNano})
	case *partitionpb.GroupAckCommand:
		res, err = batch.GroupAck(GroupAckRequest{Group: c.Group, Generation: c.Generation, Member: c.Member,
			Before: c.Before, Offsets: c.Offsets, Marks: groupMarksFromProto(c.Marks)})
	case *partitionpb.GroupNackCommand:
		res, err = batch.GroupNack(GroupNackRequest{Group: c.Group, Generation: c.Generation, Member: c.Member,
			Offsets: c.Offsets, Delay: time.Duration(c.DelayNanos), NowUnixNano: c.NowUnixNano})
	case *partitionpb.GroupDeadLetterCommand:
		res, err = batch.GroupDeadLetter(c.Group, c.Offsets)
	default:
		// decodeCommand returns no other type.
		f.stop(index, "apply", fmt.Errorf("%w: unexpected command %T", ErrBadCommand, cmd))
	}
	switch {
	case err == nil:
	case errors.Is(err, heraldlog.ErrInvalidArgument):
		err = &refusalError{kind: ErrInvalidGroupCommand, cause: err}
	case !heraldlog.IsGroupRefusal(err):
		f.stop(index, fmt.Sprintf("consumer group command %T", cmd), err)
	}
	return &groupApplyResult{result: res, err: err}
}

// proposeGroup proposes one consumer group command and waits for it to
// apply here. Errors: ErrNotLeader (not proposed), ErrUnknownOutcome
// (proposed; it may or may not apply), a refusal of the state machine
// (nothing written).
func (r *Replica) proposeGroup(cmd proto.Message) (GroupResult, error) {
	if !r.IsLeader() {
		return GroupResult{}, ErrNotLeader
	}
	data, err := encodeGroup(cmd)
	if err != nil {
		return GroupResult{}, err
	}
	future := r.group.Raft().Apply(data, r.cfg.Batcher.EnqueueTimeout)
	if err := future.Error(); err != nil {
		return GroupResult{}, classifyApplyError(err)
	}
	res, ok := future.Response().(*groupApplyResult)
	if !ok || res == nil {
		return GroupResult{}, fmt.Errorf("%w: partition %d: consumer group command applied without a result", ErrUnknownOutcome, r.cfg.GroupID)
	}
	return res.result, res.err
}

// GroupCreate creates group name with config, its floor and cursor at
// start (at most the high watermark). Refusals: ErrGroupExists,
// ErrTooManyGroups, ErrInvalidGroupCommand. A retry after
// ErrUnknownOutcome may find ErrGroupExists: compare the state.
func (r *Replica) GroupCreate(name string, config GroupConfig, start uint64) (GroupResult, error) {
	return r.proposeGroup(&partitionpb.GroupCreateCommand{Group: name, Config: groupConfigToProto(config), StartOffset: start})
}

// GroupReset moves group name's floor and cursor to start (at most the
// high watermark) and drops its pending deliveries. Refusals:
// ErrUnknownGroup, ErrInvalidGroupCommand.
func (r *Replica) GroupReset(name string, start uint64) (GroupResult, error) {
	return r.proposeGroup(&partitionpb.GroupResetCommand{Group: name, StartOffset: start})
}

// GroupDelete deletes group name and everything it holds; the result's
// state is the group's last. Refusals: ErrUnknownGroup,
// ErrInvalidGroupCommand.
func (r *Replica) GroupDelete(name string) (GroupResult, error) {
	return r.proposeGroup(&partitionpb.GroupDeleteCommand{Group: name})
}

// GroupAssign makes member the partition's owner for group name under
// generation (above the current one; the current assignment again is a
// no-op). Refusals: ErrUnknownGroup, *StaleGenerationError,
// ErrInvalidGroupCommand.
func (r *Replica) GroupAssign(name string, generation uint64, member string) (GroupResult, error) {
	return r.proposeGroup(&partitionpb.GroupAssignCommand{Group: name, Generation: generation, Member: member})
}

// GroupDeliver records a delivery before the events are sent: send only the
// new offsets and the redeliveries whose outcome is OffsetApplied.
// Refusals as a whole: ErrUnknownGroup, *StaleGenerationError,
// *CursorMovedError, *MaxPendingError, ErrInvalidGroupCommand.
func (r *Replica) GroupDeliver(req GroupDeliverRequest) (GroupResult, error) {
	return r.proposeGroup(&partitionpb.GroupDeliverCommand{Group: req.Group, Generation: req.Generation, Member: req.Member,
		NewFrom: req.NewFrom, NewCount: req.NewCount, Redeliver: req.Redeliver, NowUnixNano: req.NowUnixNano})
}

// GroupAck acknowledges offsets (cumulatively below req.Before, then one by
// one with per-offset outcomes) and writes req.Marks in the same entry. Refusals as a whole: ErrUnknownGroup,
// *StaleGenerationError, *NotDeliveredError, ErrInvalidGroupCommand.
func (r *Replica) GroupAck(req GroupAckRequest) (GroupResult, error) {
	return r.proposeGroup(&partitionpb.GroupAckCommand{Group: req.Group, Generation: req.Generation, Member: req.Member,
		Before: req.Before, Offsets: req.Offsets, Marks: groupMarksToProto(req.Marks)})
}

func groupMarksFromProto(marks []*partitionpb.GroupMark) []GroupMark {
	if len(marks) == 0 {
		return nil
	}
	out := make([]GroupMark, len(marks))
	for i, m := range marks {
		out[i] = GroupMark{Key: m.GetKey(), Sequence: m.GetSequence(), Offset: m.GetOffset()}
	}
	return out
}

func groupMarksToProto(marks []GroupMark) []*partitionpb.GroupMark {
	if len(marks) == 0 {
		return nil
	}
	out := make([]*partitionpb.GroupMark, len(marks))
	for i, m := range marks {
		out[i] = &partitionpb.GroupMark{Key: m.Key, Sequence: m.Sequence, Offset: m.Offset}
	}
	return out
}

// GroupMarks returns, per key, group name's processed mark sequence (0:
// none; an absent group has none) as applied here (log/group_marks.go).
// At most GroupCommandOffsetsMax keys. Errors: *CorruptionError.
func (r *Replica) GroupMarks(name string, keys []string) ([]uint64, error) {
	seqs, err := r.cfg.Log.GroupMarks(name, keys)
	return seqs, readError(err)
}

// GroupNack makes pending offsets due again at req.NowUnixNano +
// req.Delay, with per-offset outcomes. Refusals as a whole:
// ErrUnknownGroup, *StaleGenerationError, ErrInvalidGroupCommand.
func (r *Replica) GroupNack(req GroupNackRequest) (GroupResult, error) {
	return r.proposeGroup(&partitionpb.GroupNackCommand{Group: req.Group, Generation: req.Generation, Member: req.Member,
		Offsets: req.Offsets, DelayNanos: int64(req.Delay), NowUnixNano: req.NowUnixNano})
}

// GroupDeadLetter marks pending offsets done after the caller wrote them to
// the dead-letter topic; reason stays in the Raft log. Per-offset
// outcomes. Refusals as a whole: ErrUnknownGroup, ErrInvalidGroupCommand.
func (r *Replica) GroupDeadLetter(name string, offsets []uint64, reason string) (GroupResult, error) {
	return r.proposeGroup(&partitionpb.GroupDeadLetterCommand{Group: name, Offsets: offsets, Reason: reason})
}

// GroupState returns group name's state as applied here (lag: high
// watermark - Floor). Errors: ErrUnknownGroup, *CorruptionError.
func (r *Replica) GroupState(name string) (GroupState, error) {
	state, err := r.cfg.Log.GroupState(name)
	return state, readError(err)
}

// Groups returns the state of every group of the partition as applied
// here (at most GroupsMax).
func (r *Replica) Groups() ([]GroupState, error) {
	states, err := r.cfg.Log.Groups()
	return states, readError(err)
}

// GroupPending returns up to limit of group name's pending deliveries from
// offset from on, in offset order, as applied here.
func (r *Replica) GroupPending(name string, from uint64, limit int) ([]PendingDelivery, error) {
	pending, err := r.cfg.Log.GroupPending(name, from, limit)
	return pending, readError(err)
}

// GroupExpired returns up to limit of group name's pending deliveries due
// at now, earliest first, as applied here: what the leader redelivers (or
// dead-letters, once at the group's max deliveries).
func (r *Replica) GroupExpired(name string, now time.Time, limit int) ([]PendingDelivery, error) {
	pending, err := r.cfg.Log.GroupExpired(name, now.UnixNano(), limit)
	return pending, readError(err)
}
