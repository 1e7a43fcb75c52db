package log

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Batch gathers appends to one partition and commits them atomically with
// the partition's meta. A Batch is used by the partition's single writer
// only and is not safe for concurrent use. Nothing is visible to readers, and
// nothing changes in the partition, until Commit returns nil; a failed or
// aborted batch leaves the partition exactly as it was.
type Batch struct {
	partition *Partition
	// pebbleBatch is nil once the batch is committed or aborted.
	pebbleBatch *pebble.Batch
	// generation is the partition's generation when the batch was made.
	generation uint64

	firstOffset uint64
	nextOffset  uint64
	// tenantNext overlays the committed next sequences of the tenants this
	// batch appended to.
	tenantNext map[string]uint64
	// scratch is reused to encode keys and values; pebble copies them.
	scratch []byte
	// err is sticky: once an append failed halfway, the batch can only be
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
	b.pebbleBatch = p.db.pebble.NewBatch()
	b.generation = p.generation.Load()
	b.firstOffset = p.high.Load()
	b.nextOffset = b.firstOffset
	return b
}

// Append adds one record for tenant and returns the offset and tenant
// sequence it will have once the batch commits. An invalid tenant or an
// oversized body is refused without changing the batch.
func (b *Batch) Append(tenant string, timestampUnixNano int64, body []byte) (offset, sequence uint64, err error) {
	if b.err != nil {
		return 0, 0, b.err
	}
	if b.pebbleBatch == nil {
		return 0, 0, ErrBatchDone
	}
	if err := checkTenant(tenant); err != nil {
		return 0, 0, err
	}
	if len(body) > recordBodyBytesMax {
		return 0, 0, fmt.Errorf("%w: body is %d bytes, limit %d", ErrRecordTooLarge, len(body), recordBodyBytesMax)
	}
	p := b.partition
	sequence, ok := b.tenantNext[tenant]
	if !ok {
		if sequence, err = b.committedNextSequence(tenant); err != nil {
			return 0, 0, err
		}
	}
	offset = b.nextOffset

	record := Record{Offset: offset, Sequence: sequence, Tenant: tenant, TimestampUnixNano: timestampUnixNano, Body: body}
	value := appendRecordValue(b.scratch[:0], &record)
	keyStart := len(value)
	key := appendRecordKey(value, p.id, offset)[keyStart:]
	if err := b.pebbleBatch.Set(key, value[:keyStart], nil); err != nil {
		b.err = fmt.Errorf("log: partition %d: batch set record %d: %w", p.id, offset, err)
		return 0, 0, b.err
	}
	indexKey := appendTenantIndexKey(key[:0], p.id, tenant, sequence)
	indexValue := binary.BigEndian.AppendUint64(indexKey[len(indexKey):], offset)
	if err := b.pebbleBatch.Set(indexKey, indexValue, nil); err != nil {
		b.err = fmt.Errorf("log: partition %d: batch set tenant index %d: %w", p.id, offset, err)
		return 0, 0, b.err
	}
	b.scratch = value[:0]

	if b.tenantNext == nil {
		b.tenantNext = make(map[string]uint64)
	}
	b.tenantNext[tenant] = sequence + 1
	b.nextOffset++
	return offset, sequence, nil
}

// committedNextSequence reads tenant's committed next sequence.
func (b *Batch) committedNextSequence(tenant string) (uint64, error) {
	p := b.partition
	if err := p.db.acquire(); err != nil {
		return 0, err
	}
	defer p.db.release()
	return p.nextSequenceLocked(tenant)
}

// Len returns the number of records appended so far.
func (b *Batch) Len() int { return int(b.nextOffset - b.firstOffset) }

// Commit writes the appends and the partition's meta (next_offset, the
// tenants' next sequences, the applied index) in one Pebble batch with
// pebble.NoSync (the Raft log is the durability source; see DB.Sync and
// Partition.Snapshot), then publishes the new high watermark and applied
// index. appliedIndex must be above AppliedIndex(); a batch with no appends
// is valid and only advances it. The batch is finished whatever the result;
// on error nothing changed. Writer only.
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

	if b.nextOffset != b.firstOffset {
		if err := b.pebbleBatch.Set(appendMetaKey(nil, p.id, metaNextOffset), encodeUint64(b.nextOffset), nil); err != nil {
			return fmt.Errorf("log: partition %d: batch set next_offset: %w", p.id, err)
		}
	}
	for tenant, next := range b.tenantNext {
		if err := b.pebbleBatch.Set(appendTenantNextKey(nil, p.id, tenant), encodeUint64(next), nil); err != nil {
			return fmt.Errorf("log: partition %d: batch set next sequence of %q: %w", p.id, tenant, err)
		}
	}
	if err := b.pebbleBatch.Set(appendMetaKey(nil, p.id, metaApplied), encodeUint64(appliedIndex), nil); err != nil {
		return fmt.Errorf("log: partition %d: batch set applied: %w", p.id, err)
	}
	if err := b.pebbleBatch.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("log: partition %d: commit batch at applied index %d: %w", p.id, appliedIndex, err)
	}

	p.tenants.publish(b.tenantNext)
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
}
