package log

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Batch gathers the writes of one Raft apply to one partition (appends,
// a truncation, dedupe expiry) and commits them atomically with the
// partition's meta. A Batch is used by the partition's single writer only
// and is not safe for concurrent use. Every operation sees the effects of
// the operations before it in the same batch (a duplicate within one batch
// is found). Nothing is visible to readers, and nothing changes in the
// partition, until Commit returns nil; a failed or aborted batch leaves the
// partition exactly as it was.
type Batch struct {
	partition *Partition
	// pebbleBatch is indexed, so that reads through it (producer state,
	// event ids, the time index, truncated records) see the batch's own
	// writes over the committed state. It is nil once the batch is
	// committed or aborted.
	pebbleBatch *pebble.Batch
	// generation is the partition's generation when the batch was made.
	generation uint64

	// Committed values when the batch was made (first*) and pending ones.
	firstOffset, nextOffset       uint64
	firstLow, low                 uint64
	firstTimestamp, lastTimestamp int64
	firstBytes, bytes             uint64

	// tenantNext overlays the committed next sequences of the tenants this
	// batch appended to.
	tenantNext map[string]uint64
	// timeIndex caches the last time index point for this batch's appends.
	timeIndex timeIndexCursor
	// chunk holds the appended records not yet sealed into the Pebble
	// batch: at most one chunk (chunkRecordsMax records or
	// chunkRecordsBytesMax bytes of records, or one larger record).
	chunk chunkBuilder
	// producers overlays the stored state of the idempotent producers this
	// batch appended for; it is written once per producer, at Commit (or
	// before ExpireDedupe scans the stored states).
	producers map[producerKey]producerState
	// scratch is reused to encode keys and values; pebble copies them.
	scratch []byte
	// err is sticky: once a write failed halfway, the batch can only be
	// aborted.
	err error
}

// NewBatch starts a batch whose first record gets the current high
// watermark as its offset. Writer only.
func (p *Partition) NewBatch() *Batch {
	b := &Batch{partition: p}
	if err := p.db.acquire(); err != nil {
		b.err = err
		return b
	}
	defer p.db.release()
	b.pebbleBatch = p.db.pebble.NewIndexedBatch()
	b.generation = p.generation.Load()
	b.firstOffset = p.high.Load()
	b.nextOffset = b.firstOffset
	b.firstLow = p.low.Load()
	b.low = b.firstLow
	b.firstTimestamp = p.lastTimestamp.Load()
	b.lastTimestamp = b.firstTimestamp
	b.firstBytes = p.bytes.Load()
	b.bytes = b.firstBytes
	return b
}

// usable returns the error that makes b unusable, if any.
func (b *Batch) usable() error {
	if b.err != nil {
		return b.err
	}
	if b.pebbleBatch == nil {
		return ErrBatchDone
	}
	return nil
}

// fail makes err sticky (a write failed halfway) and returns it.
func (b *Batch) fail(err error) error {
	b.err = err
	return err
}

// set writes key -> value into the batch; a failure is sticky.
func (b *Batch) set(key, value []byte, what string) error {
	if err := b.pebbleBatch.Set(key, value, nil); err != nil {
		return b.fail(fmt.Errorf("log: partition %d: batch set %s: %w", b.partition.id, what, err))
	}
	return nil
}

// delete deletes key in the batch; a failure is sticky.
func (b *Batch) delete(key []byte, what string) error {
	if err := b.pebbleBatch.Delete(key, nil); err != nil {
		return b.fail(fmt.Errorf("log: partition %d: batch delete %s: %w", b.partition.id, what, err))
	}
	return nil
}

// deleteRange deletes [lower, upper) in the batch; a failure is sticky.
func (b *Batch) deleteRange(lower, upper []byte, what string) error {
	if err := b.pebbleBatch.DeleteRange(lower, upper, nil); err != nil {
		return b.fail(fmt.Errorf("log: partition %d: batch delete range %s: %w", b.partition.id, what, err))
	}
	return nil
}

// Len returns the number of records appended so far (duplicates excluded).
func (b *Batch) Len() int { return int(b.nextOffset - b.firstOffset) }

// Commit seals the pending chunk, writes the buffered producer states, and
// writes the batch and the partition's meta (next_offset,
// low_watermark, last_ts, bytes, the tenants' next sequences, the applied
// index) in one Pebble batch with pebble.NoSync (the Raft log is the
// durability source; see DB.Sync and Partition.Snapshot), then publishes
// the new state. A truncation's low watermark is published just before the
// write, so that readers stop asking for records about to go; if the write
// fails it is put back. appliedIndex must be above AppliedIndex(); a batch
// with no writes is valid and only advances it. The batch is finished
// whatever the result; on error nothing changed in Pebble. Writer only.
func (b *Batch) Commit(appliedIndex uint64) error {
	if b.pebbleBatch == nil && b.err == nil {
		return ErrBatchDone
	}
	defer b.Abort()
	if b.err != nil {
		return b.err
	}
	p := b.partition
	if err := p.db.acquire(); err != nil {
		return err
	}
	defer p.db.release()
	p.writeMu.Lock()
	defer p.writeMu.Unlock()

	if p.restoring.Load() {
		return fmt.Errorf("log: partition %d: commit: %w", p.id, ErrRestoreIncomplete)
	}
	if current := p.applied.Load(); appliedIndex <= current {
		return fmt.Errorf("%w: partition %d: commit at applied index %d, already at %d", ErrStaleAppliedIndex, p.id, appliedIndex, current)
	}
	if p.generation.Load() != b.generation || p.high.Load() != b.firstOffset {
		return fmt.Errorf("%w: partition %d", ErrBatchConflict, p.id)
	}
	// Invariants, checked right before they are written.
	if b.low < b.firstLow || b.low > b.firstOffset || b.nextOffset < b.firstOffset || b.lastTimestamp < b.firstTimestamp {
		return &CorruptionError{Partition: p.id, Offset: b.nextOffset, Reason: fmt.Sprintf(
			"batch would write low_watermark %d (was %d), next_offset %d (was %d), last_ts %d (was %d)",
			b.low, b.firstLow, b.nextOffset, b.firstOffset, b.lastTimestamp, b.firstTimestamp)}
	}

	if err := b.flushChunk(); err != nil {
		return err
	}
	if err := b.flushProducers(); err != nil {
		return err
	}
	metas := []struct {
		name    string
		changed bool
		value   uint64
	}{
		{metaNextOffset, b.nextOffset != b.firstOffset, b.nextOffset},
		{metaLowWatermark, b.low != b.firstLow, b.low},
		{metaLastTimestamp, b.lastTimestamp != b.firstTimestamp, uint64(b.lastTimestamp)},
		// Written with every change of the log, so that a partition
		// written before version 2 gets its derived count persisted.
		{metaBytes, b.bytes != b.firstBytes || b.nextOffset != b.firstOffset || b.low != b.firstLow, b.bytes},
		{metaApplied, true, appliedIndex},
	}
	for _, m := range metas {
		if !m.changed {
			continue
		}
		if err := b.pebbleBatch.Set(appendMetaKey(nil, p.id, m.name), encodeUint64(m.value), nil); err != nil {
			return fmt.Errorf("log: partition %d: batch set %s: %w", p.id, m.name, err)
		}
	}
	for tenant, next := range b.tenantNext {
		if err := b.pebbleBatch.Set(appendTenantNextKey(nil, p.id, tenant), encodeUint64(next), nil); err != nil {
			return fmt.Errorf("log: partition %d: batch set next sequence of %q: %w", p.id, tenant, err)
		}
	}

	p.low.Store(b.low)
	if err := b.pebbleBatch.Commit(pebble.NoSync); err != nil {
		p.low.Store(b.firstLow)
		return fmt.Errorf("log: partition %d: commit batch at applied index %d: %w", p.id, appliedIndex, err)
	}

	p.tenants.publish(b.tenantNext)
	p.bytes.Store(b.bytes)
	p.lastTimestamp.Store(b.lastTimestamp)
	p.high.Store(b.nextOffset)
	p.applied.Store(appliedIndex)
	p.generation.Add(1)
	return nil
}

// Abort discards the batch. It is a no-op after Commit or a previous Abort,
// so `defer b.Abort()` is the usual pattern.
func (b *Batch) Abort() {
	if b.pebbleBatch == nil {
		return
	}
	// Close only returns the batch's memory to a pool; its error (always
	// nil today) cannot change anything the caller relies on.
	_ = b.pebbleBatch.Close()
	b.pebbleBatch = nil
	b.tenantNext = nil
	b.producers = nil
	b.chunk.release()
}

// begin checks that b is usable and read-holds the DB's lifecycle for an
// operation that reads through the batch. Pair with end.
func (b *Batch) begin() error {
	if err := b.usable(); err != nil {
		return err
	}
	return b.partition.db.acquire()
}

// end ends a begin.
func (b *Batch) end() { b.partition.db.release() }

// getLocked reads key through the batch (its writes over the committed
// state) and returns a copy of the value; found is false when it is
// absent. db.lifecycle must be read-held.
func (b *Batch) getLocked(key []byte, what string) (value []byte, found bool, err error) {
	v, closer, err := b.pebbleBatch.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("log: partition %d: read %s: %w", b.partition.id, what, err)
	}
	value = append([]byte(nil), v...)
	if err := closer.Close(); err != nil {
		return nil, false, fmt.Errorf("log: partition %d: read %s: %w", b.partition.id, what, err)
	}
	return value, true, nil
}

// newIterLocked opens an iterator over [lower, upper) through the batch.
// db.lifecycle must be read-held.
func (b *Batch) newIterLocked(lower, upper []byte) (*pebble.Iterator, error) {
	iter, err := b.pebbleBatch.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("log: partition %d: batch iterator: %w", b.partition.id, err)
	}
	return iter, nil
}

// corrupt returns a *CorruptionError at the batch's next offset, for
// stored state that is not tied to one record.
func (b *Batch) corrupt(format string, args ...any) error {
	return &CorruptionError{Partition: b.partition.id, Offset: b.nextOffset, Reason: fmt.Sprintf(format, args...)}
}
