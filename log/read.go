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
	// tenants interns the tenant strings of the records returned.
	tenants map[string]string
}

// newGather returns a gather for at most available records.
func newGather(maxRecords, maxBytes int, available uint64) gather {
	// Sized for the likely result, within reason: maxRecords may be huge.
	capacity := min(uint64(maxRecords), available, 4096)
	return gather{records: make([]Record, 0, capacity), maxRecords: maxRecords, maxBytes: maxBytes}
}

// fits reports whether a record with a body of n bytes may be added.
func (g *gather) fits(n int) bool {
	return len(g.records) == 0 || (len(g.records) < g.maxRecords && g.bodyBytes+n <= g.maxBytes)
}

// take adds copies of the records of views while they fit and reports
// whether another record may follow. The copied bodies share one
// allocation (each Record's Body is capped, so appending to one never
// touches another).
func (g *gather) take(views []recordView) (more bool) {
	n, bodyBytes, count := 0, 0, len(g.records)
	more = true
	for _, v := range views {
		if !(count == 0 || (count < g.maxRecords && g.bodyBytes+bodyBytes+len(v.body) <= g.maxBytes)) {
			more = false
			break
		}
		n++
		count++
		bodyBytes += len(v.body)
		if count >= g.maxRecords || g.bodyBytes+bodyBytes >= g.maxBytes {
			more = false
			break
		}
	}
	slab := make([]byte, 0, bodyBytes)
	for _, v := range views[:n] {
		start := len(slab)
		slab = append(slab, v.body...)
		g.records = append(g.records, Record{
			Offset:            v.offset,
			Sequence:          v.sequence,
			Tenant:            g.intern(v.tenant),
			TimestampUnixNano: v.timestampUnixNano,
			ExpireAtUnixNano:  v.expireAtUnixNano,
			Body:              slab[start:len(slab):len(slab)],
		})
	}
	g.bodyBytes += bodyBytes
	return more
}

// intern returns tenant as a string, one allocation per distinct tenant.
func (g *gather) intern(tenant []byte) string {
	if s, ok := g.tenants[string(tenant)]; ok {
		return s
	}
	if g.tenants == nil {
		g.tenants = make(map[string]string)
	}
	s := string(tenant)
	g.tenants[s] = s
	return s
}

// Read returns the records with offset >= from in offset order. It stops
// after maxRecords records, or before the record that would take the total
// body size past maxBytes; it always returns at least one record when one
// exists. from == HighWatermark() returns no records and nil; from below
// the low watermark or above the high watermark is an
// *OffsetOutOfRangeError. It reads the chunk holding from, and the
// following ones, whole: every chunk (or record stored under its own key)
// is checked (checksum, version, offsets, density); a failure is a
// *CorruptionError. Safe for concurrent use.
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
	scanner := newRecordScanner(p.id, dbIters(p.db.pebble), p.legacyHigh.Load(), from, high)
	defer scanner.close()
	scanner.missing = func(offset uint64, reason string) error { return p.missing(epoch, from, offset, reason) }

	g := newGather(maxRecords, maxBytes, high-from)
	for more := true; more; {
		run, ok, err := scanner.run()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		views := run.views
		if skip := from - min(from, views[0].offset); skip > 0 {
			views = views[skip:]
		}
		// Chunks end at a commit, so a chunk below high is wholly below.
		more = g.take(views)
	}
	if len(g.records) == 0 {
		// The range [from, high) is not empty, so a record is missing.
		return nil, p.missing(epoch, from, from, "record missing below the high watermark")
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
// order, with Read's limits. fromSeq 0 reads from the first sequence (1);
// fromSeq at or above the tenant's next sequence returns no records and
// nil. It seeks the tenant's sparse index entry at or below fromSeq and
// decodes that entry's chunk and the chunks of the following entries,
// keeping the tenant's records (records written before version 3 are
// found through their per-record index entries first). Index entries and
// records are checked against each other; a mismatch is a
// *CorruptionError. Safe for concurrent use.
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
	if fromSeq == math.MaxUint64 || view.low == view.high {
		return nil, nil
	}
	t := tenantRead{p: p, view: view, tenant: tenant, expectedSeq: fromSeq,
		// A tenant may have few of the records: start small.
		g: newGather(maxRecords, maxBytes, min(view.high-view.low, 256)),
		// A truncation deletes the index entries of the records it
		// removes, so once anything was truncated the first record found
		// may be above fromSeq: the tenant's first retained sequence.
		gapAllowed: view.low > 0,
	}
	more := true
	if legacyHigh := p.legacyHigh.Load(); legacyHigh > view.low {
		var err error
		if more, err = t.legacy(); err != nil {
			return nil, err
		}
	}
	if more {
		if err := t.chunks(); err != nil {
			return nil, err
		}
	}
	if len(t.g.records) == 0 {
		return nil, nil
	}
	return t.g.records, nil
}

// tenantRead is one ReadTenant call in progress.
type tenantRead struct {
	p           *Partition
	view        readView
	tenant      string
	expectedSeq uint64
	gapAllowed  bool
	g           gather
	// matched is reused for the tenant's records of one chunk.
	matched []recordView
}

// accept checks the sequence of the tenant's next record found at offset
// against the one expected.
func (t *tenantRead) accept(sequence, offset uint64) error {
	if t.gapAllowed && sequence > t.expectedSeq {
		t.expectedSeq = sequence
	}
	t.gapAllowed = false
	if sequence != t.expectedSeq {
		return &CorruptionError{Partition: t.p.id, Offset: offset,
			Reason: fmt.Sprintf("tenant %q index jumps from sequence %d to %d", t.tenant, t.expectedSeq-1, sequence)}
	}
	return nil
}

// legacy reads the tenant's records through the per-record tenant index
// (records written before version 3) and reports whether more may follow.
func (t *tenantRead) legacy() (more bool, err error) {
	p, snap := t.p, t.view.snapshot
	index, err := snap.NewIter(&pebble.IterOptions{
		LowerBound: appendTenantIndexKey(nil, p.id, t.tenant, t.expectedSeq),
		UpperBound: appendTenantIndexKey(nil, p.id, t.tenant, math.MaxUint64),
	})
	if err != nil {
		return false, fmt.Errorf("log: partition %d: read tenant: %w", p.id, err)
	}
	defer index.Close()
	records, err := snap.NewIter(&pebble.IterOptions{
		LowerBound: appendRecordKey(nil, p.id, t.view.low),
		UpperBound: appendRecordKey(nil, p.id, t.view.high),
	})
	if err != nil {
		return false, fmt.Errorf("log: partition %d: read tenant: %w", p.id, err)
	}
	defer records.Close()

	low, high := t.view.low, t.view.high
	for valid := index.First(); valid; valid = index.Next() {
		_, sequence, ok := parseTenantIndexKey(p.id, index.Key())
		indexValue, err := index.ValueAndErr()
		if err != nil {
			return false, fmt.Errorf("log: partition %d: read tenant index: %w", p.id, err)
		}
		if !ok || len(indexValue) != 8 {
			return false, &CorruptionError{Partition: p.id, Offset: low, Reason: fmt.Sprintf("malformed tenant index entry %x", index.Key())}
		}
		offset := binary.BigEndian.Uint64(indexValue)
		if offset >= high {
			// Committed after this read began: not yet published.
			return false, nil
		}
		if offset < low {
			// Below the low watermark: no longer retained.
			t.expectedSeq = sequence + 1
			continue
		}
		if err := t.accept(sequence, offset); err != nil {
			return false, err
		}
		if !records.SeekGE(appendRecordKey(nil, p.id, offset)) || !p.isRecordKey(records.Key(), offset) {
			if err := records.Error(); err != nil {
				return false, fmt.Errorf("log: partition %d: read record %d: %w", p.id, offset, err)
			}
			return false, p.missing(t.view.epoch, low, offset, fmt.Sprintf("tenant %q sequence %d points at a missing record", t.tenant, sequence))
		}
		value, err := records.ValueAndErr()
		if err != nil {
			return false, fmt.Errorf("log: partition %d: read record %d: %w", p.id, offset, err)
		}
		view, err := parseRecordValue(p.id, offset, value)
		if err != nil {
			return false, err
		}
		if string(view.tenant) != t.tenant || view.sequence != sequence {
			return false, &CorruptionError{Partition: p.id, Offset: offset,
				Reason: fmt.Sprintf("tenant index (%q, %d) points at a record of (%q, %d)", t.tenant, sequence, view.tenant, view.sequence)}
		}
		t.expectedSeq = sequence + 1
		if !t.g.take([]recordView{view}) {
			return false, nil
		}
	}
	if err := index.Error(); err != nil {
		return false, fmt.Errorf("log: partition %d: read tenant index: %w", p.id, err)
	}
	return true, nil
}

// chunks reads the tenant's records through the sparse tenant index.
func (t *tenantRead) chunks() error {
	p := t.p
	prefix := appendTenantChunkPrefix(nil, p.id, t.tenant)
	index, err := t.view.snapshot.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixSuccessor(prefix)})
	if err != nil {
		return fmt.Errorf("log: partition %d: read tenant: %w", p.id, err)
	}
	defer index.Close()
	finder, err := newChunkFinder(p.id, dbIters(t.view.snapshot), t.view.high)
	if err != nil {
		return err
	}
	defer finder.close()

	// The entry at or below the sequence expected holds it, if retained.
	valid := index.SeekLT(appendTenantChunkKey(nil, p.id, t.tenant, t.expectedSeq+1))
	if !valid {
		valid = index.First()
	}
	for ; valid; valid = index.Next() {
		_, firstSeq, ok := parseTenantChunkKey(p.id, index.Key())
		value, err := index.ValueAndErr()
		if err != nil {
			return fmt.Errorf("log: partition %d: read sparse tenant index: %w", p.id, err)
		}
		base, count, valueOK := decodeTenantChunkValue(value)
		if !ok || !valueOK {
			return &CorruptionError{Partition: p.id, Offset: t.view.low, Reason: fmt.Sprintf("malformed sparse tenant index entry %x -> %x", index.Key(), value)}
		}
		if base >= t.view.high {
			// Committed after this read began: not yet published.
			return nil
		}
		if firstSeq+count <= t.expectedSeq {
			// Wholly before the sequence asked for.
			continue
		}
		views, err := finder.at(base)
		if errors.Is(err, errChunkNotFound) {
			return p.missing(t.view.epoch, t.view.low, base, fmt.Sprintf("tenant %q sequence %d points at chunk %d, which is missing", t.tenant, firstSeq, base))
		}
		if err != nil {
			return err
		}
		t.matched = t.matched[:0]
		sequence := firstSeq
		for _, v := range views {
			if string(v.tenant) != t.tenant {
				continue
			}
			if v.sequence != sequence {
				return &CorruptionError{Partition: p.id, Offset: v.offset,
					Reason: fmt.Sprintf("chunk %d holds tenant %q sequence %d where its index entry says %d", base, t.tenant, v.sequence, sequence)}
			}
			sequence++
			if v.sequence < t.expectedSeq {
				continue
			}
			if v.offset < t.view.low {
				// Below the low watermark in a chunk that straddles it.
				t.expectedSeq = v.sequence + 1
				continue
			}
			if err := t.accept(v.sequence, v.offset); err != nil {
				return err
			}
			t.expectedSeq = v.sequence + 1
			t.matched = append(t.matched, v)
		}
		if sequence != firstSeq+count {
			return &CorruptionError{Partition: p.id, Offset: base,
				Reason: fmt.Sprintf("chunk %d holds %d records of tenant %q, its index entry says %d", base, sequence-firstSeq, t.tenant, count)}
		}
		if !t.g.take(t.matched) {
			return nil
		}
	}
	if err := index.Error(); err != nil {
		return fmt.Errorf("log: partition %d: read sparse tenant index: %w", p.id, err)
	}
	return nil
}

// OffsetOfSequence returns the offset of tenant's record with sequence seq;
// ok is false when there is no such committed, retained record. It decodes
// the chunk that the tenant's sparse index entry at or below seq names.
// Safe for concurrent use.
func (p *Partition) OffsetOfSequence(tenant string, seq uint64) (offset uint64, ok bool, err error) {
	if err := checkTenant(tenant); err != nil {
		return 0, false, err
	}
	if err := p.db.acquire(); err != nil {
		return 0, false, err
	}
	defer p.db.release()
	view := p.openReadViewLocked()
	defer view.close()
	if seq == 0 || seq == math.MaxUint64 || view.low == view.high {
		return 0, false, nil
	}

	if p.legacyHigh.Load() > view.low {
		offset, found, err := p.legacyOffsetOfSequence(view, tenant, seq)
		if err != nil || found {
			return offset, found && offset >= view.low, err
		}
	}
	prefix := appendTenantChunkPrefix(nil, p.id, tenant)
	index, err := view.snapshot.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixSuccessor(prefix)})
	if err != nil {
		return 0, false, fmt.Errorf("log: partition %d: read sparse tenant index: %w", p.id, err)
	}
	defer index.Close()
	if !index.SeekLT(appendTenantChunkKey(nil, p.id, tenant, seq+1)) {
		if err := index.Error(); err != nil {
			return 0, false, fmt.Errorf("log: partition %d: read sparse tenant index: %w", p.id, err)
		}
		return 0, false, nil
	}
	_, firstSeq, keyOK := parseTenantChunkKey(p.id, index.Key())
	value, err := index.ValueAndErr()
	if err != nil {
		return 0, false, fmt.Errorf("log: partition %d: read sparse tenant index: %w", p.id, err)
	}
	base, count, valueOK := decodeTenantChunkValue(value)
	if !keyOK || !valueOK {
		return 0, false, &CorruptionError{Partition: p.id, Offset: view.high, Reason: fmt.Sprintf("malformed sparse tenant index entry %x -> %x", index.Key(), value)}
	}
	if seq >= firstSeq+count || base >= view.high {
		// Not assigned yet, or committed after this call began.
		return 0, false, nil
	}
	finder, err := newChunkFinder(p.id, dbIters(view.snapshot), view.high)
	if err != nil {
		return 0, false, err
	}
	defer finder.close()
	views, err := finder.at(base)
	if errors.Is(err, errChunkNotFound) {
		return 0, false, &CorruptionError{Partition: p.id, Offset: base, Reason: fmt.Sprintf("tenant %q sequence %d points at chunk %d, which is missing", tenant, firstSeq, base)}
	}
	if err != nil {
		return 0, false, err
	}
	for _, v := range views {
		if v.sequence == seq && string(v.tenant) == tenant {
			return v.offset, v.offset >= view.low, nil
		}
	}
	return 0, false, &CorruptionError{Partition: p.id, Offset: base,
		Reason: fmt.Sprintf("chunk %d does not hold tenant %q sequence %d, which its index entry (first %d, count %d) promises", base, tenant, seq, firstSeq, count)}
}

// legacyOffsetOfSequence looks seq up in the per-record tenant index.
func (p *Partition) legacyOffsetOfSequence(view readView, tenant string, seq uint64) (offset uint64, found bool, err error) {
	value, closer, err := view.snapshot.Get(appendTenantIndexKey(nil, p.id, tenant, seq))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("log: partition %d: read tenant index: %w", p.id, err)
	}
	defer closer.Close()
	if len(value) != 8 {
		return 0, false, &CorruptionError{Partition: p.id, Offset: view.high,
			Reason: fmt.Sprintf("tenant %q index entry for sequence %d is %d bytes, want 8", tenant, seq, len(value))}
	}
	offset = binary.BigEndian.Uint64(value)
	if offset >= view.high {
		return 0, false, nil
	}
	return offset, true, nil
}
