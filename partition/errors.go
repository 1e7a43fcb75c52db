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

// QueueFullError is ErrQueueFull with the sizes: of the whole queue, or,
// when Tenant is set, of that tenant's share of it.
type QueueFullError struct {
	Tenant        string
	QueuedBytes   int // held when the call arrived
	CallBytes     int
	QueueBytesMax int
}

// Error implements error.
func (e *QueueFullError) Error() string {
	if e.Tenant != "" {
		return fmt.Sprintf("partition: produce queue full for tenant %s: %d bytes waiting and %d more in this call; its share is %d bytes",
			e.Tenant, e.QueuedBytes, e.CallBytes, e.QueueBytesMax)
	}
	return fmt.Sprintf("partition: produce queue full: %d bytes waiting and %d more in this call; the limit is %d bytes",
		e.QueuedBytes, e.CallBytes, e.QueueBytesMax)
}

// Is reports whether target is ErrQueueFull or ErrThrottled.
func (e *QueueFullError) Is(target error) bool {
	return target == ErrQueueFull || target == ErrThrottled
}

// ErrThrottled matches every refusal by admission control (a tenant over
// its quota, a protected consumer group too far behind, a full queue):
// nothing was proposed, and the call may be sent again after its hint.
var ErrThrottled = errors.New("partition: throttled")

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

// Refusals of a produce call by the log's producer and record rules. The
// state machine decides them from the replicated entry and state alone, so
// every replica refuses the call the same way and nothing of it is
// written. Each refusal wraps the log's error (errors.Is and errors.As see
// through to it) and keeps its message.
var (
	// ErrOutOfOrder: an idempotent producer's sequence is above the next
	// one expected (a gap). An *OutOfOrderError matches it.
	ErrOutOfOrder = errors.New("partition: producer sequence out of order")
	// ErrSequenceTooOld: the sequence was committed, but so long ago that
	// its position is forgotten; it can be neither appended nor answered
	// as a duplicate.
	ErrSequenceTooOld = errors.New("partition: producer sequence too old")
	// ErrUnknownProducer: a sequence other than 1 from a producer the
	// partition does not know (never seen, or forgotten after being idle).
	ErrUnknownProducer = errors.New("partition: unknown producer")
	// ErrProducerFenced: the producer's epoch is older than the
	// partition's. A *ProducerFencedError matches it.
	ErrProducerFenced = errors.New("partition: producer fenced")
	// ErrInvalidRecord: the log refuses a record as invalid (tenant id,
	// size, or another argument outside its domain). The node validates
	// first; this keeps a bad entry from stopping the partition.
	ErrInvalidRecord = errors.New("partition: invalid record")
)

// OutOfOrderError is ErrOutOfOrder with the sequences: the producer must
// resend from Expected.
type OutOfOrderError struct {
	Tenant     string
	ProducerID string
	Expected   uint64
	Got        uint64
	cause      error // the log's refusal, whose message this is
}

// Error implements error.
func (e *OutOfOrderError) Error() string {
	if e.cause != nil {
		return e.cause.Error()
	}
	return fmt.Sprintf("partition: producer %q of tenant %q: sequence %d out of order, expected %d", e.ProducerID, e.Tenant, e.Got, e.Expected)
}

// Is reports whether target is ErrOutOfOrder.
func (e *OutOfOrderError) Is(target error) bool { return target == ErrOutOfOrder }

// Unwrap returns the log's refusal.
func (e *OutOfOrderError) Unwrap() error { return e.cause }

// ProducerFencedError is ErrProducerFenced with the epochs: a newer
// InitProducer for ProducerID issued CurrentEpoch.
type ProducerFencedError struct {
	Tenant       string
	ProducerID   string
	Epoch        uint64
	CurrentEpoch uint64
	cause        error // the log's refusal, whose message this is
}

// Error implements error.
func (e *ProducerFencedError) Error() string {
	if e.cause != nil {
		return e.cause.Error()
	}
	return fmt.Sprintf("partition: producer %q of tenant %q: epoch %d is fenced by epoch %d", e.ProducerID, e.Tenant, e.Epoch, e.CurrentEpoch)
}

// Is reports whether target is ErrProducerFenced.
func (e *ProducerFencedError) Is(target error) bool { return target == ErrProducerFenced }

// Unwrap returns the log's refusal.
func (e *ProducerFencedError) Unwrap() error { return e.cause }

// refusalError is a refusal without details of its own: it matches kind
// and reads as the log's refusal it wraps.
type refusalError struct {
	kind  error
	cause error
}

func (e *refusalError) Error() string        { return e.cause.Error() }
func (e *refusalError) Is(target error) bool { return target == e.kind }
func (e *refusalError) Unwrap() error        { return e.cause }

// refusal returns the partition's refusal for a deterministic refusal of
// the log (isDeterministicRefusal), or err itself when it is none of them
// (ErrContractChanged is the partition's own already).
func refusal(err error) error {
	var ooo *heraldlog.OutOfOrderError
	var fenced *heraldlog.ProducerFencedError
	switch {
	case errors.As(err, &ooo):
		return &OutOfOrderError{Tenant: ooo.Tenant, ProducerID: ooo.ProducerID, Expected: ooo.Expected, Got: ooo.Got, cause: err}
	case errors.As(err, &fenced):
		return &ProducerFencedError{Tenant: fenced.Tenant, ProducerID: fenced.ProducerID, Epoch: fenced.Epoch, CurrentEpoch: fenced.CurrentEpoch, cause: err}
	case errors.Is(err, heraldlog.ErrSequenceTooOld):
		return &refusalError{kind: ErrSequenceTooOld, cause: err}
	case errors.Is(err, heraldlog.ErrUnknownProducer):
		return &refusalError{kind: ErrUnknownProducer, cause: err}
	case errors.Is(err, heraldlog.ErrInvalidArgument), errors.Is(err, heraldlog.ErrInvalidTenant), errors.Is(err, heraldlog.ErrRecordTooLarge):
		return &refusalError{kind: ErrInvalidRecord, cause: err}
	default:
		return err
	}
}

// Errors of the read calls (read.go).
var (
	// ErrOffsetOutOfRange: a read from an offset outside [low watermark,
	// high watermark]. An *OffsetOutOfRangeError matches it.
	ErrOffsetOutOfRange = errors.New("partition: offset out of range")
	// ErrCorruption: stored data failed its checks when read. A
	// *CorruptionError matches it.
	ErrCorruption = errors.New("partition: corruption")
)

// OffsetOutOfRangeError is ErrOffsetOutOfRange with the range: a read from
// Requested where the replica holds [Low, High] (High itself is a valid,
// empty, read position).
type OffsetOutOfRangeError struct {
	Requested uint64
	Low       uint64
	High      uint64
	cause     error // the log's error, whose message this is
}

// Error implements error.
func (e *OffsetOutOfRangeError) Error() string {
	if e.cause != nil {
		return e.cause.Error()
	}
	return fmt.Sprintf("partition: offset %d out of range [%d, %d]", e.Requested, e.Low, e.High)
}

// Is reports whether target is ErrOffsetOutOfRange.
func (e *OffsetOutOfRangeError) Is(target error) bool { return target == ErrOffsetOutOfRange }

// Unwrap returns the log's error.
func (e *OffsetOutOfRangeError) Unwrap() error { return e.cause }

// CorruptionError is ErrCorruption with where: the log partition (the
// group id) and the offset at or nearest to the damage, and what failed.
type CorruptionError struct {
	Partition uint64
	Offset    uint64
	Reason    string
	cause     error // the log's error, whose message this is
}

// Error implements error.
func (e *CorruptionError) Error() string {
	if e.cause != nil {
		return e.cause.Error()
	}
	return fmt.Sprintf("partition: corruption in partition %d at offset %d: %s", e.Partition, e.Offset, e.Reason)
}

// Is reports whether target is ErrCorruption.
func (e *CorruptionError) Is(target error) bool { return target == ErrCorruption }

// Unwrap returns the log's error.
func (e *CorruptionError) Unwrap() error { return e.cause }

// readError returns the partition's error for an error of a log read, or
// err itself when the partition has none for it.
func readError(err error) error {
	var oor *heraldlog.OffsetOutOfRangeError
	var ce *heraldlog.CorruptionError
	switch {
	case errors.As(err, &oor):
		return &OffsetOutOfRangeError{Requested: oor.Requested, Low: oor.Low, High: oor.High, cause: err}
	case errors.As(err, &ce):
		return &CorruptionError{Partition: ce.Partition, Offset: ce.Offset, Reason: ce.Reason, cause: err}
	default:
		return err
	}
}
