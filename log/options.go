package log

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Memtable sizes: the default, and the most Options.MemTableBytes accepts.
const (
	memTableBytesDefault = 32 << 20
	memTableBytesMax     = 1 << 30
)

// cacheBytesDefault is the block cache size used when Options.CacheBytes is 0.
// The write path's dedupe lookups (event ids, producer windows) are point
// reads spread over the whole dedupe window; with 64 MiB they missed the
// cache and re-read and decompressed blocks (BenchmarkAppendIdempotent 17.2
// ms per 1,000 records; 11.8 ms with 256 MiB). Pebble fills the cache
// lazily, so an idle node does not pay for it.
const cacheBytesDefault int64 = 256 << 20

// Compression is the block compression of the log's sstables. Persisted
// per block (Pebble records each block's compression), so changing it
// never makes existing data unreadable.
type Compression uint8

// Compressions. CompressionNone is the default: record bodies are often
// compressed or encrypted already, or random, and then compressing a
// block is pure cost (a block that shrinks by less than 12 % is stored
// uncompressed anyway). BenchmarkAppendCompaction (incompressible 128 B
// records, no WAL): process CPU per 1,000-record batch 1.701 ms with
// Snappy on every level (Pebble's default), 1.376 ms with none (-19 %);
// Snappy only below L2 saved nothing measurable (Pebble's dynamic level sizing moves
// data from L0 straight to L5 and L6 on a database of this size). Choose
// Snappy or Zstd for compressible payloads (JSON, text), trading CPU for
// disk.
const (
	CompressionNone Compression = iota
	CompressionSnappy
	CompressionZstd
	compressionCount
)

// String names c as Options and flags spell it.
func (c Compression) String() string {
	switch c {
	case CompressionNone:
		return "none"
	case CompressionSnappy:
		return "snappy"
	case CompressionZstd:
		return "zstd"
	}
	return fmt.Sprintf("Compression(%d)", uint8(c))
}

// ParseCompression reads a Compression as String spells it.
func ParseCompression(s string) (Compression, error) {
	for c := range compressionCount {
		if c.String() == s {
			return c, nil
		}
	}
	return 0, fmt.Errorf("log: unknown compression %q (want none, snappy or zstd)", s)
}

// Options configures [Open]. The zero value of every field except Dir selects
// its default.
type Options struct {
	// Dir is the directory of the Pebble database. Required.
	Dir string
	// FS is the filesystem; nil selects vfs.Default. Tests use an in-memory
	// filesystem (vfs.NewMem, or vfs.NewCrashableMem to simulate crashes).
	FS vfs.FS
	// CacheBytes is the size of the block cache shared by all partitions;
	// 0 selects 256 MiB.
	CacheBytes int64
	// MemTableBytes is the size of one Pebble memtable; 0 selects 32 MiB.
	// A log is write-heavy: larger memtables mean fewer, larger flushes and
	// less compaction work per appended record.
	MemTableBytes int
	// Logger receives the package's and Pebble's log lines; nil selects
	// slog.Default().
	Logger *slog.Logger
	// PebbleWAL keeps Pebble's own write-ahead log. False (the default)
	// writes without it: every write of the package is either a Batch
	// committed with its Raft applied index, which the Raft log replays
	// after a crash (the Raft log is the write-ahead log), or a Restore or
	// Drop, which flush before they return. What a crash loses is the
	// memtable: the partitions go back to their state at the last flush,
	// never below the applied index of a Partition.Snapshot (it flushes),
	// and Raft replays the rest. It saves the WAL's write and its CPU per
	// batch (BenchmarkAppendCompaction: -13 % process CPU). True is for a
	// caller whose writes are not replayed from elsewhere.
	PebbleWAL bool
	// Compression is the block compression of every LSM level; the zero
	// value, CompressionNone, is the default (see [Compression]).
	Compression Compression
}

// Validate reports every problem with o at once (errors.Join); each problem
// matches [ErrInvalidOptions]. Zero values that select defaults are valid.
func (o *Options) Validate() error {
	var errs []error
	if o.Dir == "" {
		errs = append(errs, fmt.Errorf("%w: Dir is empty", ErrInvalidOptions))
	}
	if o.CacheBytes < 0 {
		errs = append(errs, fmt.Errorf("%w: CacheBytes is %d, want >= 0 (0 selects %d)", ErrInvalidOptions, o.CacheBytes, cacheBytesDefault))
	}
	if o.MemTableBytes < 0 || o.MemTableBytes > memTableBytesMax {
		errs = append(errs, fmt.Errorf("%w: MemTableBytes is %d, want 0..%d (0 selects %d)", ErrInvalidOptions, o.MemTableBytes, memTableBytesMax, memTableBytesDefault))
	}
	if o.Compression >= compressionCount {
		errs = append(errs, fmt.Errorf("%w: Compression is %s, want none, snappy or zstd", ErrInvalidOptions, o.Compression))
	}
	return errors.Join(errs...)
}

// withDefaults returns a copy of o with defaults filled in.
func (o Options) withDefaults() Options {
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.MemTableBytes == 0 {
		o.MemTableBytes = memTableBytesDefault
	}
	if o.CacheBytes == 0 {
		o.CacheBytes = cacheBytesDefault
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}
