package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"
)

// readLimits checks the limits shared by Read and ReadTenant.
func readLimits(maxRecords, maxBytes int) error {
	if maxRecords <= 0 || maxBytes <= 0 {
		return fmt.Errorf("%w: maxRecords %d and maxBytes %d must be positive", ErrInvalidArgument, maxRecords, maxBytes)
	}
	return nil
}

// gather accumulates read records under the limits: it stops at maxRecords
// records, and before a record whose body would take the bodies past
// maxBytes, except that the first record is always taken.
type gather struct {
	records    []Record
	bodyBytes  int
	maxRecords int
	maxBytes   int
}

// fits reports whether a record with a body of n bytes may be added.
func (g *gather) fits(n int) bool {
	return len(g.records) == 0 || (len(g.records) < g.maxRecords && g.bodyBytes+n <= g.maxBytes)
}

// add takes a copy of v and reports whether another record may follow.
func (g *gather) add(v recordView) bool {
	g.records = append(g.records, v.record())
	g.bodyBytes += len(v.body)
	return len(g.records) < g.maxRecords && g.bodyBytes < g.maxBytes
}

// Read returns the records with offset >= from in offset order. It stops
// after maxRecords records, or before the record that would take the total
// body size past maxBytes; it always returns at least one record when one
// exists. from == HighWatermark() returns no records and nil; from below
// the low watermark or above the high watermark is an
// *OffsetOutOfRangeError. Every record is checked (checksum, version,
// offset, density); a failure is a *CorruptionError. Safe for concurrent
// use.
func (p *Partition) Read(from uint64, maxRecords, maxBytes int) ([]Record, error) {
	if err := readLimits(maxRecords, maxBytes); err != nil {
		return nil, err
	}
	if err := p.db.acquire(); err != nil {
		return nil, err
	}
	defer p.db.release()

	epoch := p.epoch.Load()
	low, high := p.low.Load(), p.high.Load()
	if from < low || from > high {
		return nil, &OffsetOutOfRangeError{Partition: p.id, Requested: from, Low: low, High: high}
	}
	if from == high {
		return nil, nil
	}
	iter, err := p.db.pebble.NewIter(&pebble.IterOptions{
		LowerBound: appendRecordKey(nil, p.id, from),
		UpperBound: appendRecordKey(nil, p.id, high),
	})
	if err != nil {
		return nil, fmt.Errorf("log: partition %d: read: %w", p.id, err)
	}
	defer iter.Close()

	g := gather{maxRecords: maxRecords, maxBytes: maxBytes}
	expected := from
	for valid := iter.First(); valid; valid = iter.Next() {
		offset, ok := parseRecordKey(p.id, iter.Key())
		if !ok || offset != expected {
			return nil, p.missing(epoch, from, expected, fmt.Sprintf("found key %x where record %d belongs", iter.Key(), expected))
		}
		value, err := iter.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("log: partition %d: read record %d: %w", p.id, offset, err)
		}
		view, err := parseRecordValue(p.id, offset, value)
		if err != nil {
			return nil, err
		}
		if !g.fits(len(view.body)) {
			break
		}
		expected++
		if !g.add(view) {
			break
		}
	}
	if err := iter.Error(); err != nil {
		return nil, fmt.Errorf("log: partition %d: read: %w", p.id, err)
	}
	if len(g.records) == 0 {
		// The range [from, high) is not empty, so a record is missing.
		return nil, p.missing(epoch, from, expected, "record missing below the high watermark")
	}
	return g.records, nil
}

// missing reports a record absent where the published state says it must
// be: an *OffsetOutOfRangeError if the history was reset (Restore, Drop)
// since the read began or the record was truncated (the low watermark is
// published before the records are deleted), else a *CorruptionError at
// offset.
func (p *Partition) missing(epoch, from, offset uint64, reason string) error {
	if p.epoch.Load() != epoch || p.low.Load() > offset {
		return &OffsetOutOfRangeError{Partition: p.id, Requested: from, Low: p.low.Load(), High: p.high.Load()}
	}
	return &CorruptionError{Partition: p.id, Offset: offset, Reason: reason}
}

// isRecordKey reports whether key is the record key of offset in p.
func (p *Partition) isRecordKey(key []byte, offset uint64) bool {
	got, ok := parseRecordKey(p.id, key)
	return ok && got == offset
}

// ReadTenant returns tenant's records with sequence >= fromSeq in sequence
// order, through the tenant index, with Read's limits. fromSeq 0 reads from
// the first sequence (1); fromSeq at or above the tenant's next sequence
// returns no records and nil. Index entries and records are checked against
// each other; a mismatch is a *CorruptionError. Safe for concurrent use.
func (p *Partition) ReadTenant(tenant string, fromSeq uint64, maxRecords, maxBytes int) ([]Record, error) {
	if err := checkTenant(tenant); err != nil {
		return nil, err
	}
	if err := readLimits(maxRecords, maxBytes); err != nil {
		return nil, err
	}
	if fromSeq == 0 {
		fromSeq = 1
	}
	if err := p.db.acquire(); err != nil {
		return nil, err
	}
	defer p.db.release()

	view := p.openReadViewLocked()
	defer view.close()
	epoch, low, high := view.epoch, view.low, view.high
	if fromSeq == math.MaxUint64 || low == high {
		return nil, nil
	}
	// Index and records are read at one point in time.
	snap := view.snapshot
	index, err := snap.NewIter(&pebble.IterOptions{
		LowerBound: appendTenantIndexKey(nil, p.id, tenant, fromSeq),
		UpperBound: appendTenantIndexKey(nil, p.id, tenant, math.MaxUint64),
	})
	if err != nil {
		return nil, fmt.Errorf("log: partition %d: read tenant: %w", p.id, err)
	}
	defer index.Close()
	records, err := snap.NewIter(&pebble.IterOptions{
		LowerBound: appendRecordKey(nil, p.id, low),
		UpperBound: appendRecordKey(nil, p.id, high),
	})
	if err != nil {
		return nil, fmt.Errorf("log: partition %d: read tenant: %w", p.id, err)
	}
	defer records.Close()

	g := gather{maxRecords: maxRecords, maxBytes: maxBytes}
	expectedSeq := fromSeq
	// A truncation deletes the index entries of the records it removes, so
	// once anything was truncated the first entry found may be above
	// fromSeq: the tenant's first retained sequence.
	gapAllowed := low > 0
	for valid := index.First(); valid; valid = index.Next() {
		_, sequence, ok := parseTenantIndexKey(p.id, index.Key())
		indexValue, err := index.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("log: partition %d: read tenant index: %w", p.id, err)
		}
		if !ok || len(indexValue) != 8 {
			return nil, &CorruptionError{Partition: p.id, Offset: low, Reason: fmt.Sprintf("malformed tenant index entry %x", index.Key())}
		}
		offset := binary.BigEndian.Uint64(indexValue)
		if offset >= high {
			// Committed after this read began: not yet published.
			break
		}
		if offset < low {
			// Below the low watermark: no longer retained.
			expectedSeq = sequence + 1
			continue
		}
		if gapAllowed && sequence > expectedSeq {
			expectedSeq = sequence
		}
		gapAllowed = false
		if sequence != expectedSeq {
			return nil, &CorruptionError{Partition: p.id, Offset: offset,
				Reason: fmt.Sprintf("tenant %q index jumps from sequence %d to %d", tenant, expectedSeq-1, sequence)}
		}
		if !records.SeekGE(appendRecordKey(nil, p.id, offset)) || !p.isRecordKey(records.Key(), offset) {
			if err := records.Error(); err != nil {
				return nil, fmt.Errorf("log: partition %d: read record %d: %w", p.id, offset, err)
			}
			return nil, p.missing(epoch, low, offset, fmt.Sprintf("tenant %q sequence %d points at a missing record", tenant, sequence))
		}
		value, err := records.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("log: partition %d: read record %d: %w", p.id, offset, err)
		}
		view, err := parseRecordValue(p.id, offset, value)
		if err != nil {
			return nil, err
		}
		if string(view.tenant) != tenant || view.sequence != sequence {
			return nil, &CorruptionError{Partition: p.id, Offset: offset,
				Reason: fmt.Sprintf("tenant index (%q, %d) points at a record of (%q, %d)", tenant, sequence, view.tenant, view.sequence)}
		}
		if !g.fits(len(view.body)) {
			break
		}
		expectedSeq = sequence + 1
		if !g.add(view) {
			break
		}
	}
	if err := index.Error(); err != nil {
		return nil, fmt.Errorf("log: partition %d: read tenant index: %w", p.id, err)
	}
	return g.records, nil
}

// OffsetOfSequence returns the offset of tenant's record with sequence seq;
// ok is false when there is no such committed record. Safe for concurrent
// use.
func (p *Partition) OffsetOfSequence(tenant string, seq uint64) (offset uint64, ok bool, err error) {
	if err := checkTenant(tenant); err != nil {
		return 0, false, err
	}
	if err := p.db.acquire(); err != nil {
		return 0, false, err
	}
	defer p.db.release()

	high := p.high.Load()
	value, closer, err := p.db.pebble.Get(appendTenantIndexKey(nil, p.id, tenant, seq))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("log: partition %d: read tenant index: %w", p.id, err)
	}
	defer closer.Close()
	if len(value) != 8 {
		return 0, false, &CorruptionError{Partition: p.id, Offset: high,
			Reason: fmt.Sprintf("tenant %q index entry for sequence %d is %d bytes, want 8", tenant, seq, len(value))}
	}
	offset = binary.BigEndian.Uint64(value)
	if offset >= high {
		// Committed after this call began: not yet published.
		return 0, false, nil
	}
	return offset, true, nil
}
