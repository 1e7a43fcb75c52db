package log

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/record"
)

// IsCorruption reports whether err means the node's Pebble data is
// damaged: a record that fails its checksum or offset check, a Pebble block
// or manifest checksum failure, or a WAL that cannot be replayed.
//
// The log is derived state: every record came from a Raft entry that the
// node's Raft log or snapshots still hold, so a damaged log can be set
// aside and rebuilt (see Quarantine).
func IsCorruption(err error) bool {
	return errors.Is(err, ErrCorruption) || pebble.IsCorruptionError(err) ||
		errors.Is(err, record.ErrInvalidChunk) || errors.Is(err, record.ErrZeroedChunk) ||
		errors.Is(err, record.ErrUnexpectedEOF)
}

// Quarantine moves a damaged Pebble directory aside (to dir.corrupt-<unix
// seconds>, kept for inspection) so that Open starts an empty log in its
// place. The DB must not be open.
func Quarantine(dir string) (string, error) {
	to := fmt.Sprintf("%s.corrupt-%d", dir, time.Now().Unix())
	if err := os.Rename(dir, to); err != nil {
		return "", fmt.Errorf("log: quarantine %s: %w", dir, err)
	}
	return to, nil
}
