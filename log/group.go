package log

import (
	"errors"
	"fmt"
	"time"
)

// Consumer groups: the replicated state of durable consumers of a
// partition (issue 12). Per group name a partition keeps:
//
//   - the floor: every offset below it is done (acknowledged or
//     dead-lettered); the group's committed position;
//   - the cursor ("delivered"): the next offset never delivered;
//   - the pending deliveries, offsets in [floor, delivered) not yet done,
//     each with its delivery count, when it was last delivered, when it
//     may be redelivered (not-before) and the member it went to. An offset
//     in [floor, delivered) that is not pending is done: the acknowledged
//     offsets above the floor are the gaps between pending ones, so they
//     cost no storage, and the floor is the lowest pending offset (the
//     cursor when none is pending). They are stored as runs of
//     consecutive offsets that share their state (group_runs.go);
//   - the assignment: a generation and the member that owns the
//     partition for the group under it;
//   - the config fixed at creation (ack wait, max deliveries, max pending).
//
// New offsets are delivered contiguously from the cursor, so that every
// offset below the cursor was delivered.
//
// The commands are Batch methods, called by the partition's state machine
// with the values of a replicated command: times come from the command,
// never from the clock, so every replica computes the same state. Each
// returns a GroupResult, or a refusal (IsGroupRefusal: nothing written) or
// a storage failure (the batch is unusable). What is refused as a whole and
// what per offset:
//
//   - GroupCreate, GroupReset, GroupDelete, GroupAssign: as a whole.
//   - GroupDeliver: as a whole for an unknown group, a stale generation,
//     invalid arguments, new offsets not from the cursor, or max pending;
//     per redelivered offset otherwise (OffsetAlreadyDone,
//     OffsetNotDelivered, OffsetMaxDeliveries), the others redelivered.
//   - GroupAck, GroupNack: as a whole for an unknown group, a stale
//     generation or invalid arguments (and for a cumulative ack above the
//     cursor); per offset otherwise.
//   - GroupDeadLetter: as a whole for an unknown group or invalid
//     arguments; per offset otherwise.

// Bounds of the consumer group state. They are replicated behaviour:
// changing them changes what the state machine refuses.
const (
	// GroupsMax is how many consumer groups a partition holds at most.
	GroupsMax = 1024
	// GroupPendingMax bounds a group's max pending.
	GroupPendingMax = 1 << 16
	// GroupCommandOffsetsMax bounds the offsets one command names (new and
	// redelivered ones of a delivery, individual ones of an ack, nack or
	// dead letter), and so the work of one apply.
	GroupCommandOffsetsMax = 4096
)

// GroupConfig is a consumer group's config, fixed at creation.
type GroupConfig struct {
	// AckWait is how long after a delivery the offset becomes due for
	// redelivery if not acknowledged. Above 0.
	AckWait time.Duration
	// MaxDeliveries bounds how often one offset is delivered; 0: no bound.
	MaxDeliveries uint32
	// MaxPending bounds the group's pending deliveries: 1..GroupPendingMax.
	MaxPending uint32
	// KeyOrder asks the partition's leader to keep per-key order: no
	// event is delivered while an earlier event of the same tenant and
	// key is pending (server/group_consume_order.go). The state machine
	// only stores it.
	KeyOrder bool
}

// Validate reports every problem of c at once; each matches
// ErrInvalidArgument.
func (c GroupConfig) Validate() error {
	var errs []error
	if c.AckWait <= 0 {
		errs = append(errs, fmt.Errorf("%w: consumer group ack wait %s, want above 0", ErrInvalidArgument, c.AckWait))
	}
	if c.MaxPending == 0 || c.MaxPending > GroupPendingMax {
		errs = append(errs, fmt.Errorf("%w: consumer group max pending %d, want 1..%d", ErrInvalidArgument, c.MaxPending, GroupPendingMax))
	}
	return errors.Join(errs...)
}

// GroupState is a consumer group's state as of one applied index.
type GroupState struct {
	Name   string
	Config GroupConfig
	// Floor: every offset below it is done. Lag is high watermark - Floor.
	Floor uint64
	// Delivered is the cursor: the next offset never delivered.
	Delivered uint64
	// Generation and Member are the current assignment (0 and "": none).
	Generation uint64
	Member     string
	// Pending is the number of pending deliveries.
	Pending uint64
	// DeadLettered counts the offsets ever dead-lettered (since the last
	// create; a reset keeps it).
	DeadLettered uint64
}

func (h groupHeader) state(name string) GroupState {
	return GroupState{Name: name, Config: h.config, Floor: h.floor, Delivered: h.delivered,
		Generation: h.generation, Member: h.member, Pending: h.pending, DeadLettered: h.deadLettered}
}

// PendingDelivery is one pending delivery of a group.
type PendingDelivery struct {
	Offset uint64
	// Deliveries is how often the offset was delivered (at least 1).
	Deliveries uint32
	// LastDeliveredUnixNano is the time of the command of the last delivery.
	LastDeliveredUnixNano int64
	// NotBeforeUnixNano is when the offset becomes due for redelivery: the
	// last delivery's time plus the ack wait, or a nack's time plus its delay.
	NotBeforeUnixNano int64
	// Member is who the offset was last delivered to.
	Member string
}

func (v pendingValue) delivery(offset uint64) PendingDelivery {
	return PendingDelivery{Offset: offset, Deliveries: v.deliveries, LastDeliveredUnixNano: v.lastDeliveredUnixNano,
		NotBeforeUnixNano: v.notBeforeUnixNano, Member: v.member}
}

// OffsetOutcome is what a group command did with one offset it named.
// The zero value is not an outcome.
type OffsetOutcome uint8

const (
	// OffsetApplied: the command applied to the offset.
	OffsetApplied OffsetOutcome = iota + 1
	// OffsetAlreadyDone: the offset was delivered and is no longer pending
	// (acknowledged or dead-lettered); nothing changed for it.
	OffsetAlreadyDone
	// OffsetNotDelivered: the offset is at or above the cursor; nothing
	// changed for it.
	OffsetNotDelivered
	// OffsetMaxDeliveries: a redelivery refused, the offset was delivered
	// max deliveries times; nothing changed for it.
	OffsetMaxDeliveries
)

// Err returns the sentinel of a refused outcome (ErrAlreadyDone,
// ErrNotDelivered, ErrMaxDeliveries), nil for OffsetApplied.
func (o OffsetOutcome) Err() error {
	switch o {
	case OffsetApplied:
		return nil
	case OffsetAlreadyDone:
		return ErrAlreadyDone
	case OffsetNotDelivered:
		return ErrNotDelivered
	case OffsetMaxDeliveries:
		return ErrMaxDeliveries
	}
	return fmt.Errorf("%w: offset outcome %d", ErrInvalidArgument, o)
}

// String implements fmt.Stringer.
func (o OffsetOutcome) String() string {
	switch o {
	case OffsetApplied:
		return "applied"
	case OffsetAlreadyDone:
		return "already_done"
	case OffsetNotDelivered:
		return "not_delivered"
	case OffsetMaxDeliveries:
		return "max_deliveries"
	}
	return fmt.Sprintf("OffsetOutcome(%d)", uint8(o))
}

// GroupResult is what a group command did.
type GroupResult struct {
	// State is the group's state after the command (before it, for
	// GroupDelete).
	State GroupState
	// Outcomes has one outcome per offset the command named one by one, in
	// the command's order: GroupDeliver's redeliveries, GroupAck's and
	// GroupNack's offsets, GroupDeadLetter's offsets.
	Outcomes []OffsetOutcome
	// Done counts the offsets the command made done (acknowledged,
	// cumulative ones included, or dead-lettered).
	Done uint64
	// MarksWritten and MarksEvicted count GroupAck's processed marks that
	// raised a key's sequence, and the marks evicted for them
	// (group_marks.go).
	MarksWritten uint64
	MarksEvicted uint64
}
