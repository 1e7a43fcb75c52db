package log

import (
	"errors"
	"fmt"
)

// Refusals of a consumer group command. Each is decided from the command
// and the replicated state alone, so every replica refuses the same command
// the same way, and a refused command changes nothing (see group.go for
// which refusals are per command and which per offset). [IsGroupRefusal]
// tells them from storage failures.
var (
	// ErrUnknownGroup: no group of that name in the partition.
	ErrUnknownGroup = errors.New("log: unknown consumer group")
	// ErrGroupExists: GroupCreate of a name already taken.
	ErrGroupExists = errors.New("log: consumer group already exists")
	// ErrTooManyGroups: GroupCreate in a partition that already holds
	// GroupsMax groups.
	ErrTooManyGroups = errors.New("log: too many consumer groups in the partition")
	// ErrStaleGeneration: a command of an assignment that is not the
	// group's current one (a fenced member, or an older GroupAssign).
	// [*StaleGenerationError] matches it.
	ErrStaleGeneration = errors.New("log: stale consumer group generation")
	// ErrMaxPending: a delivery that would take the group above its max
	// pending. [*MaxPendingError] matches it.
	ErrMaxPending = errors.New("log: consumer group max pending reached")
	// ErrCursorMoved: a delivery of new offsets that does not start at the
	// group's cursor (another delivery got there first).
	// [*CursorMovedError] matches it.
	ErrCursorMoved = errors.New("log: consumer group cursor moved")
	// ErrNotDelivered: an acknowledgement of an offset the group has not
	// delivered yet (at or above its cursor). As a command refusal,
	// [*NotDeliveredError] matches it; as a per-offset outcome it is
	// [OffsetNotDelivered].
	ErrNotDelivered = errors.New("log: offset not delivered to the consumer group")
	// ErrAlreadyDone: a per-offset outcome ([OffsetAlreadyDone]): the offset
	// was delivered and is no longer pending (acknowledged or dead-lettered).
	ErrAlreadyDone = errors.New("log: offset already acknowledged")
	// ErrMaxDeliveries: a per-offset outcome ([OffsetMaxDeliveries]): a
	// redelivery of an offset already delivered the group's max deliveries
	// times; dead-letter it instead.
	ErrMaxDeliveries = errors.New("log: consumer group max deliveries reached")
)

// groupRefusals are the sentinels IsGroupRefusal recognises.
var groupRefusals = []error{
	ErrUnknownGroup, ErrGroupExists, ErrTooManyGroups, ErrStaleGeneration,
	ErrMaxPending, ErrCursorMoved, ErrNotDelivered, ErrInvalidArgument,
}

// IsGroupRefusal reports whether err, returned by a Batch group command, is
// a deterministic refusal (nothing written, every replica refuses alike)
// rather than a storage failure.
func IsGroupRefusal(err error) bool {
	for _, target := range groupRefusals {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// StaleGenerationError reports a command of Generation and Member where
// the group's current assignment is CurrentGeneration and CurrentMember
// (generation 0: never assigned).
type StaleGenerationError struct {
	Group             string
	Generation        uint64
	Member            string
	CurrentGeneration uint64
	CurrentMember     string
}

// Error implements error.
func (e *StaleGenerationError) Error() string {
	return fmt.Sprintf("log: consumer group %q: generation %d member %q is fenced; the group is at generation %d, member %q",
		e.Group, e.Generation, e.Member, e.CurrentGeneration, e.CurrentMember)
}

// Is reports whether target is [ErrStaleGeneration].
func (e *StaleGenerationError) Is(target error) bool { return target == ErrStaleGeneration }

// MaxPendingError reports a delivery of Adding new offsets to a group with
// Pending pending deliveries and a bound of MaxPending.
type MaxPendingError struct {
	Group      string
	Pending    uint64
	Adding     uint64
	MaxPending uint32
}

// Error implements error.
func (e *MaxPendingError) Error() string {
	return fmt.Sprintf("log: consumer group %q: %d pending and %d more would exceed max pending %d",
		e.Group, e.Pending, e.Adding, e.MaxPending)
}

// Is reports whether target is [ErrMaxPending].
func (e *MaxPendingError) Is(target error) bool { return target == ErrMaxPending }

// CursorMovedError reports a delivery of new offsets from From where the
// group's cursor (next offset never delivered) is Delivered.
type CursorMovedError struct {
	Group     string
	From      uint64
	Delivered uint64
}

// Error implements error.
func (e *CursorMovedError) Error() string {
	return fmt.Sprintf("log: consumer group %q: new deliveries from offset %d, but the group's cursor is at %d",
		e.Group, e.From, e.Delivered)
}

// Is reports whether target is [ErrCursorMoved].
func (e *CursorMovedError) Is(target error) bool { return target == ErrCursorMoved }

// NotDeliveredError reports a cumulative acknowledgement of every offset
// below Before where the group has delivered only those below Delivered.
type NotDeliveredError struct {
	Group     string
	Before    uint64
	Delivered uint64
}

// Error implements error.
func (e *NotDeliveredError) Error() string {
	return fmt.Sprintf("log: consumer group %q: acknowledgement of every offset below %d, but only those below %d were delivered",
		e.Group, e.Before, e.Delivered)
}

// Is reports whether target is [ErrNotDelivered].
func (e *NotDeliveredError) Is(target error) bool { return target == ErrNotDelivered }
