package jepsen

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.etcd.io/bbolt"
)

// writeBoltGroups makes dataDir/raft/g<id>/raft.db for each id, with
// enough data to span several pages.
func writeBoltGroups(t *testing.T, dataDir string, ids ...int) map[string][]byte {
	t.Helper()
	orig := map[string][]byte{}
	for _, id := range ids {
		dir := filepath.Join(dataDir, "raft", fmt.Sprintf("g%d", id))
		require.NoError(t, os.MkdirAll(dir, 0o755))
		path := filepath.Join(dir, "raft.db")
		db, err := bbolt.Open(path, 0o600, nil)
		require.NoError(t, err)
		require.NoError(t, db.Update(func(tx *bbolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("logs"))
			if err != nil {
				return err
			}
			for i := range 200 {
				if err := b.Put([]byte(fmt.Sprintf("%08d", i)), bytes.Repeat([]byte{byte(i)}, 100)); err != nil {
					return err
				}
			}
			return nil
		}))
		require.NoError(t, db.Close())
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		orig[path] = b
	}
	// A directory moved aside by an earlier rejoin is not a group.
	require.NoError(t, os.MkdirAll(filepath.Join(dataDir, "raft", "g9.damaged-1"), 0o755))
	return orig
}

func TestDamageRaftLogsFlipsOrTruncatesTheChosenGroups(t *testing.T) {
	for _, truncate := range []bool{false, true} {
		for pick := range 6 {
			dataDir := t.TempDir()
			orig := writeBoltGroups(t, dataDir, 0, 1, 2, 3)
			desc, err := damageRaftLogs(dataDir, pick, truncate)
			require.NoError(t, err)
			damaged := strings.Split(desc, ",")
			require.NotEmpty(t, damaged)
			require.LessOrEqual(t, len(damaged), raftDamageGroupsMax)
			for path, b := range orig {
				group := filepath.Base(filepath.Dir(path))
				now, err := os.ReadFile(path)
				require.NoError(t, err)
				hit := strings.Contains(","+desc+",", ","+group+",")
				require.Equal(t, hit, !bytes.Equal(now, b), "pick %d truncate %v: %s (damaged %s)", pick, truncate, group, desc)
				if hit && truncate {
					require.Less(t, len(now), len(b))
				}
				if hit && !truncate {
					require.Equal(t, len(b), len(now))
					require.Equal(t, b[:boltMetaBytes], now[:boltMetaBytes], "meta pages left alone")
				}
			}
			// The same pick damages the same groups the same way.
			again := t.TempDir()
			writeBoltGroups(t, again, 0, 1, 2, 3)
			desc2, err := damageRaftLogs(again, pick, truncate)
			require.NoError(t, err)
			require.Equal(t, desc, desc2)
		}
	}
}
