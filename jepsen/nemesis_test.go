package jepsen

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseNemeses(t *testing.T) {
	got, err := ParseNemeses("kill, pause,partition,kill")
	require.NoError(t, err)
	require.Equal(t, []string{NemesisKill, NemesisPause, NemesisPartition}, got)
	got, err = ParseNemeses("none")
	require.NoError(t, err)
	require.Empty(t, got)
	_, err = ParseNemeses("kill,bitrot")
	require.True(t, errors.Is(err, ErrUnknownNemesis))
	got, err = ParseNemeses("corrupt")
	require.NoError(t, err)
	require.Equal(t, []string{NemesisCorrupt}, got)
}

func TestFlipWALBitsDamagesEveryWAL(t *testing.T) {
	dir := t.TempDir()
	orig := make([]byte, 1000)
	for _, name := range []string{"000001.log", "000002.log", "MANIFEST-000001"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), orig, 0o644))
	}
	require.NoError(t, flipWALBits(dir, 12345))
	for name, damaged := range map[string]bool{"000001.log": true, "000002.log": true, "MANIFEST-000001": false} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		require.Equal(t, damaged, !bytes.Equal(b, orig), name)
	}
}

func TestScheduleIsSeededAndFitsTheRun(t *testing.T) {
	const seed = 42
	t.Logf("seed %d", seed)
	d := 60 * time.Second
	a := Schedule(seed, 5, Nemeses, d)
	require.Equal(t, a, Schedule(seed, 5, Nemeses, d), "the same seed replays the schedule")
	require.NotEqual(t, a, Schedule(seed+1, 5, Nemeses, d))
	require.NotEmpty(t, a)
	var prevEnd time.Duration
	for _, f := range a {
		require.GreaterOrEqual(t, f.At, prevEnd+time.Second, "quiet between faults: %v", f)
		require.LessOrEqual(t, f.At+f.For, d)
		require.Contains(t, Nemeses, f.Kind)
		for _, n := range f.Nodes {
			require.True(t, n >= 0 && n < 5)
		}
		if f.Kind == NemesisKill && f.Variant == "majority" {
			require.Len(t, f.Nodes, 3)
		}
		prevEnd = f.At + f.For
	}
	require.Empty(t, Schedule(seed, 3, nil, d))
}

func TestOptionsValidateReportsEverything(t *testing.T) {
	err := Options{Nodes: 2, Duration: -time.Second, Tenants: 1, Partitions: 3, Nemeses: []string{"flood"}, Subscribers: -1}.Validate()
	require.Error(t, err)
	for _, want := range []string{"binary", "output directory", "2 nodes", "negative", "cannot cover", "flood", "-1 subscribers"} {
		require.ErrorContains(t, err, want)
	}
	require.NoError(t, Options{Binary: "herald", OutDir: "out"}.Validate())
}

func TestParseAndScheduleMembership(t *testing.T) {
	got, err := ParseNemeses("kill,membership")
	require.NoError(t, err)
	require.Equal(t, []string{NemesisKill, NemesisMembership}, got)
	const seed = 7
	t.Logf("seed %d", seed)
	faults := Schedule(seed, 3, []string{NemesisMembership}, 60*time.Second)
	require.NotEmpty(t, faults)
	for _, f := range faults {
		require.Equal(t, "membership:wipe", f.String())
		require.Len(t, f.Nodes, 1)
	}
}

// A wiped node's next start, and only that one, passes --rejoin; its data
// directory is gone and its log file kept.
func TestClusterWipePassesRejoinOnTheNextStartOnly(t *testing.T) {
	dir := t.TempDir()
	record := filepath.Join(dir, "args")
	bin := filepath.Join(dir, "fake-herald")
	require.NoError(t, os.WriteFile(bin, []byte("#!/bin/sh\necho \"$@\" >> "+record+"\n"), 0o755))
	c, err := NewCluster(bin, dir, 1, false, nil)
	require.NoError(t, err)
	defer c.Close()
	start := func() {
		require.NoError(t, c.Start(0))
		require.Eventually(t, func() bool { return !c.Running(0) }, 10*time.Second, 10*time.Millisecond)
	}
	start()
	require.NoError(t, os.WriteFile(filepath.Join(c.Nodes[0].DataDir, "state"), nil, 0o644))
	require.NoError(t, c.Wipe(0))
	_, err = os.Stat(c.Nodes[0].DataDir)
	require.True(t, errors.Is(err, os.ErrNotExist), "data dir still there: %v", err)
	_, err = os.Stat(c.Nodes[0].LogPath)
	require.NoError(t, err, "the node's log file is kept")
	start()
	start()
	b, err := os.ReadFile(record)
	require.NoError(t, err)
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	require.Len(t, lines, 3)
	for k, want := range []bool{false, true, false} {
		require.Equal(t, want, bytes.Contains(lines[k], []byte("--rejoin")), "start %d: %s", k, lines[k])
	}
}

func TestScheduleRestartVariants(t *testing.T) {
	got, err := ParseNemeses("restart")
	require.NoError(t, err)
	require.Equal(t, []string{NemesisRestart}, got)
	seen := map[string]bool{}
	for seed := uint64(1); seed < 5; seed++ {
		for _, f := range Schedule(seed, 3, []string{NemesisRestart}, 60*time.Second) {
			require.Contains(t, []string{"all", "rolling"}, f.Variant)
			require.ElementsMatch(t, []int{0, 1, 2}, f.Nodes, "every node is restarted")
			seen[f.Variant] = true
		}
	}
	require.True(t, seen["all"] && seen["rolling"])
}
