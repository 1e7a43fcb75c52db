package raft

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"
	hraft "github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/stretchr/testify/require"
)

// checkedPayload is a test command: the text followed by its CRC32.
func checkedPayload(text string) []byte {
	b := []byte(text)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}

// checkPayload is the EntryChecker of checkedPayload commands.
func checkPayload(l *hraft.Log) error {
	if len(l.Data) < 4 {
		return errors.New("short command")
	}
	body := l.Data[:len(l.Data)-4]
	if crc32.ChecksumIEEE(body) != binary.BigEndian.Uint32(l.Data[len(l.Data)-4:]) {
		return errors.New("command checksum mismatch")
	}
	return nil
}

// writeStore creates a group directory with entries 1..n (a configuration
// first, then checked commands) and, when snapshotAt > 0, a snapshot at
// that index with the log compacted before it.
func writeStore(t *testing.T, n, snapshotAt int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "g7")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, raftDBFile)})
	require.NoError(t, err)
	conf := hraft.Configuration{Servers: []hraft.Server{{Suffrage: hraft.Voter, ID: "n1", Address: "127.0.0.1:1"}}}
	logs := []*hraft.Log{{Index: 1, Term: 1, Type: hraft.LogConfiguration, Data: hraft.EncodeConfiguration(conf)}}
	for i := 2; i <= n; i++ {
		logs = append(logs, &hraft.Log{Index: uint64(i), Term: 2, Type: hraft.LogCommand, Data: checkedPayload(fmt.Sprintf("marker-%06d-payload", i))})
	}
	require.NoError(t, store.StoreLogs(logs))
	require.NoError(t, store.SetUint64(keyCurrentTerm, 2))
	if snapshotAt > 0 {
		snaps, err := hraft.NewFileSnapshotStoreWithLogger(dir, 2, hclog.NewNullLogger())
		require.NoError(t, err)
		_, tr := hraft.NewInmemTransport("127.0.0.1:1")
		sink, err := snaps.Create(hraft.SnapshotVersionMax, uint64(snapshotAt), 2, conf, 1, tr)
		require.NoError(t, err)
		_, err = sink.Write(bytes.Repeat([]byte("snapshot-state "), 100))
		require.NoError(t, err)
		require.NoError(t, sink.Close())
		require.NoError(t, store.DeleteRange(1, uint64(snapshotAt/2)))
	}
	require.NoError(t, store.Close())
	return dir
}

func requireDamaged(t *testing.T, err error, reason string) {
	t.Helper()
	require.Error(t, err)
	require.True(t, errors.Is(err, ErrDamaged), "%v", err)
	var de *DamageError
	require.True(t, errors.As(err, &de))
	require.Contains(t, de.Reason, reason)
}

func TestVerifyStorePassesACleanStore(t *testing.T) {
	require.NoError(t, VerifyStore(writeStore(t, 500, 0), checkPayload))
	require.NoError(t, VerifyStore(writeStore(t, 500, 300), checkPayload))
	require.NoError(t, VerifyStore(filepath.Join(t.TempDir(), "new"), checkPayload), "a group never opened is new")
}

// Bits flipped in the data of a stored entry are found by the entry check,
// even though raft-boltdb stores no checksum of its own.
func TestVerifyStoreFindsAFlippedByteInAnEntry(t *testing.T) {
	dir := writeStore(t, 500, 0)
	flipEveryCopy(t, filepath.Join(dir, raftDBFile), "marker-000250-payload")
	requireDamaged(t, VerifyStore(dir, checkPayload), "entry 250: command checksum mismatch")
	require.NoError(t, VerifyStore(dir, nil), "without an entry check the damage is invisible")
}

func TestVerifyStoreFindsATruncatedFile(t *testing.T) {
	for _, tc := range []struct {
		name   string
		keep   func(size int64) int64
		reason string
	}{
		{"half", func(size int64) int64 { return size / 2 }, ""},
		{"one page", func(int64) int64 { return 4096 }, ""},
		{"a few bytes", func(int64) int64 { return 100 }, "too short"},
		{"empty", func(int64) int64 { return 0 }, "too short"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeStore(t, 2000, 0)
			path := filepath.Join(dir, raftDBFile)
			st, err := os.Stat(path)
			require.NoError(t, err)
			require.NoError(t, os.Truncate(path, tc.keep(st.Size())))
			requireDamaged(t, VerifyStore(dir, checkPayload), tc.reason)
		})
	}
}

func TestVerifyStoreFindsAGapAndAMissingSnapshot(t *testing.T) {
	dir := writeStore(t, 100, 0)
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, raftDBFile)})
	require.NoError(t, err)
	require.NoError(t, store.DeleteRange(40, 45))
	require.NoError(t, store.Close())
	requireDamaged(t, VerifyStore(dir, checkPayload), "gap")

	dir = writeStore(t, 500, 300)
	require.NoError(t, os.RemoveAll(filepath.Join(dir, snapshotsDir)))
	requireDamaged(t, VerifyStore(dir, checkPayload), "newest snapshot covers only up to 0")
}

func TestVerifyStoreFindsADamagedSnapshot(t *testing.T) {
	dir := writeStore(t, 500, 300)
	states, err := filepath.Glob(filepath.Join(dir, snapshotsDir, "*", "state.bin"))
	require.NoError(t, err)
	require.Len(t, states, 1)
	b, err := os.ReadFile(states[0])
	require.NoError(t, err)
	b[len(b)/2] ^= 1
	require.NoError(t, os.WriteFile(states[0], b, 0o600))
	requireDamaged(t, VerifyStore(dir, checkPayload), "CRC mismatch")

	dir = writeStore(t, 500, 300)
	metas, err := filepath.Glob(filepath.Join(dir, snapshotsDir, "*", "meta.json"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(metas[0], []byte("{not json"), 0o600))
	requireDamaged(t, VerifyStore(dir, checkPayload), "metadata unreadable")

	dir = writeStore(t, 500, 300)
	require.NoError(t, os.Remove(filepath.Join(dir, raftDBFile)))
	requireDamaged(t, VerifyStore(dir, checkPayload), "missing")
}

// bbolt opens a file with one bad meta page by using the other, which can
// roll the store back one transaction (acknowledged entries gone): either
// meta page failing its checksum is damage.
func TestVerifyStoreFindsADamagedMetaPage(t *testing.T) {
	for _, page := range []int64{0, 1} {
		dir := writeStore(t, 100, 0)
		path := filepath.Join(dir, raftDBFile)
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		require.NoError(t, err)
		b := make([]byte, 1)
		at := page*4096 + boltPageHeaderBytes + 40 // the transaction id
		_, err = f.ReadAt(b, at)
		require.NoError(t, err)
		b[0] ^= 0x04
		_, err = f.WriteAt(b, at)
		require.NoError(t, err)
		require.NoError(t, f.Close())
		requireDamaged(t, VerifyStore(dir, checkPayload), fmt.Sprintf("meta page %d: checksum mismatch", page))
	}
}

func TestStoredAddressesReadsTheLatestConfiguration(t *testing.T) {
	require.Equal(t, []string{"127.0.0.1:1"}, StoredAddresses(writeStore(t, 50, 0)))
	dir := writeStore(t, 500, 300) // entry 1, the configuration, compacted away
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, raftDBFile)})
	require.NoError(t, err)
	require.NoError(t, store.DeleteRange(1, 200))
	require.NoError(t, store.Close())
	require.Equal(t, []string{"127.0.0.1:1"}, StoredAddresses(dir), "from the snapshot")
	missing := filepath.Join(t.TempDir(), "none")
	require.Nil(t, StoredAddresses(missing))
	_, err = os.Stat(missing)
	require.True(t, errors.Is(err, os.ErrNotExist), "nothing created")
}

// punchHole deletes the entries from..to (inclusive) of dir's raft.db, as
// an InstallSnapshot on a store hashicorp/raft does not treat as monotonic
// leaves them: the follower's old entries, then nothing up to the snapshot.
func punchHole(t *testing.T, dir string, from, to uint64) {
	t.Helper()
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, raftDBFile)})
	require.NoError(t, err)
	require.NoError(t, store.DeleteRange(from, to))
	require.NoError(t, store.Close())
}

// A hole in the log that the newest snapshot covers is what an older
// InstallSnapshot left (the follower's old entries below it are stale, never
// read again): it is not damage. A hole above the snapshot loses committed
// entries: damage.
func TestVerifyStoreAcceptsAHoleBelowTheNewestSnapshot(t *testing.T) {
	for _, tc := range []struct {
		name     string
		from, to uint64 // the hole; the store holds 151..500 and a snapshot at 300
		damaged  bool
	}{
		{"hole ends below the snapshot", 200, 250, false},
		{"hole ends at the snapshot", 200, 300, false},
		{"hole ends right after the snapshot", 200, 301, true},
		{"hole above the snapshot", 350, 360, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeStore(t, 500, 300)
			punchHole(t, dir, tc.from, tc.to)
			err := VerifyStore(dir, checkPayload)
			if !tc.damaged {
				require.NoError(t, err)
				return
			}
			requireDamaged(t, err, fmt.Sprintf("log gap: index %d follows %d", tc.to+1, tc.from-1))
		})
	}
}

// The configuration in entries below a hole predates the newest snapshot's.
func TestStoredAddressesIgnoresEntriesBelowAHole(t *testing.T) {
	dir := writeStore(t, 500, 300) // entries 151..500, configuration in the snapshot
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, raftDBFile)})
	require.NoError(t, err)
	stale := hraft.Configuration{Servers: []hraft.Server{{Suffrage: hraft.Voter, ID: "old", Address: "127.0.0.1:9"}}}
	require.NoError(t, store.StoreLog(&hraft.Log{Index: 151, Term: 2, Type: hraft.LogConfiguration, Data: hraft.EncodeConfiguration(stale)}))
	require.NoError(t, store.Close())
	require.Equal(t, []string{"127.0.0.1:9"}, StoredAddresses(dir), "no hole: the log's configuration is the newest")
	punchHole(t, dir, 200, 300)
	require.NoError(t, VerifyStore(dir, checkPayload))
	require.Equal(t, []string{"127.0.0.1:1"}, StoredAddresses(dir), "from the snapshot, not from below the hole")
}

// flipEveryCopy changes a byte in the middle of every copy of needle in
// the file at path (bbolt leaves old copies of a page in free pages, so
// that the live one is hit), keeping its size.
func flipEveryCopy(t *testing.T, path, needle string) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	at := bytes.Index(b, []byte(needle))
	require.Positive(t, at, "%q not found in %s", needle, path)
	for at >= 0 {
		b[at+len(needle)/2] ^= 0x20
		next := bytes.Index(b[at+1:], []byte(needle))
		if next < 0 {
			break
		}
		at += 1 + next
	}
	require.NoError(t, os.WriteFile(path, b, 0o600))
}
