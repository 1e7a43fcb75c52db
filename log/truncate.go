package log

import (
	"fmt"
	"math"
	"slices"
)

// TruncateBefore removes every record with an offset below offset and
// moves the low watermark there. offset is clamped to the high watermark
// as committed (records appended earlier in this batch are never truncated
// by it); at or below the low watermark it is a no-op. It is a replicated,
// deterministic operation: the leader picks offset (see
// Partition.RetentionPoint) and every replica applies it.
//
// Chunks wholly below offset go with one Pebble range delete, their sparse
// tenant index entries with one range delete per tenant (a tenant's
// sequences follow its offsets), and the time index points below offset
// with one more. A chunk that straddles offset stays until a later
// truncation puts it wholly below the low watermark; readers never return
// its records below the low watermark, and SizeBytes no longer counts
// them. Records stored under their own keys (written before version 3)
// and their tenant index entries are deleted exactly, as before. The
// chunks and records truncated are read (and checked) to find their
// tenants and keep SizeBytes exact: the work is linear in the records
// truncated. Dedupe state that points at truncated records stays until
// it expires: a duplicate may name a position below the low watermark.
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
	pointsEnd, err := b.firstRetainedPointLocked(target)
	if err != nil {
		return err
	}
	var removedBytes uint64
	if legacyHigh := p.legacyHigh.Load(); b.low < legacyHigh {
		removed, err := b.truncateLegacyLocked(b.low, min(target, legacyHigh))
		if err != nil {
			return err
		}
		removedBytes += removed
	}
	if from := max(b.low, p.legacyHigh.Load()); from < target {
		removed, err := b.truncateChunksLocked(from, target)
		if err != nil {
			return err
		}
		removedBytes += removed
	}
	if removedBytes > b.bytes {
		return b.corrupt("truncating [%d, %d) removes %d bytes, but the partition holds %d", b.low, target, removedBytes, b.bytes)
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

// truncateLegacyLocked deletes the records [from, to) stored under their
// own keys, with their tenant index entries, and returns the sum of their
// value sizes. db.lifecycle must be read-held.
func (b *Batch) truncateLegacyLocked(from, to uint64) (uint64, error) {
	p := b.partition
	scanner := newRecordScanner(p.id, b.newIterLocked, to, from, to)
	defer scanner.close()
	// Each tenant's highest truncated sequence; sequences grow with
	// offsets, so the last one seen is the highest.
	highestSeq := make(map[string]uint64)
	var removed uint64
	for {
		run, ok, err := scanner.run()
		if err != nil {
			return 0, err
		}
		if !ok {
			break
		}
		view := run.views[0]
		highestSeq[string(view.tenant)] = view.sequence
		removed += run.size(0)
	}
	if err := b.deleteRange(appendRecordKey(nil, p.id, from), appendRecordKey(nil, p.id, to), "records"); err != nil {
		return 0, err
	}
	if err := b.deleteTenantKeysThrough(highestSeq, appendTenantIndexKey, "tenant index"); err != nil {
		return 0, err
	}
	return removed, nil
}

// truncateChunksLocked removes the records [from, to) stored in chunks:
// it deletes the chunks wholly below to, with their sparse index entries,
// and returns what the records removed accounted for in SizeBytes (those
// at or above from: below it, a straddling chunk's records no longer
// count). db.lifecycle must be read-held.
func (b *Batch) truncateChunksLocked(from, to uint64) (uint64, error) {
	p := b.partition
	scanner := newRecordScanner(p.id, b.newIterLocked, 0, from, to)
	defer scanner.close()
	// Each tenant's first sequence in the last chunk deleted: its sparse
	// entries up to that one go.
	lastFirstSeq := make(map[string]uint64)
	var removed uint64
	seenInChunk := make(map[string]struct{})
	firstBase, cut := uint64(0), uint64(0)
	deleting := false
	for {
		run, ok, err := scanner.run()
		if err != nil {
			return 0, err
		}
		if !ok {
			break
		}
		for i, v := range run.views {
			if v.offset >= from && v.offset < to {
				removed += run.size(i)
			}
		}
		if run.end() > to {
			// Straddles the new low watermark: stays.
			break
		}
		if !deleting {
			firstBase, deleting = run.views[0].offset, true
		}
		cut = run.end()
		// A tenant's entry for this chunk is the sequence of its first
		// record in it.
		clear(seenInChunk)
		for _, v := range run.views {
			if _, seen := seenInChunk[string(v.tenant)]; !seen {
				tenant := string(v.tenant)
				seenInChunk[tenant] = struct{}{}
				lastFirstSeq[tenant] = v.sequence
			}
		}
	}
	if !deleting {
		return removed, nil
	}
	if err := b.deleteRange(appendChunkKey(nil, p.id, firstBase), appendChunkKey(nil, p.id, cut), "chunks"); err != nil {
		return 0, err
	}
	if err := b.deleteTenantKeysThrough(lastFirstSeq, appendTenantChunkKey, "sparse tenant index"); err != nil {
		return 0, err
	}
	return removed, nil
}

// deleteTenantKeysThrough range-deletes, for each tenant of through (in
// tenant order, so the batch is deterministic), the keys key(tenant, s)
// with s from 0 to through[tenant] included: the tenant index
// (appendTenantIndexKey) or the sparse chunk index (appendTenantChunkKey),
// whose keys end in the 8-byte sequence.
func (b *Batch) deleteTenantKeysThrough(through map[string]uint64, key func(dst []byte, partition uint64, tenant string, seq uint64) []byte, what string) error {
	p := b.partition
	for _, tenant := range sortedKeys(through) {
		lower := key(nil, p.id, tenant, 0)
		var upper []byte
		if seq := through[tenant]; seq < math.MaxUint64 {
			upper = key(nil, p.id, tenant, seq+1)
		} else {
			upper = prefixSuccessor(lower[:len(lower)-8])
		}
		if err := b.deleteRange(lower, upper, what); err != nil {
			return err
		}
	}
	return nil
}

// sortedKeys returns m's keys in order, so that every replica builds the
// same batch.
func sortedKeys(m map[string]uint64) []string {
	keys := make([]string, 0, len(m))
	for key := range m {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	return keys
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
