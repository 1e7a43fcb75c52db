package raft

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// checkedEntries are n checked test commands, "clean-NNNNNN-payload".
func checkedEntries(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = string(checkedPayload(fmt.Sprintf("clean-%06d-payload", i)))
	}
	return out
}

// prepare runs PrepareRejoin for group 1 and returns its marker and whether
// the stored state was read whole.
func prepare(t *testing.T, dir string, opts PrepareOptions) (*RejoinMarker, bool) {
	t.Helper()
	full, called := false, false
	opts.Checked = func(f bool) { full, called = f, true }
	m, err := PrepareRejoin(dir, 1, checkPayload, opts)
	require.NoError(t, err)
	require.True(t, called, "Checked is called for a group not marked damaged")
	return m, full
}

// A group closed cleanly is opened next time without reading its files
// whole; any write to them after the close (even within the same clock
// tick), a crash (no record), or VerifyFull brings the full check back.
func TestCleanShutdownSkipsTheFullCheckUntilAFileChanges(t *testing.T) {
	_, nodes := threeNodes(t)
	groups, fsms := openOnAll(t, nodes, 1)
	leader := waitLeader(t, groups...)
	entries := checkedEntries(40)
	applyAll(t, groups[leader], entries...)
	requireConverged(t, entries, fsms...)
	dirOf := func(i int) string { return filepath.Join(nodes[i].dir, "group-1") }

	// Unchanged since a clean close: no full check, and the record is used
	// up (the next start of an untouched crash reads everything again).
	a := (leader + 1) % 3
	require.NoError(t, groups[a].Close())
	require.FileExists(t, filepath.Join(dirOf(a), cleanShutdownFile))
	m, full := prepare(t, dirOf(a), PrepareOptions{})
	require.Nil(t, m)
	require.False(t, full, "files unchanged since the clean close")
	require.NoFileExists(t, filepath.Join(dirOf(a), cleanShutdownFile))
	_, full = prepare(t, dirOf(a), PrepareOptions{})
	require.True(t, full, "without a record (as after a crash) the state is read whole")

	// A byte changed right after the close, size kept: found.
	b := (leader + 2) % 3
	require.NoError(t, groups[b].Close())
	flipEveryCopy(t, filepath.Join(dirOf(b), raftDBFile), "clean-000020-payload")
	m, full = prepare(t, dirOf(b), PrepareOptions{})
	require.True(t, full, "a write after the clean close means the full check")
	require.NotNil(t, m)
	require.Equal(t, RejoinDamaged, m.Stage, "the damage is found")

	// VerifyFull reads an unchanged group whole.
	require.NoError(t, groups[leader].Close())
	require.FileExists(t, filepath.Join(dirOf(leader), cleanShutdownFile))
	m, full = prepare(t, dirOf(leader), PrepareOptions{VerifyFull: true})
	require.Nil(t, m)
	require.True(t, full)
}

// A record for another group, a record of another format, and a new
// snapshot file all mean the full check.
func TestCleanShutdownRecordMustMatch(t *testing.T) {
	dir := writeStore(t, 100, 50)
	require.NoError(t, recordCleanShutdown(dir, 1))
	_, full := prepare(t, dir, PrepareOptions{})
	require.False(t, full)

	require.NoError(t, recordCleanShutdown(dir, 2))
	_, full = prepare(t, dir, PrepareOptions{})
	require.True(t, full, "a record of another group")

	require.NoError(t, recordCleanShutdown(dir, 1))
	extra := filepath.Join(dir, snapshotsDir, "9-999-999")
	require.NoError(t, os.MkdirAll(extra, 0o750))
	require.NoError(t, os.WriteFile(filepath.Join(extra, "meta.json"), []byte("{}"), 0o600))
	m, full := prepare(t, dir, PrepareOptions{})
	require.True(t, full, "a snapshot that was not there at the close")
	require.NotNil(t, m, "and the full check finds it unreadable")
}
