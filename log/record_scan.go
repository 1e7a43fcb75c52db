package log

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// iterOpener opens an iterator over [lower, upper) of one consistent
// source: the DB, a Pebble snapshot or a Batch.
type iterOpener func(lower, upper []byte) (*pebble.Iterator, error)

// dbIters opens iterators on r.
func dbIters(r pebbleReader) iterOpener {
	return func(lower, upper []byte) (*pebble.Iterator, error) {
		return r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	}
}

// viewsPool recycles the []recordView a chunk decodes into between reads.
// It holds *[]recordView of capacity chunkRecordsMax; the views are
// cleared before they go back, so that the pool pins no value.
var viewsPool = sync.Pool{New: func() any {
	views := make([]recordView, 0, chunkRecordsMax)
	return &views
}}

// getViews takes a views buffer from the pool.
func getViews() []recordView { return (*viewsPool.Get().(*[]recordView))[:0] }

// putViews returns views to the pool.
func putViews(views []recordView) {
	if cap(views) != chunkRecordsMax {
		return
	}
	views = views[:cap(views)]
	clear(views)
	views = views[:0]
	viewsPool.Put(&views)
}

// recordRun is one step of a recordScanner: a whole chunk, or one record
// stored under its own key. Its views alias the scanner's iterator and are
// valid until the scanner's next call.
type recordRun struct {
	views []recordView
	// chunk is set for a chunk, with its header; else the run is one
	// per-record key whose value is valueBytes long.
	chunk      bool
	header     chunkHeader
	valueBytes int
}

// size returns what record i of the run accounts for in SizeBytes.
func (r *recordRun) size(i int) uint64 {
	if r.chunk {
		return chunkRecordSize(r.views, i)
	}
	return uint64(r.valueBytes)
}

// end returns the offset after the run.
func (r *recordRun) end() uint64 { return chunkEnd(r.views) }

// recordScanner walks a partition's stored records in offset order from a
// start offset: the per-record keys below legacyHigh (written before
// version 3), then the chunks. The first run contains the start offset (a
// chunk may begin below it); every later run starts where the previous
// one ended. Every run is checked (checksum, shape, offsets) and a gap is
// reported through missing. Used by one goroutine; close it.
type recordScanner struct {
	partition  uint64
	open       iterOpener
	legacyHigh uint64
	// end: no run starting at or above it is read.
	end uint64
	// next is the offset the next run must contain (the first) or start
	// at (the others).
	next uint64
	// missing makes the error for a record absent at offset; nil makes a
	// *CorruptionError.
	missing func(offset uint64, reason string) error

	legacy, chunks *pebble.Iterator
	views          []recordView
}

// newRecordScanner returns a scanner of partition's records from `from`
// up to end, reading through open.
func newRecordScanner(partition uint64, open iterOpener, legacyHigh, from, end uint64) *recordScanner {
	return &recordScanner{partition: partition, open: open, legacyHigh: legacyHigh, end: end, next: from, views: getViews()}
}

// close closes the scanner's iterators.
func (s *recordScanner) close() {
	putViews(s.views)
	s.views = nil
	// Closing an iterator only returns its resources; an error it reports
	// was already reported by the reads.
	if s.legacy != nil {
		_ = s.legacy.Close()
	}
	if s.chunks != nil {
		_ = s.chunks.Close()
	}
}

// gap returns the error for a record absent at offset.
func (s *recordScanner) gap(offset uint64, reason string) error {
	if s.missing != nil {
		return s.missing(offset, reason)
	}
	return &CorruptionError{Partition: s.partition, Offset: offset, Reason: reason}
}

// run returns the next run; ok is false once the scanner reached end.
func (s *recordScanner) run() (run recordRun, ok bool, err error) {
	if s.next >= s.end {
		return recordRun{}, false, nil
	}
	if s.next < s.legacyHigh {
		return s.legacyRun()
	}
	return s.chunkRun()
}

// legacyRun reads the per-record key of s.next.
func (s *recordScanner) legacyRun() (recordRun, bool, error) {
	var valid bool
	if s.legacy == nil {
		var err error
		if s.legacy, err = s.open(appendRecordKey(nil, s.partition, s.next), appendRecordKey(nil, s.partition, s.legacyHigh)); err != nil {
			return recordRun{}, false, fmt.Errorf("log: partition %d: read records: %w", s.partition, err)
		}
		valid = s.legacy.First()
	} else {
		valid = s.legacy.Next()
	}
	if !valid {
		if err := s.legacy.Error(); err != nil {
			return recordRun{}, false, fmt.Errorf("log: partition %d: read record %d: %w", s.partition, s.next, err)
		}
		return recordRun{}, false, s.gap(s.next, fmt.Sprintf("record %d missing below the high watermark", s.next))
	}
	offset, ok := parseRecordKey(s.partition, s.legacy.Key())
	if !ok || offset != s.next {
		return recordRun{}, false, s.gap(s.next, fmt.Sprintf("found key %x where record %d belongs", s.legacy.Key(), s.next))
	}
	value, err := s.legacy.ValueAndErr()
	if err != nil {
		return recordRun{}, false, fmt.Errorf("log: partition %d: read record %d: %w", s.partition, offset, err)
	}
	view, err := parseRecordValue(s.partition, offset, value)
	if err != nil {
		return recordRun{}, false, err
	}
	s.views = append(s.views[:0], view)
	s.next++
	return recordRun{views: s.views, valueBytes: len(value)}, true, nil
}

// chunkRun reads the chunk containing (first run) or starting at s.next.
func (s *recordScanner) chunkRun() (recordRun, bool, error) {
	first := s.chunks == nil
	var valid bool
	if first {
		lower, _ := kindBounds(s.partition, kindChunk)
		var err error
		if s.chunks, err = s.open(lower, appendChunkKey(nil, s.partition, s.end)); err != nil {
			return recordRun{}, false, fmt.Errorf("log: partition %d: read chunks: %w", s.partition, err)
		}
		valid = s.chunks.SeekLT(appendChunkKey(nil, s.partition, s.next+1))
	} else {
		valid = s.chunks.Next()
	}
	if !valid {
		if err := s.chunks.Error(); err != nil {
			return recordRun{}, false, fmt.Errorf("log: partition %d: read chunk of %d: %w", s.partition, s.next, err)
		}
		return recordRun{}, false, s.gap(s.next, fmt.Sprintf("no chunk holds record %d", s.next))
	}
	base, ok := parseChunkKey(s.partition, s.chunks.Key())
	if !ok || (!first && base != s.next) || base > s.next {
		return recordRun{}, false, s.gap(s.next, fmt.Sprintf("found key %x where the chunk of record %d belongs", s.chunks.Key(), s.next))
	}
	value, err := s.chunks.ValueAndErr()
	if err != nil {
		return recordRun{}, false, fmt.Errorf("log: partition %d: read chunk %d: %w", s.partition, base, err)
	}
	header, views, err := decodeChunk(s.partition, base, value, s.views)
	s.views = views
	if err != nil {
		return recordRun{}, false, err
	}
	if end := chunkEnd(views); end <= s.next {
		return recordRun{}, false, s.gap(s.next, fmt.Sprintf("chunk %d ends at %d, before record %d", base, end, s.next))
	}
	s.next = chunkEnd(views)
	return recordRun{views: views, chunk: true, header: header, valueBytes: len(value)}, true, nil
}

// chunkFinder finds chunks by offset for random reads (tenant reads, time
// searches), keeping the last one decoded. Its views alias its iterator
// and are valid until its next call. Used by one goroutine; close it.
type chunkFinder struct {
	partition uint64
	iter      *pebble.Iterator
	// views is the decoded chunk the iterator is on, if any.
	views []recordView
}

// newChunkFinder opens a finder over the chunks below end through open.
func newChunkFinder(partition uint64, open iterOpener, end uint64) (*chunkFinder, error) {
	lower, _ := kindBounds(partition, kindChunk)
	iter, err := open(lower, appendChunkKey(nil, partition, end))
	if err != nil {
		return nil, fmt.Errorf("log: partition %d: read chunks: %w", partition, err)
	}
	return &chunkFinder{partition: partition, iter: iter, views: getViews()}, nil
}

// close closes the finder's iterator.
func (f *chunkFinder) close() {
	// See recordScanner.close.
	_ = f.iter.Close()
	putViews(f.views)
	f.views = nil
}

// errChunkNotFound is returned by chunkFinder when no chunk holds the
// offset asked for; callers turn it into the error that fits.
var errChunkNotFound = errors.New("log: chunk not found")

// containing returns the decoded chunk holding offset, or errChunkNotFound.
func (f *chunkFinder) containing(offset uint64) ([]recordView, error) {
	if len(f.views) > 0 && f.views[0].offset <= offset && offset < chunkEnd(f.views) {
		return f.views, nil
	}
	f.views = f.views[:0]
	if !f.iter.SeekLT(appendChunkKey(nil, f.partition, offset+1)) {
		if err := f.iter.Error(); err != nil {
			return nil, fmt.Errorf("log: partition %d: read chunk of %d: %w", f.partition, offset, err)
		}
		return nil, errChunkNotFound
	}
	if err := f.decode(); err != nil {
		return nil, err
	}
	if offset >= chunkEnd(f.views) {
		return nil, errChunkNotFound
	}
	return f.views, nil
}

// at returns the decoded chunk whose base is base, or errChunkNotFound.
func (f *chunkFinder) at(base uint64) ([]recordView, error) {
	if len(f.views) > 0 && f.views[0].offset == base {
		return f.views, nil
	}
	f.views = f.views[:0]
	key := appendChunkKey(nil, f.partition, base)
	if !f.iter.SeekGE(key) {
		if err := f.iter.Error(); err != nil {
			return nil, fmt.Errorf("log: partition %d: read chunk %d: %w", f.partition, base, err)
		}
		return nil, errChunkNotFound
	}
	if string(f.iter.Key()) != string(key) {
		return nil, errChunkNotFound
	}
	if err := f.decode(); err != nil {
		return nil, err
	}
	return f.views, nil
}

// decode decodes the chunk the iterator is on into f.views.
func (f *chunkFinder) decode() error {
	base, ok := parseChunkKey(f.partition, f.iter.Key())
	if !ok {
		return &CorruptionError{Partition: f.partition, Offset: 0, Reason: fmt.Sprintf("malformed chunk key %x", f.iter.Key())}
	}
	value, err := f.iter.ValueAndErr()
	if err != nil {
		return fmt.Errorf("log: partition %d: read chunk %d: %w", f.partition, base, err)
	}
	_, views, err := decodeChunk(f.partition, base, value, f.views)
	if err != nil {
		f.views = views[:0]
		return err
	}
	f.views = views
	return nil
}
