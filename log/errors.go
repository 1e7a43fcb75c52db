package log

import (
	"errors"
	"fmt"
)

// Sentinel errors. Compare with errors.Is; the typed errors below match the
// sentinel of their kind.
var (
	// ErrCorruption reports stored or streamed data that fails its checks
	// (checksum, version, offset, density, framing). [*CorruptionError]
	// matches it.
	ErrCorruption = errors.New("log: corruption")
	// ErrClosed reports use of a [DB] (or anything obtained from it) after
	// [DB.Close].
	ErrClosed = errors.New("log: closed")
	// ErrOffsetOutOfRange reports a read outside [low watermark, high
	// watermark]. [*OffsetOutOfRangeError] matches it.
	ErrOffsetOutOfRange = errors.New("log: offset out of range")
	// ErrInvalidOptions reports an [Options] value that fails
	// [Options.Validate].
	ErrInvalidOptions = errors.New("log: invalid options")
	// ErrInvalidArgument reports an argument outside its documented domain
	// (for example a non-positive read limit).
	ErrInvalidArgument = errors.New("log: invalid argument")
	// ErrInvalidTenant reports a tenant id that is not 1..255 bytes.
	ErrInvalidTenant = errors.New("log: invalid tenant")
	// ErrRecordTooLarge reports a record body above the per-record limit.
	ErrRecordTooLarge = errors.New("log: record too large")
	// ErrStaleAppliedIndex reports a Commit whose applied index is not above
	// the partition's applied index.
	ErrStaleAppliedIndex = errors.New("log: stale applied index")
	// ErrBatchDone reports use of a [Batch] after Commit or Abort.
	ErrBatchDone = errors.New("log: batch already committed or aborted")
	// ErrBatchConflict reports a Commit of a batch built against a partition
	// state that changed since [Partition.NewBatch] (another batch was
	// committed, or the partition was restored or dropped). It means the
	// single-writer contract was broken; nothing was written.
	ErrBatchConflict = errors.New("log: batch conflicts with a newer partition state")
	// ErrRestoreIncomplete reports a write or snapshot on a partition whose
	// last [Partition.Restore] (or [Partition.Drop]) failed or is still
	// running; restore (or drop) again before writing to it.
	ErrRestoreIncomplete = errors.New("log: partition restore incomplete")
	// ErrOutOfOrder reports an idempotent producer's sequence above the next
	// one expected (a gap): nothing was appended. [*OutOfOrderError]
	// matches it.
	ErrOutOfOrder = errors.New("log: producer sequence out of order")
	// ErrSequenceTooOld reports an idempotent producer's sequence at or below
	// its last one but older than its window (its last request and its
	// last [ProducerWindow] sequences): it was committed, but its position
	// is forgotten, so it can be neither appended nor answered as a
	// duplicate. Nothing was appended.
	ErrSequenceTooOld = errors.New("log: producer sequence too old")
	// ErrUnknownProducer reports a sequence other than 1 from an idempotent
	// producer the partition does not know (never seen, or forgotten after
	// being idle): nothing was appended.
	ErrUnknownProducer = errors.New("log: unknown producer")
	// ErrProducerFenced reports a request of an idempotent producer under
	// an epoch older than the partition's: a newer InitProducer fenced it.
	// Nothing was appended. [*ProducerFencedError] matches it.
	ErrProducerFenced = errors.New("log: producer fenced")
)

// ProducerFencedError reports a producer's request under Epoch where the
// partition knows CurrentEpoch (newer).
type ProducerFencedError struct {
	Tenant       string
	ProducerID   string
	Epoch        uint64
	CurrentEpoch uint64
}

// Error implements error.
func (e *ProducerFencedError) Error() string {
	return fmt.Sprintf("log: producer %q of tenant %q: epoch %d is fenced by epoch %d", e.ProducerID, e.Tenant, e.Epoch, e.CurrentEpoch)
}

// Is reports whether target is [ErrProducerFenced].
func (e *ProducerFencedError) Is(target error) bool { return target == ErrProducerFenced }

// CorruptionError names the partition and offset at which stored data failed
// a check. For failures not tied to one record (a meta value, the tenant
// index) Offset is the nearest offset known and Reason says which key.
type CorruptionError struct {
	Partition uint64
	Offset    uint64
	Reason    string
}

// Error implements error.
func (e *CorruptionError) Error() string {
	return fmt.Sprintf("log: corruption in partition %d at offset %d: %s", e.Partition, e.Offset, e.Reason)
}

// Is reports whether target is [ErrCorruption].
func (e *CorruptionError) Is(target error) bool { return target == ErrCorruption }

// OffsetOutOfRangeError reports a read from an offset outside
// [Low, High] (High itself is a valid, empty, read position).
type OffsetOutOfRangeError struct {
	Partition uint64
	Requested uint64
	Low       uint64
	High      uint64
}

// Error implements error.
func (e *OffsetOutOfRangeError) Error() string {
	return fmt.Sprintf("log: offset %d out of range [%d, %d] in partition %d", e.Requested, e.Low, e.High, e.Partition)
}

// Is reports whether target is [ErrOffsetOutOfRange].
func (e *OffsetOutOfRangeError) Is(target error) bool { return target == ErrOffsetOutOfRange }

// OutOfOrderError reports an idempotent producer's sequence Got above the
// Expected next one. Nothing was appended and the producer's state is
// unchanged; the producer must resend from Expected.
type OutOfOrderError struct {
	Tenant     string
	ProducerID string
	Expected   uint64
	Got        uint64
}

// Error implements error.
func (e *OutOfOrderError) Error() string {
	return fmt.Sprintf("log: producer %q of tenant %q: sequence %d out of order, expected %d", e.ProducerID, e.Tenant, e.Got, e.Expected)
}

// Is reports whether target is [ErrOutOfOrder].
func (e *OutOfOrderError) Is(target error) bool { return target == ErrOutOfOrder }
