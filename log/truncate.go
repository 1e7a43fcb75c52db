package log

import (
	"fmt"
	"math"
	"slices"
)

// TruncateBefore deletes every record with an offset below offset, with
// their tenant index entries and time index points, and moves the low
// watermark there. offset is clamped to the high watermark as committed
// (records appended earlier in this batch are never truncated by it); at
// or below the low watermark it is a no-op. It is a replicated,
// deterministic operation: the leader picks offset (see
// Partition.RetentionPoint) and every replica applies it.
//
// Records go with one Pebble range delete. The records' headers are read
// (and checked) to find each tenant's highest truncated sequence, whose
// index entries then go with one range delete per tenant (a tenant's
// sequences follow its offsets), and to keep the partition's byte count
// (SizeBytes) exact: the work is linear in the number of records
// truncated. Dedupe state that points at truncated records stays until it
// expires: a duplicate may name a position below the low watermark.
// Writer only.
func (b *Batch) TruncateBefore(offset uint64) error {
	if err := b.begin(); err != nil {
		return err
	}
	defer b.end()
	p := b.partition
	target := min(offset, b.firstOffset)
	if target <= b.low {
		return nil
	}

	highestSeq, removedBytes, err := b.scanTruncatedLocked(b.low, target)
	if err != nil {
		return err
	}
	if removedBytes > b.bytes {
		return b.corrupt("truncating [%d, %d) removes %d bytes, but the partition holds %d", b.low, target, removedBytes, b.bytes)
	}
	pointsEnd, err := b.firstRetainedPointLocked(target)
	if err != nil {
		return err
	}

	if err := b.deleteRange(appendRecordKey(nil, p.id, b.low), appendRecordKey(nil, p.id, target), "records"); err != nil {
		return err
	}
	// Sorted, so that every replica builds the same batch.
	tenants := make([]string, 0, len(highestSeq))
	for tenant := range highestSeq {
		tenants = append(tenants, tenant)
	}
	slices.Sort(tenants)
	for _, tenant := range tenants {
		lower := appendTenantIndexKey(nil, p.id, tenant, 0)
		var upper []byte
		if seq := highestSeq[tenant]; seq < math.MaxUint64 {
			upper = appendTenantIndexKey(nil, p.id, tenant, seq+1)
		} else {
			upper = prefixSuccessor(lower[:len(lower)-8])
		}
		if err := b.deleteRange(lower, upper, "tenant index"); err != nil {
			return err
		}
	}
	lower, _ := kindBounds(p.id, kindTimeIndex)
	if err := b.deleteRange(lower, pointsEnd, "time index"); err != nil {
		return err
	}

	b.low = target
	b.bytes -= removedBytes
	b.timeIndex.invalidate()
	return nil
}

// scanTruncatedLocked reads the records [from, to) through the batch,
// checking each and their density, and returns each tenant's highest
// sequence among them and the sum of their value sizes. db.lifecycle must
// be read-held.
func (b *Batch) scanTruncatedLocked(from, to uint64) (highestSeq map[string]uint64, valueBytes uint64, err error) {
	p := b.partition
	iter, err := b.newIterLocked(appendRecordKey(nil, p.id, from), appendRecordKey(nil, p.id, to))
	if err != nil {
		return nil, 0, err
	}
	defer iter.Close()
	highestSeq = make(map[string]uint64)
	expected := from
	for valid := iter.First(); valid; valid = iter.Next() {
		if !p.isRecordKey(iter.Key(), expected) {
			return nil, 0, &CorruptionError{Partition: p.id, Offset: expected, Reason: fmt.Sprintf("truncation found key %x where record %d belongs", iter.Key(), expected)}
		}
		value, err := iter.ValueAndErr()
		if err != nil {
			return nil, 0, fmt.Errorf("log: partition %d: read record %d: %w", p.id, expected, err)
		}
		view, err := parseRecordValue(p.id, expected, value)
		if err != nil {
			return nil, 0, err
		}
		// Sequences grow with offsets: the last one seen is the highest.
		highestSeq[string(view.tenant)] = view.sequence
		valueBytes += uint64(len(value))
		expected++
	}
	if err := iter.Error(); err != nil {
		return nil, 0, fmt.Errorf("log: partition %d: read records to truncate: %w", p.id, err)
	}
	if expected != to {
		return nil, 0, &CorruptionError{Partition: p.id, Offset: expected, Reason: fmt.Sprintf("record %d missing below the high watermark %d", expected, to)}
	}
	return highestSeq, valueBytes, nil
}

// firstRetainedPointLocked returns the key of the first time index point
// at or above offset, or the end of the time index kind if there is none:
// every point before it is truncated. Points sort by (timestamp, offset)
// and stored timestamps never decrease with offsets, so the truncated
// points are a prefix. db.lifecycle must be read-held.
func (b *Batch) firstRetainedPointLocked(offset uint64) ([]byte, error) {
	p := b.partition
	lower, upper := kindBounds(p.id, kindTimeIndex)
	iter, err := b.newIterLocked(lower, upper)
	if err != nil {
		return nil, err
	}
	defer iter.Close()
	for valid := iter.First(); valid; valid = iter.Next() {
		_, pointOffset, ok := parseTimeIndexKey(p.id, iter.Key())
		if !ok {
			return nil, b.corrupt("malformed time index key %x", iter.Key())
		}
		if pointOffset >= offset {
			return append([]byte(nil), iter.Key()...), nil
		}
	}
	if err := iter.Error(); err != nil {
		return nil, fmt.Errorf("log: partition %d: read time index: %w", p.id, err)
	}
	return upper, nil
}
