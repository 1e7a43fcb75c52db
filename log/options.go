package log

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// cacheBytesDefault is the block cache size used when Options.CacheBytes is 0.
const cacheBytesDefault int64 = 64 << 20

// Options configures [Open]. The zero value of every field except Dir selects
// its default.
type Options struct {
	// Dir is the directory of the Pebble database. Required.
	Dir string
	// FS is the filesystem; nil selects vfs.Default. Tests use an in-memory
	// filesystem (vfs.NewMem, or vfs.NewCrashableMem to simulate crashes).
	FS vfs.FS
	// CacheBytes is the size of the block cache shared by all partitions;
	// 0 selects 64 MiB.
	CacheBytes int64
	// Logger receives the package's and Pebble's log lines; nil selects
	// slog.Default().
	Logger *slog.Logger
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
	return errors.Join(errs...)
}

// withDefaults returns a copy of o with defaults filled in.
func (o Options) withDefaults() Options {
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.CacheBytes == 0 {
		o.CacheBytes = cacheBytesDefault
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}
