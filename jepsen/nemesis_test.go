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
	err := Options{Nodes: 2, Duration: -time.Second, Tenants: 1, Partitions: 3, Nemeses: []string{"flood"}}.Validate()
	require.Error(t, err)
	for _, want := range []string{"binary", "output directory", "2 nodes", "negative", "cannot cover", "flood"} {
		require.ErrorContains(t, err, want)
	}
	require.NoError(t, Options{Binary: "herald", OutDir: "out"}.Validate())
}
