package log

import (
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// timeIndexIntervalNanos is the least time between two time index points:
// a batch's first record whose timestamp is at least this far past the
// last point gets one. It is persisted behaviour (every replica must index
// the same records), so changing it changes replicated state.
const timeIndexIntervalNanos = int64(100 * time.Millisecond)

// timeIndexCursor is what a Batch knows of the time index: at most one
// point per batch, and the last point's timestamp, read once per batch
// (and again after a truncation, which may delete points).
type timeIndexCursor struct {
	written bool
	loaded  bool
	// last is the timestamp of the newest point; valid when found.
	last  int64
	found bool
}

// dueLocked reports whether the record about to be appended at offset with
// the stored timestamp gets a time index point: the batch has none yet,
// and the record is offset 0, or there is no point, or it is at least
// timeIndexIntervalNanos past the newest point. db.lifecycle must be
// read-held.
func (c *timeIndexCursor) dueLocked(b *Batch, offset uint64, timestamp int64) (bool, error) {
	if c.written {
		return false, nil
	}
	if offset == 0 {
		return true, nil
	}
	if !c.loaded {
		if err := c.loadLocked(b); err != nil {
			return false, err
		}
	}
	// Stored timestamps never decrease, so timestamp >= c.last and the
	// unsigned difference cannot wrap.
	return !c.found || uint64(timestamp)-uint64(c.last) >= uint64(timeIndexIntervalNanos), nil
}

// loadLocked reads the newest point through the batch.
func (c *timeIndexCursor) loadLocked(b *Batch) error {
	lower, upper := kindBounds(b.partition.id, kindTimeIndex)
	iter, err := b.newIterLocked(lower, upper)
	if err != nil {
		return err
	}
	defer iter.Close()
	c.found = iter.Last()
	if c.found {
		var ok bool
		if c.last, _, ok = parseTimeIndexKey(b.partition.id, iter.Key()); !ok {
			return b.corrupt("malformed time index key %x", iter.Key())
		}
	}
	if err := iter.Error(); err != nil {
		return fmt.Errorf("log: partition %d: read time index: %w", b.partition.id, err)
	}
	c.loaded = true
	return nil
}

// wrote records that the batch wrote a point at timestamp.
func (c *timeIndexCursor) wrote(timestamp int64) {
	c.written, c.loaded, c.found, c.last = true, true, true, timestamp
}

// invalidate makes the next dueLocked read the newest point again.
func (c *timeIndexCursor) invalidate() { c.loaded = false }

// OffsetForTime returns the first retained offset whose stored timestamp
// is at or above tsUnixNano: the low watermark if tsUnixNano is at or
// before every retained record, the high watermark if every record is
// older. It brackets the answer between two time index points, then
// binary-searches the records between them (stored timestamps never
// decrease with the offset), so its work is logarithmic whatever the
// distance between points. For records stored before version 2, whose
// timestamps were not forced monotonic, the answer is one offset where the
// timestamps cross tsUnixNano. Safe for concurrent use.
func (p *Partition) OffsetForTime(tsUnixNano int64) (uint64, error) {
	if err := p.db.acquire(); err != nil {
		return 0, err
	}
	defer p.db.release()
	view := p.openReadViewLocked()
	defer view.close()
	return p.offsetForTimeLocked(view, tsUnixNano)
}

// readView is a consistent image for reads: a Pebble snapshot with the
// high watermark loaded before it (every record below high is in it) and
// the low watermark after it (a truncation publishes low before deleting,
// so no record at or above low is missing from it).
type readView struct {
	snapshot  *pebble.Snapshot
	epoch     uint64
	low, high uint64
}

// openReadViewLocked opens a readView; db.lifecycle must be read-held.
func (p *Partition) openReadViewLocked() readView {
	v := readView{epoch: p.epoch.Load(), high: p.high.Load()}
	v.snapshot = p.db.pebble.NewSnapshot()
	v.low = min(p.low.Load(), v.high)
	return v
}

func (v readView) close() {
	// A snapshot's Close only releases its sequence number; nothing the
	// caller relies on depends on it.
	_ = v.snapshot.Close()
}

// offsetForTimeLocked is OffsetForTime on view.
func (p *Partition) offsetForTimeLocked(view readView, tsUnixNano int64) (uint64, error) {
	lo, hi := view.low, view.high
	if lo >= hi {
		return hi, nil
	}
	lower, upper := kindBounds(p.id, kindTimeIndex)
	iter, err := view.snapshot.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return 0, fmt.Errorf("log: partition %d: offset for time: %w", p.id, err)
	}
	defer iter.Close()
	seek := appendTimeIndexKey(nil, p.id, tsUnixNano, 0)
	// The newest point older than tsUnixNano: the answer is after it.
	if iter.SeekLT(seek) {
		_, offset, ok := parseTimeIndexKey(p.id, iter.Key())
		if !ok {
			return 0, &CorruptionError{Partition: p.id, Offset: lo, Reason: fmt.Sprintf("malformed time index key %x", iter.Key())}
		}
		if offset >= lo {
			lo = min(offset+1, hi)
		}
	}
	// The oldest point at or after tsUnixNano: the answer is at or before it.
	if iter.SeekGE(seek) {
		_, offset, ok := parseTimeIndexKey(p.id, iter.Key())
		if !ok {
			return 0, &CorruptionError{Partition: p.id, Offset: lo, Reason: fmt.Sprintf("malformed time index key %x", iter.Key())}
		}
		if offset >= lo && offset < hi {
			hi = offset
		}
	}
	if err := iter.Error(); err != nil {
		return 0, fmt.Errorf("log: partition %d: read time index: %w", p.id, err)
	}
	// Invariant: the answer is in [lo, hi]; every record below lo is older.
	timestamps := recordTimestamps{p: p, view: view}
	defer timestamps.close()
	for lo < hi {
		mid := lo + (hi-lo)/2
		timestamp, err := timestamps.at(mid)
		if err != nil {
			return 0, err
		}
		if timestamp >= tsUnixNano {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo, nil
}

// recordTimestamps reads stored timestamps by offset in a readView,
// keeping the last chunk decoded (a binary search ends inside one chunk).
type recordTimestamps struct {
	p      *Partition
	view   readView
	chunks *chunkFinder
}

// at reads and checks the record (or its chunk) at offset and returns its
// stored timestamp.
func (r *recordTimestamps) at(offset uint64) (int64, error) {
	p, view := r.p, r.view
	if offset < p.legacyHigh.Load() {
		return p.legacyTimestampLocked(view, offset)
	}
	if r.chunks == nil {
		var err error
		if r.chunks, err = newChunkFinder(p.id, dbIters(view.snapshot), view.high); err != nil {
			return 0, err
		}
	}
	views, err := r.chunks.containing(offset)
	if errors.Is(err, errChunkNotFound) {
		return 0, p.missing(view.epoch, offset, offset, "no chunk holds a record between the watermarks")
	}
	if err != nil {
		return 0, err
	}
	return views[offset-views[0].offset].timestampUnixNano, nil
}

func (r *recordTimestamps) close() {
	if r.chunks != nil {
		r.chunks.close()
	}
}

// legacyTimestampLocked reads and checks the record stored under its own
// key at offset in view and returns its stored timestamp.
func (p *Partition) legacyTimestampLocked(view readView, offset uint64) (int64, error) {
	value, closer, err := view.snapshot.Get(appendRecordKey(nil, p.id, offset))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, p.missing(view.epoch, offset, offset, "record missing between the watermarks")
	}
	if err != nil {
		return 0, fmt.Errorf("log: partition %d: read record %d: %w", p.id, offset, err)
	}
	defer closer.Close()
	record, err := parseRecordValue(p.id, offset, value)
	if err != nil {
		return 0, err
	}
	return record.timestampUnixNano, nil
}
