package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// Partition is one partition's log inside a [DB].
//
// Single writer: one goroutine (the Raft FSM) calls NewBatch, Batch methods,
// Snapshot, Restore and Drop. Every other method is safe for concurrent use,
// including concurrently with the writer. A violated single-writer contract
// is detected where cheap (ErrBatchConflict) but is not supported.
type Partition struct {
	id     uint64
	db     *DB
	logger *slog.Logger

	// Published state. The writer stores after its Pebble write committed,
	// so a reader never sees an offset that is not in Pebble.
	// The writer stores low BEFORE its Pebble write (a truncation), so a
	// reader that finds a record missing can tell a truncation (the record
	// is below low) from corruption.
	applied atomic.Uint64
	high    atomic.Uint64
	low     atomic.Uint64
	// lastTimestamp is the stored timestamp of the newest record ever
	// appended (noTimestamp if none); writer-side state, published for
	// tests and diagnostics.
	lastTimestamp atomic.Int64
	// bytes is the stored size of the retained records (meta "bytes"; see
	// SizeBytes).
	bytes atomic.Uint64
	// legacyHigh is one past the last record stored under a per-record
	// key ('e', written before version 3), or 0 if there is none: records
	// below it are read from those keys, the others from chunks. It
	// changes only when the history is loaded or reset (open, Restore,
	// Drop); a truncation leaves it, as no offset below the low watermark
	// is read.
	legacyHigh atomic.Uint64

	// restoring is set while a Restore runs and stays set if it fails:
	// writes and snapshots then fail with ErrRestoreIncomplete.
	restoring atomic.Bool
	// generation counts writer-side state changes (commits, restores,
	// drops); a Batch built under another generation may not commit.
	generation atomic.Uint64
	// epoch counts resets of the history (restores, drops). A reader that
	// finds a record missing checks it to tell a concurrent reset (an
	// out-of-range read) from corruption.
	epoch atomic.Uint64

	// writeMu serialises the writer-side operations (Commit, Restore, Drop).
	// Under the single-writer contract it is never contended; it makes the
	// generation check and the write one step, so that a broken contract
	// fails with ErrBatchConflict instead of interleaving two writers. It is
	// held across the Pebble write on purpose.
	writeMu sync.Mutex

	tenants tenantSequences
}

// noTimestamp is the last timestamp of a partition that never had a
// record: any timestamp is at or above it.
const noTimestamp int64 = math.MinInt64

// partitionState is the persisted meta of a partition.
type partitionState struct {
	applied      uint64
	nextOffset   uint64
	lowWatermark uint64
	// lastTimestampUnixNano is meta "last_ts", or for a partition written
	// before version 2 the last record's timestamp (noTimestamp if none).
	lastTimestampUnixNano int64
	// bytes is meta "bytes", or for a partition written before version 2
	// the sum computed from its records.
	bytes uint64
	// legacyHigh is one past the last per-record key, 0 if there is none.
	legacyHigh uint64
}

// emptyState is the state of a partition with no history.
func emptyState() partitionState {
	return partitionState{lastTimestampUnixNano: noTimestamp}
}

// pebbleReader is what reads need from a *pebble.DB or a *pebble.Snapshot.
type pebbleReader interface {
	Get(key []byte) ([]byte, io.Closer, error)
	NewIter(o *pebble.IterOptions) (*pebble.Iterator, error)
}

var (
	_ pebbleReader = (*pebble.DB)(nil)
	_ pebbleReader = (*pebble.Snapshot)(nil)
)

// openPartitionLocked loads partition id, wiping it first if a restore was
// left unfinished. db.lifecycle must be read-held.
func (db *DB) openPartitionLocked(id uint64) (*Partition, error) {
	p := &Partition{id: id, db: db, logger: db.logger.With(slog.Uint64("partition", id))}
	_, restoring, err := p.getUint64(db.pebble, metaRestoring)
	if err != nil {
		return nil, err
	}
	if restoring {
		p.logger.Warn("log: partition was left half-restored; wiping it, it must be restored again")
		if err := p.deleteRangeSynced(); err != nil {
			return nil, err
		}
		return p, nil
	}
	state, err := p.loadState(db.pebble)
	if err != nil {
		return nil, err
	}
	p.publishState(state)
	return p, nil
}

// loadState reads the partition's meta from r and checks it against the
// records: the last record present (in the last chunk, or the last
// per-record key when there is no chunk) must be next_offset-1, and the
// per-record keys, which only a version before 3 wrote, must all be below
// the first chunk. Meta added in version 2 that is missing (a partition
// written by an older version) is derived from the records,
// deterministically, so every replica derives the same; the next commit
// persists it.
func (p *Partition) loadState(r pebbleReader) (partitionState, error) {
	state := emptyState()
	var err error
	if state.applied, _, err = p.getUint64(r, metaApplied); err != nil {
		return state, err
	}
	if state.nextOffset, _, err = p.getUint64(r, metaNextOffset); err != nil {
		return state, err
	}
	if state.lowWatermark, _, err = p.getUint64(r, metaLowWatermark); err != nil {
		return state, err
	}
	if state.lowWatermark > state.nextOffset {
		return state, &CorruptionError{Partition: p.id, Offset: state.nextOffset,
			Reason: fmt.Sprintf("meta low_watermark %d is above next_offset %d", state.lowWatermark, state.nextOffset)}
	}
	lastTimestamp, lastTimestampFound, err := p.getUint64(r, metaLastTimestamp)
	if err != nil {
		return state, err
	}
	if lastTimestampFound {
		state.lastTimestampUnixNano = int64(lastTimestamp)
	}
	bytes, bytesFound, err := p.getUint64(r, metaBytes)
	if err != nil {
		return state, err
	}
	state.bytes = bytes

	legacy, err := p.lastLegacyRecord(r)
	if err != nil {
		return state, err
	}
	if legacy.found {
		state.legacyHigh = legacy.view.offset + 1
	}
	last := legacy
	chunks, err := p.chunkEnds(r)
	if err != nil {
		return state, err
	}
	if chunks.found {
		if legacy.found && state.legacyHigh > chunks.firstBase {
			return state, &CorruptionError{Partition: p.id, Offset: chunks.firstBase,
				Reason: fmt.Sprintf("per-record key of offset %d is not below the first chunk, at %d", state.legacyHigh-1, chunks.firstBase)}
		}
		last = chunks.last
	}
	if !last.found {
		if state.nextOffset > state.lowWatermark {
			return state, &CorruptionError{Partition: p.id, Offset: state.nextOffset - 1,
				Reason: fmt.Sprintf("no records, but next_offset is %d and low_watermark %d", state.nextOffset, state.lowWatermark)}
		}
		return state, nil
	}
	if offset := last.view.offset; state.nextOffset == state.lowWatermark || offset != state.nextOffset-1 {
		return state, &CorruptionError{Partition: p.id, Offset: offset,
			Reason: fmt.Sprintf("last record is offset %d, but next_offset is %d and low_watermark %d", offset, state.nextOffset, state.lowWatermark)}
	}
	if !lastTimestampFound {
		state.lastTimestampUnixNano = last.view.timestampUnixNano
	}
	if !bytesFound {
		if state.bytes, err = p.sumStoredBytes(r); err != nil {
			return state, err
		}
	}
	return state, nil
}

// storedRecord is the last record of a kind found by loadState.
type storedRecord struct {
	view  recordView
	found bool
}

// lastLegacyRecord reads and checks the record of the last per-record key.
func (p *Partition) lastLegacyRecord(r pebbleReader) (storedRecord, error) {
	lower, upper := kindBounds(p.id, kindRecord)
	iter, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return storedRecord{}, fmt.Errorf("log: partition %d: %w", p.id, err)
	}
	defer iter.Close()
	if !iter.Last() {
		if err := iter.Error(); err != nil {
			return storedRecord{}, fmt.Errorf("log: partition %d: find last record: %w", p.id, err)
		}
		return storedRecord{}, nil
	}
	offset, ok := parseRecordKey(p.id, iter.Key())
	if !ok {
		return storedRecord{}, &CorruptionError{Partition: p.id, Offset: p.high.Load(), Reason: fmt.Sprintf("malformed record key %x", iter.Key())}
	}
	value, err := iter.ValueAndErr()
	if err != nil {
		return storedRecord{}, fmt.Errorf("log: partition %d: read record %d: %w", p.id, offset, err)
	}
	view, err := parseRecordValue(p.id, offset, value)
	if err != nil {
		return storedRecord{}, err
	}
	// The view aliases the iterator's value; loadState keeps only numbers.
	view.tenant, view.body = nil, nil
	return storedRecord{view: view, found: true}, nil
}

// chunkSpan is what loadState needs of the chunks: the first one's base
// and the last record of the last one.
type chunkSpan struct {
	firstBase uint64
	last      storedRecord
	found     bool
}

// chunkEnds reads the first chunk's key and checks the last chunk.
func (p *Partition) chunkEnds(r pebbleReader) (chunkSpan, error) {
	lower, upper := kindBounds(p.id, kindChunk)
	iter, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return chunkSpan{}, fmt.Errorf("log: partition %d: %w", p.id, err)
	}
	defer iter.Close()
	if !iter.First() {
		if err := iter.Error(); err != nil {
			return chunkSpan{}, fmt.Errorf("log: partition %d: find first chunk: %w", p.id, err)
		}
		return chunkSpan{}, nil
	}
	firstBase, ok := parseChunkKey(p.id, iter.Key())
	if !ok {
		return chunkSpan{}, &CorruptionError{Partition: p.id, Offset: p.high.Load(), Reason: fmt.Sprintf("malformed chunk key %x", iter.Key())}
	}
	if !iter.Last() {
		return chunkSpan{}, fmt.Errorf("log: partition %d: find last chunk: %w", p.id, iter.Error())
	}
	base, ok := parseChunkKey(p.id, iter.Key())
	if !ok {
		return chunkSpan{}, &CorruptionError{Partition: p.id, Offset: p.high.Load(), Reason: fmt.Sprintf("malformed chunk key %x", iter.Key())}
	}
	value, err := iter.ValueAndErr()
	if err != nil {
		return chunkSpan{}, fmt.Errorf("log: partition %d: read chunk %d: %w", p.id, base, err)
	}
	_, views, err := decodeChunk(p.id, base, value, nil)
	if err != nil {
		return chunkSpan{}, err
	}
	last := views[len(views)-1]
	last.tenant, last.body = nil, nil
	return chunkSpan{firstBase: firstBase, last: storedRecord{view: last, found: true}, found: true}, nil
}

// sumStoredBytes returns the sum of the value sizes of every record and
// chunk of the partition. It reads the whole log: it is only used once for
// a partition written before version 2 (which has no chunks).
func (p *Partition) sumStoredBytes(r pebbleReader) (uint64, error) {
	var sum uint64
	for _, kind := range []byte{kindChunk, kindRecord} {
		lower, upper := kindBounds(p.id, kind)
		iter, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
		if err != nil {
			return 0, fmt.Errorf("log: partition %d: %w", p.id, err)
		}
		for valid := iter.First(); valid; valid = iter.Next() {
			value := iter.LazyValue()
			sum += uint64(value.Len())
		}
		err = iter.Error()
		if closeErr := iter.Close(); err == nil {
			err = closeErr
		}
		if err != nil {
			return 0, fmt.Errorf("log: partition %d: sum record bytes: %w", p.id, err)
		}
	}
	return sum, nil
}

// getUint64 reads the 8-byte meta value name; a missing value is 0, found false.
func (p *Partition) getUint64(r pebbleReader, name string) (v uint64, found bool, err error) {
	key := appendMetaKey(nil, p.id, name)
	value, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("log: partition %d: read meta %q: %w", p.id, name, err)
	}
	defer closer.Close()
	if name == metaRestoring {
		return 0, true, nil
	}
	if len(value) != 8 {
		return 0, false, &CorruptionError{Partition: p.id, Offset: p.high.Load(),
			Reason: fmt.Sprintf("meta %q is %d bytes, want 8", name, len(value))}
	}
	return binary.BigEndian.Uint64(value), true, nil
}

// publishState makes state the partition's visible state.
func (p *Partition) publishState(state partitionState) {
	p.low.Store(state.lowWatermark)
	p.high.Store(state.nextOffset)
	p.applied.Store(state.applied)
	p.lastTimestamp.Store(state.lastTimestampUnixNano)
	p.bytes.Store(state.bytes)
	p.legacyHigh.Store(state.legacyHigh)
}

// resetLocked forgets the partition's history in memory, before the writer
// deletes it from Pebble. p.writeMu must be held.
func (p *Partition) resetLocked() {
	p.epoch.Add(1)
	p.generation.Add(1)
	p.publishState(emptyState())
	p.tenants.reset()
}

// deleteRangeSynced deletes every key of the partition and makes the
// deletion durable (a WAL sync, or a flush without the WAL): a Drop that
// came back after a crash would resurrect a log its Raft state no longer
// backs. db.lifecycle must be read-held.
func (p *Partition) deleteRangeSynced() error {
	lower, upper := partitionBounds(p.id)
	if err := p.db.pebble.DeleteRange(lower, upper, p.db.durableWriteOptions()); err != nil {
		return fmt.Errorf("log: partition %d: delete range: %w", p.id, err)
	}
	if err := p.db.makeDurableLocked(); err != nil {
		return fmt.Errorf("log: partition %d: delete range: %w", p.id, err)
	}
	return nil
}

// ID returns the partition id.
func (p *Partition) ID() uint64 { return p.id }

// AppliedIndex returns the Raft index of the last committed batch (0 for a
// new partition). Safe for concurrent use.
func (p *Partition) AppliedIndex() uint64 { return p.applied.Load() }

// HighWatermark returns the next offset to assign; every offset below it is
// committed and readable. Safe for concurrent use.
func (p *Partition) HighWatermark() uint64 { return p.high.Load() }

// LowWatermark returns the first retained offset. Safe for concurrent use.
func (p *Partition) LowWatermark() uint64 { return p.low.Load() }

// SizeBytes returns the stored size of the retained records (meta
// "bytes"), as committed: for a record in a chunk its encoded size in the
// chunk, the chunk's header counted with its first record; for a record
// stored under its own key (written before version 3) its value size.
// A chunk that straddles the low watermark stays stored until it is wholly
// below it, but only its records at or above the low watermark are
// counted, so SizeBytes shrinks with the low watermark exactly as a
// reader's view does. Safe for concurrent use.
func (p *Partition) SizeBytes() uint64 { return p.bytes.Load() }

// NextSequence returns the next sequence to assign to tenant (1 for a tenant
// with no records), as committed. Safe for concurrent use.
func (p *Partition) NextSequence(tenant string) (uint64, error) {
	if err := checkTenant(tenant); err != nil {
		return 0, err
	}
	if err := p.db.acquire(); err != nil {
		return 0, err
	}
	defer p.db.release()
	return p.nextSequenceLocked(tenant)
}

// nextSequenceLocked is NextSequence through the cache; db.lifecycle must be
// read-held.
func (p *Partition) nextSequenceLocked(tenant string) (uint64, error) {
	next, generation, ok := p.tenants.lookup(tenant)
	if ok {
		return next, nil
	}
	key := appendTenantNextKey(nil, p.id, tenant)
	value, closer, err := p.db.pebble.Get(key)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		next = 1
	case err != nil:
		return 0, fmt.Errorf("log: partition %d: read next sequence of tenant %q: %w", p.id, tenant, err)
	default:
		ok := len(value) == 8
		if ok {
			next = binary.BigEndian.Uint64(value)
		}
		closer.Close()
		if !ok || next == 0 {
			return 0, &CorruptionError{Partition: p.id, Offset: p.high.Load(),
				Reason: fmt.Sprintf("next sequence of tenant %q is malformed", tenant)}
		}
	}
	p.tenants.fill(tenant, next, generation)
	return next, nil
}

// Drop deletes every key of the partition (topic deletion) and syncs. The
// Partition stays usable and is empty afterwards (applied index 0). Writer
// only.
func (p *Partition) Drop() error {
	if err := p.db.acquire(); err != nil {
		return err
	}
	defer p.db.release()
	p.writeMu.Lock()
	defer p.writeMu.Unlock()

	p.resetLocked()
	if err := p.deleteRangeSynced(); err != nil {
		// What is left in Pebble is unknown: refuse writes until a Drop
		// or Restore succeeds.
		p.restoring.Store(true)
		return err
	}
	p.restoring.Store(false)
	return nil
}
