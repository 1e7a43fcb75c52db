package log

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/record"
)

func TestIsCorruption(t *testing.T) {
	cases := []struct {
		err  error
		want bool
	}{
		{&CorruptionError{Partition: 1, Offset: 2, Reason: "crc"}, true},
		{fmt.Errorf("open: %w", record.ErrUnexpectedEOF), true},
		{fmt.Errorf("open: %w", record.ErrInvalidChunk), true},
		{pebble.ErrCorruption, true},
		{errors.New("disk full"), false},
		{ErrClosed, false},
	}
	for _, c := range cases {
		if got := IsCorruption(c.err); got != c.want {
			t.Errorf("IsCorruption(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestQuarantineMovesTheDirectoryAside(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pebble")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "x"), []byte("damaged"), 0o644); err != nil {
		t.Fatal(err)
	}
	to, err := Quarantine(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s still exists: %v", dir, err)
	}
	if b, err := os.ReadFile(filepath.Join(to, "x")); err != nil || string(b) != "damaged" {
		t.Fatalf("quarantined copy: %q %v", b, err)
	}
}
