package log

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/sstable"
)

// formatMajorVersion is pinned so that a Pebble upgrade never ratchets the
// on-disk format by itself. FormatValueSeparation is FormatNewest in pebble
// v2.1.7. Raise it deliberately, together with a note on downgrades.
const formatMajorVersion = pebble.FormatValueSeparation

// DB is one node's Pebble database, shared by many partitions.
//
// All methods are safe for concurrent use. Close waits for operations in
// progress: snapshot streams (Snapshot.WriteTo, Partition.Restore) notice it
// between entries and stop early with ErrClosed, but a stream blocked on its
// io.Writer or io.Reader is waited for, so the caller should unblock it
// (close the connection) first. After Close every operation of the DB, its
// partitions, batches and snapshots returns ErrClosed.
type DB struct {
	pebble *pebble.DB
	logger *slog.Logger
	// walDisabled is !Options.PebbleWAL: durability points flush the
	// memtables instead of syncing the WAL (see makeDurableLocked).
	walDisabled bool

	// lifecycle is read-held for the duration of every operation that
	// touches pebble and write-held by Close, so that Close never frees
	// pebble under a reader (pebble panics on use after Close). It is the
	// one lock in the package held across I/O, by design: it guards the
	// lifetime of the I/O itself. Never acquire it twice on one goroutine
	// (a waiting Close would deadlock the second read lock); internal
	// helpers that need it held end in Locked.
	lifecycle sync.RWMutex
	// closed is guarded by lifecycle.
	closed bool
	// closing is set by Close before it waits for lifecycle, so that long
	// streams (Snapshot.WriteTo, Partition.Restore) stop early.
	closing atomic.Bool
	// closingCh is closed when closing is set, for waits that select.
	closingCh chan struct{}

	mu struct {
		sync.Mutex
		// partitions holds one slot per partition opened or being opened.
		partitions map[uint64]*partitionSlot
		// snapshots holds the Snapshots not yet closed; Close releases them.
		snapshots map[*Snapshot]struct{}
	}
}

// partitionSlot lets concurrent Partition calls for one id share one load
// without holding DB.mu across I/O. partition and err are written before
// ready is closed and read only after.
type partitionSlot struct {
	ready     chan struct{}
	partition *Partition
	err       error
}

// bloomBitsPerKey sizes the Bloom filters: 10 bits per key is about a 1 %
// false-positive rate.
const bloomBitsPerKey = 10

// compressionProfile is Pebble's block compression for c (validated).
func compressionProfile(c Compression) *sstable.CompressionProfile {
	switch c {
	case CompressionSnappy:
		return sstable.SnappyCompression
	case CompressionZstd:
		return sstable.ZstdCompression
	}
	return sstable.NoCompression
}

// Open opens (creating if needed) the database described by opts.
func Open(opts Options) (*DB, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	cache := pebble.NewCache(opts.CacheBytes)
	// Pebble takes its own reference; ours is dropped once Open returns.
	defer cache.Unref()
	popts := &pebble.Options{
		FS:                 opts.FS,
		Cache:              cache,
		MemTableSize:       uint64(opts.MemTableBytes),
		FormatMajorVersion: formatMajorVersion,
		DisableWAL:         !opts.PebbleWAL,
		Logger:             pebbleLogger{logger: opts.Logger.With(slog.String("component", "pebble"))},
	}
	// Bloom filters on every level (later levels inherit L0's policy): the
	// write path does point lookups that mostly miss (an event id never seen,
	// a producer's state), and without filters each miss reads a data block
	// of every level that overlaps the key.
	popts.Levels[0].FilterPolicy = bloom.FilterPolicy(bloomBitsPerKey)
	profile := compressionProfile(opts.Compression)
	for level := range popts.Levels {
		popts.Levels[level].Compression = func() *sstable.CompressionProfile { return profile }
	}
	pdb, err := pebble.Open(opts.Dir, popts)
	if err != nil {
		return nil, fmt.Errorf("log: open pebble at %q: %w", opts.Dir, err)
	}
	db := &DB{pebble: pdb, logger: opts.Logger, walDisabled: !opts.PebbleWAL, closingCh: make(chan struct{})}
	db.mu.partitions = make(map[uint64]*partitionSlot)
	db.mu.snapshots = make(map[*Snapshot]struct{})
	return db, nil
}

// acquire read-holds lifecycle, or returns ErrClosed. Pair with release.
func (db *DB) acquire() error {
	db.lifecycle.RLock()
	if db.closed {
		db.lifecycle.RUnlock()
		return ErrClosed
	}
	return nil
}

// release ends an acquire.
func (db *DB) release() { db.lifecycle.RUnlock() }

// Close releases open snapshots and closes Pebble. It waits for operations
// in progress. Without the WAL it flushes the memtables first, so that a
// clean restart replays no Raft entries (a failing flush is returned, and
// costs only that replay). A second Close returns nil.
func (db *DB) Close() error {
	if db.closing.CompareAndSwap(false, true) {
		close(db.closingCh)
	}
	db.lifecycle.Lock()
	defer db.lifecycle.Unlock()
	if db.closed {
		return nil
	}
	db.closed = true

	db.mu.Lock()
	snapshots := db.mu.snapshots
	db.mu.snapshots = nil
	db.mu.Unlock()
	var errs []error
	if db.walDisabled {
		if err := db.pebble.Flush(); err != nil {
			errs = append(errs, fmt.Errorf("log: flush before close: %w", err))
		}
	}
	for s := range snapshots {
		if err := s.pebbleSnapshot.Close(); err != nil {
			errs = append(errs, fmt.Errorf("log: close snapshot of partition %d: %w", s.partition.id, err))
		}
	}
	if err := db.pebble.Close(); err != nil {
		errs = append(errs, fmt.Errorf("log: close pebble: %w", err))
	}
	return errors.Join(errs...)
}

// Sync makes every committed batch durable: it syncs the WAL, or without
// the WAL (Options.PebbleWAL false) flushes the memtables to sstables. Safe
// for concurrent use.
func (db *DB) Sync() error {
	if err := db.acquire(); err != nil {
		return err
	}
	defer db.release()
	return db.syncLocked()
}

// syncLocked is Sync; lifecycle must be read-held.
func (db *DB) syncLocked() error {
	if db.walDisabled {
		// Pebble flushes memtables in the order they were filled, so a
		// flush makes every batch committed before it durable, and a crash
		// at any time keeps a prefix of the commits.
		if err := db.pebble.Flush(); err != nil {
			return fmt.Errorf("log: sync: flush: %w", err)
		}
		return nil
	}
	// An empty LogData record applied with Sync fsyncs the WAL, and with it
	// every batch committed before it.
	if err := db.pebble.LogData(nil, pebble.Sync); err != nil {
		return fmt.Errorf("log: sync: %w", err)
	}
	return nil
}

// closedChannel is a channel that is always closed.
var closedChannel = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// startSyncLocked starts making every committed batch durable and returns
// a channel closed once it is: with the WAL it syncs the WAL before it
// returns (the channel is closed already); without it, it starts a flush
// of the memtables (a memtable rotation, cheap) and the channel closes when
// the flush completes, so that the caller does not wait for the flush.
// lifecycle must be read-held.
func (db *DB) startSyncLocked() (<-chan struct{}, error) {
	if !db.walDisabled {
		if err := db.syncLocked(); err != nil {
			return nil, err
		}
		return closedChannel, nil
	}
	flushed, err := db.pebble.AsyncFlush()
	if err != nil {
		return nil, fmt.Errorf("log: sync: start a flush: %w", err)
	}
	return flushed, nil
}

// durableWriteOptions returns the WriteOptions of a write that must be
// durable: pebble.Sync with the WAL; without it pebble.NoSync (Pebble
// refuses Sync then), and the caller follows the write with
// makeDurableLocked.
func (db *DB) durableWriteOptions() *pebble.WriteOptions {
	if db.walDisabled {
		return pebble.NoSync
	}
	return pebble.Sync
}

// makeDurableLocked makes the writes committed with durableWriteOptions
// durable: nothing to do with the WAL (they synced it), a flush without
// it. lifecycle must be read-held.
func (db *DB) makeDurableLocked() error {
	if !db.walDisabled {
		return nil
	}
	return db.syncLocked()
}

// Pebble returns the underlying database, for metrics and tests. Writing to
// it behind the package's back voids every guarantee of this package.
func (db *DB) Pebble() *pebble.DB { return db.pebble }

// Partition returns the partition id, loading its metadata on first use.
// Every call with the same id returns the same *Partition. If the partition
// was left half-restored (a "restoring" marker), Partition wipes it, logs a
// warning and returns it empty with applied index 0; the caller then
// restores again. Safe for concurrent use.
func (db *DB) Partition(id uint64) (*Partition, error) {
	if err := db.acquire(); err != nil {
		return nil, err
	}
	defer db.release()

	db.mu.Lock()
	slot, loading := db.mu.partitions[id]
	if loading {
		db.mu.Unlock()
		<-slot.ready
		return slot.partition, slot.err
	}
	slot = &partitionSlot{ready: make(chan struct{})}
	db.mu.partitions[id] = slot
	db.mu.Unlock()

	p, err := db.openPartitionLocked(id)

	db.mu.Lock()
	if err != nil {
		// Let a later call try again.
		delete(db.mu.partitions, id)
	}
	slot.partition, slot.err = p, err
	db.mu.Unlock()
	close(slot.ready)
	return p, err
}
