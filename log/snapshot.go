package log

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"

	"github.com/cockroachdb/pebble/v2"
)

// Snapshot stream format (see the package documentation). The version byte
// is persisted and sent to peers: new versions get new numbers.
const (
	snapshotMagic = "HLOGSNAP"
	// snapshotVersion1 streams hold the version-1 key kinds and records.
	snapshotVersion1 byte = 1
	// snapshotVersion2 streams have the same framing and may also hold
	// version-2 records, kinds and meta. An older node refuses them by
	// version rather than by an unknown kind.
	snapshotVersion2 byte = 2
	// snapshotVersion3 streams may also hold chunks and sparse tenant
	// index entries. They are written for a partition with no consumer
	// group, so that a node that knows no groups still takes them.
	snapshotVersion3 byte = 3
	// snapshotVersion4 streams may also hold consumer group keys ('g', 'q',
	// 'r'); they were written for a partition with at least one group
	// (read, no longer written since version 6).
	snapshotVersion4 byte = 4
	// snapshotVersion5 streams may also hold consumer group processed
	// marks ('k', 'o', 'u'); they were written for a partition where a
	// group holds at least one mark (read, no longer written since
	// version 6).
	snapshotVersion5 byte = 5
	// snapshotVersion6 streams may also hold pending runs (version-2 'q'
	// values, key layout version 7); they are written for a partition
	// with at least one group, so that a node that predates runs refuses
	// the stream by its version rather than by a value it cannot decode.
	snapshotVersion6    byte = 6
	snapshotHeaderBytes      = len(snapshotMagic) + 1 + 8
	snapshotTagEntry    byte = 'E'
	snapshotTagTrailer  byte = 'T'

	// snapshotBufferBytes sizes the buffered writer and reader of a stream.
	snapshotBufferBytes = 64 << 10
	// snapshotEntriesPerCloseCheck is how many entries a stream moves between
	// two looks at DB.closing.
	snapshotEntriesPerCloseCheck = 256
)

// Snapshot is a point-in-time image of one partition, taken by
// [Partition.Snapshot]. WriteTo may run on any goroutine, concurrently with
// later commits to the partition (they do not show in the image). WriteTo
// and Close must not run concurrently with each other. Close must be called;
// DB.Close releases snapshots still open.
type Snapshot struct {
	partition      *Partition
	pebbleSnapshot *pebble.Snapshot
	appliedIndex   uint64
	// durable is closed once every batch in the image is durable (see
	// DB.startSyncLocked); WriteTo waits for it before the trailer.
	durable <-chan struct{}
}

var _ io.WriterTo = (*Snapshot)(nil)

// Snapshot takes a point-in-time image of the partition and starts making
// Pebble durable up to it: a WAL sync before it returns, or without the WAL
// a memtable flush that runs while the image streams, so that the writer
// is not held for it (a flush of a full 32 MiB memtable took 89 ms, a WAL
// sync 3 ms). The image is durable once WriteTo returns without error:
// WriteTo waits for the flush before it writes the stream's trailer, so a
// complete stream (and the Raft snapshot made of it) never runs ahead of
// what a restart finds in Pebble. Writer only (it runs on the FSM
// goroutine, so the image holds exactly the batches committed so far).
func (p *Partition) Snapshot() (*Snapshot, error) {
	if err := p.db.acquire(); err != nil {
		return nil, err
	}
	defer p.db.release()
	if p.restoring.Load() {
		return nil, fmt.Errorf("log: partition %d: snapshot: %w", p.id, ErrRestoreIncomplete)
	}
	durable, err := p.db.startSyncLocked()
	if err != nil {
		return nil, err
	}
	ps := p.db.pebble.NewSnapshot()
	applied, _, err := p.getUint64(ps, metaApplied)
	if err != nil {
		_ = ps.Close()
		return nil, err
	}
	s := &Snapshot{partition: p, pebbleSnapshot: ps, appliedIndex: applied, durable: durable}
	p.db.mu.Lock()
	p.db.mu.snapshots[s] = struct{}{}
	p.db.mu.Unlock()
	return s, nil
}

// AppliedIndex returns the applied index recorded in the image.
func (s *Snapshot) AppliedIndex() uint64 { return s.appliedIndex }

// open reports whether s is still registered (neither closed nor released
// by DB.Close). db.lifecycle must be read-held.
func (s *Snapshot) openLocked() bool {
	db := s.partition.db
	db.mu.Lock()
	defer db.mu.Unlock()
	_, ok := db.mu.snapshots[s]
	return ok
}

// Close releases the image. A second Close, or a Close after DB.Close,
// returns nil.
func (s *Snapshot) Close() error {
	db := s.partition.db
	if err := db.acquire(); err != nil {
		return nil // DB.Close released it.
	}
	defer db.release()
	db.mu.Lock()
	_, ok := db.mu.snapshots[s]
	delete(db.mu.snapshots, s)
	db.mu.Unlock()
	if !ok {
		return nil
	}
	if err := s.pebbleSnapshot.Close(); err != nil {
		return fmt.Errorf("log: close snapshot of partition %d: %w", s.partition.id, err)
	}
	return nil
}

// WriteTo streams every key and value of the partition's image in the
// snapshot stream format (version 4 when the partition has a consumer
// group, else 3) and returns the bytes written. It
// holds one entry at a time in memory, besides a fixed-size buffer. Each
// record and chunk is checked before it is sent; a failure is a
// *CorruptionError. If the DB is closing, WriteTo stops with ErrClosed.
// Before the trailer it waits until the image is durable (see
// Partition.Snapshot): a stream without its trailer is refused by Restore.
func (s *Snapshot) WriteTo(w io.Writer) (int64, error) {
	p := s.partition
	db := p.db
	if err := db.acquire(); err != nil {
		return 0, err
	}
	defer db.release()
	if !s.openLocked() {
		return 0, fmt.Errorf("log: snapshot of partition %d is closed: %w", p.id, ErrClosed)
	}

	lower, upper := partitionBounds(p.id)
	iter, err := s.pebbleSnapshot.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return 0, fmt.Errorf("log: partition %d: snapshot: %w", p.id, err)
	}
	defer iter.Close()

	version, err := s.streamVersion()
	if err != nil {
		return 0, err
	}
	sw := newSnapshotWriter(w)
	sw.header(version, s.appliedIndex)
	var count uint64
	var views []recordView
	restoringKey := appendMetaKey(nil, p.id, metaRestoring)
	for valid := iter.First(); valid; valid = iter.Next() {
		if count%snapshotEntriesPerCloseCheck == 0 && db.closing.Load() {
			return sw.written, ErrClosed
		}
		key := iter.Key()
		if string(key) == string(restoringKey) {
			continue
		}
		value, err := iter.ValueAndErr()
		if err != nil {
			return sw.written, fmt.Errorf("log: partition %d: snapshot read: %w", p.id, err)
		}
		if offset, ok := parseRecordKey(p.id, key); ok {
			if _, err := parseRecordValue(p.id, offset, value); err != nil {
				return sw.written, err
			}
		}
		if base, ok := parseChunkKey(p.id, key); ok {
			if _, views, err = decodeChunk(p.id, base, value, views); err != nil {
				return sw.written, err
			}
		}
		if err := p.checkGroupEntry(key, value); err != nil {
			return sw.written, err
		}
		sw.entry(key[partitionPrefixBytes:], value)
		count++
		if sw.err != nil {
			return sw.written, sw.err
		}
	}
	if err := iter.Error(); err != nil {
		return sw.written, fmt.Errorf("log: partition %d: snapshot read: %w", p.id, err)
	}
	select {
	case <-s.durable:
	case <-db.closingCh:
		return sw.written, ErrClosed
	}
	sw.trailer(count)
	return sw.written, sw.err
}

// snapshotWriter frames a snapshot stream, keeping its CRC and byte count.
// The first error sticks and makes later calls no-ops.
type snapshotWriter struct {
	buf     *bufio.Writer
	crc     hash.Hash32
	written int64
	err     error
	scratch [9]byte
}

func newSnapshotWriter(w io.Writer) *snapshotWriter {
	sw := &snapshotWriter{crc: crc32.New(castagnoli)}
	sw.buf = bufio.NewWriterSize(countingWriter{w: w, n: &sw.written}, snapshotBufferBytes)
	return sw
}

// write sends b through the CRC and the buffer.
func (sw *snapshotWriter) write(b []byte) {
	if sw.err != nil {
		return
	}
	sw.crc.Write(b) // hash.Hash.Write never fails
	_, sw.err = sw.buf.Write(b)
}

// streamVersion is the version the image is written with: 6 when the
// partition has a consumer group (its pending deliveries may be runs),
// else 3 (so an older node takes every image it can read).
func (s *Snapshot) streamVersion() (byte, error) {
	hasGroups, err := s.hasKind(kindGroup)
	if err != nil {
		return 0, err
	}
	if hasGroups {
		return snapshotVersion6, nil
	}
	return snapshotVersion3, nil
}

// hasKind reports whether the image holds a key of kind.
func (s *Snapshot) hasKind(kind byte) (bool, error) {
	p := s.partition
	lower, upper := kindBounds(p.id, kind)
	iter, err := s.pebbleSnapshot.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return false, fmt.Errorf("log: partition %d: snapshot: %w", p.id, err)
	}
	found := iter.First()
	err = iter.Error()
	if closeErr := iter.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return false, fmt.Errorf("log: partition %d: snapshot: %w", p.id, err)
	}
	return found, nil
}

func (sw *snapshotWriter) header(version byte, appliedIndex uint64) {
	sw.write([]byte(snapshotMagic))
	sw.write([]byte{version})
	sw.write(binary.BigEndian.AppendUint64(sw.scratch[:0], appliedIndex))
}

// parseSnapshotHeader returns the applied index of a stream's header, or
// what is wrong with the header.
func parseSnapshotHeader(header [snapshotHeaderBytes]byte) (appliedIndex uint64, problem string) {
	if string(header[:len(snapshotMagic)]) != snapshotMagic {
		return 0, fmt.Sprintf("bad magic %q", header[:len(snapshotMagic)])
	}
	if version := header[len(snapshotMagic)]; version < snapshotVersion1 || version > snapshotVersion6 {
		return 0, fmt.Sprintf("unknown version %d", version)
	}
	return binary.BigEndian.Uint64(header[len(snapshotMagic)+1:]), ""
}

// SnapshotAppliedIndex reads only the header of a snapshot stream written
// by [Snapshot.WriteTo] and returns the applied index it records: the
// partition's applied index when the image was taken, where
// [Partition.Restore] leaves it. A short stream or a bad header is an
// error matching ErrCorruption; a failing reader returns its error.
func SnapshotAppliedIndex(r io.Reader) (uint64, error) {
	var header [snapshotHeaderBytes]byte
	if _, err := io.ReadFull(r, header[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, fmt.Errorf("%w: snapshot stream: truncated header", ErrCorruption)
		}
		return 0, fmt.Errorf("log: read snapshot header: %w", err)
	}
	appliedIndex, problem := parseSnapshotHeader(header)
	if problem != "" {
		return 0, fmt.Errorf("%w: snapshot stream: %s", ErrCorruption, problem)
	}
	return appliedIndex, nil
}

func (sw *snapshotWriter) entry(key, value []byte) {
	sw.write([]byte{snapshotTagEntry})
	sw.write(binary.BigEndian.AppendUint32(sw.scratch[:0], uint32(len(key))))
	sw.write(key)
	sw.write(binary.BigEndian.AppendUint32(sw.scratch[:0], uint32(len(value))))
	sw.write(value)
}

func (sw *snapshotWriter) trailer(count uint64) {
	sw.write([]byte{snapshotTagTrailer})
	sw.write(binary.BigEndian.AppendUint64(sw.scratch[:0], count))
	if sw.err != nil {
		return
	}
	_, sw.err = sw.buf.Write(binary.BigEndian.AppendUint32(sw.scratch[:0], sw.crc.Sum32()))
	if sw.err == nil {
		sw.err = sw.buf.Flush()
	}
}

// countingWriter counts the bytes its writer accepted.
type countingWriter struct {
	w io.Writer
	n *int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	*c.n += int64(n)
	return n, err
}
