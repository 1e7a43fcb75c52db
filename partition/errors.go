package partition

import (
	"errors"
	"fmt"

	heraldlog "github.com/heraldlog/herald/log"
)

var (
	// ErrNotLeader means this replica is not the partition's leader; the
	// request was not proposed, so it is safe to send it to the leader.
	ErrNotLeader = errors.New("partition: not the leader")
	// ErrUnknownOutcome means the request was proposed but its fate is not
	// known here (leadership lost, shutdown, caller gave up): it may or may
	// not have been committed.
	ErrUnknownOutcome = errors.New("partition: outcome unknown")
	// ErrClosed means the replica is shutting down; nothing was proposed.
	ErrClosed = errors.New("partition: replica closed")
)

// ErrEntryTooLarge means a produce call's records, encoded as one Raft
// entry, exceed BatcherOptions.EntryBytesMax: such an entry could never
// replicate, so the call is refused before anything is proposed. An
// *EntryTooLargeError matches it.
var ErrEntryTooLarge = errors.New("partition: request too large for one raft entry")

// EntryTooLargeError is ErrEntryTooLarge with the sizes. It also matches
// heraldlog.ErrInvalidArgument: the caller sent too much in one request
// (the server answers InvalidArgument; the client may split it).
type EntryTooLargeError struct {
	Records       int
	EntryBytes    int
	EntryBytesMax int
}

// Error implements error.
func (e *EntryTooLargeError) Error() string {
	return fmt.Sprintf("partition: %d records encode to a %d-byte raft entry; the limit is %d bytes (send fewer or smaller records per request)",
		e.Records, e.EntryBytes, e.EntryBytesMax)
}

// Is reports whether target is ErrEntryTooLarge or heraldlog.ErrInvalidArgument.
func (e *EntryTooLargeError) Is(target error) bool {
	return target == ErrEntryTooLarge || target == heraldlog.ErrInvalidArgument
}

// ErrQueueFull means the partition leader already holds
// BatcherOptions.QueueBytesMax bytes of produce calls waiting for their
// answer; the call was refused before anything was proposed and may be
// retried. A *QueueFullError matches it.
var ErrQueueFull = errors.New("partition: produce queue full")

// QueueFullError is ErrQueueFull with the sizes.
type QueueFullError struct {
	QueuedBytes   int // held when the call arrived
	CallBytes     int
	QueueBytesMax int
}

// Error implements error.
func (e *QueueFullError) Error() string {
	return fmt.Sprintf("partition: produce queue full: %d bytes waiting and %d more in this call; the limit is %d bytes",
		e.QueuedBytes, e.CallBytes, e.QueueBytesMax)
}

// Is reports whether target is ErrQueueFull.
func (e *QueueFullError) Is(target error) bool { return target == ErrQueueFull }

// ErrContractChanged means a produce call was checked against an older
// contract of its topic than the one the partition has been fenced with (a
// `topic alter` was acknowledged since): the state machine refused the
// whole call and nothing was written. Check the events again against the
// current contract and resend. A *ContractChangedError matches it.
var ErrContractChanged = errors.New("partition: topic contract changed")

// ContractChangedError is ErrContractChanged with the versions.
type ContractChangedError struct {
	Checked, Current uint64
}

// Error implements error.
func (e *ContractChangedError) Error() string {
	return fmt.Sprintf("partition: the call was checked against contract version %d of its topic; the partition is fenced at version %d (the topic was altered): nothing written",
		e.Checked, e.Current)
}

// Is reports whether target is ErrContractChanged.
func (e *ContractChangedError) Is(target error) bool { return target == ErrContractChanged }
