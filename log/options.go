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
	// batch (BenchmarkAppend). True is for a caller whose writes are not
	// replayed from elsewhere.
	PebbleWAL bool
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
