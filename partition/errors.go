package partition

import "errors"

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
