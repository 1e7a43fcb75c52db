package log

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"
)

func TestOptionsValidateCompression(t *testing.T) {
	for c := range compressionCount {
		require.NoError(t, (&Options{Dir: "x", Compression: c}).Validate(), "%s", c)
	}
	err := (&Options{Dir: "x", Compression: compressionCount}).Validate()
	require.ErrorIs(t, err, ErrInvalidOptions)
}

// A log written with one compression reads the same after it is reopened
// with each other one: Pebble records each block's compression, so
// changing Options.Compression never strands data. The records are
// compressible, and flushed, so that blocks are stored compressed.
func TestChangingCompressionKeepsDataReadable(t *testing.T) {
	for written := range compressionCount {
		for reopened := range compressionCount {
			t.Run(fmt.Sprintf("%s_then_%s", written, reopened), func(t *testing.T) {
				fs := vfs.NewMem()
				db, err := Open(Options{Dir: "db", FS: fs, CacheBytes: 4 << 20, Logger: discardLogger(), Compression: written})
				require.NoError(t, err)
				want := commitBatch(t, partition(t, db, 1), 1, entries(500, "acme", "globex"))
				require.NoError(t, db.Sync())
				require.NoError(t, db.Close())

				db, err = Open(Options{Dir: "db", FS: fs, CacheBytes: 4 << 20, Logger: discardLogger(), Compression: reopened})
				require.NoError(t, err)
				p := partition(t, db, 1)
				require.Equal(t, want, readAll(t, p))
				more := commitBatch(t, p, 2, entries(100, "acme"))
				require.NoError(t, db.Sync())
				require.Equal(t, append(want, more...), readAll(t, p))
				require.NoError(t, db.Close())
			})
		}
	}
}

func TestParseCompressionRoundTrips(t *testing.T) {
	for c := range compressionCount {
		got, err := ParseCompression(c.String())
		if err != nil || got != c {
			t.Fatalf("ParseCompression(%q) = %v, %v; want %v", c.String(), got, err, c)
		}
	}
	if _, err := ParseCompression("lz4"); err == nil {
		t.Fatal("an unknown compression is refused")
	}
}
