package jepsen

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/server/proccluster"
)

// TestRunUnderFaults runs a short schedule of kills, pauses and
// partitions against three real nodes, with the flooding tenant beside the
// other workloads, and asserts every checker passes and the flood's was
// not skipped.
func TestRunUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster for about 30 s")
	}
	const seed = 3 // kill:majority, partition:halves, pause:one within 20 s
	bin := proccluster.TestBinary(t)
	out := t.TempDir()
	var progress bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := Run(ctx, Options{
		Binary: bin, OutDir: out, Nodes: 3, Duration: 20 * time.Second, Seed: seed,
		Nemeses: []string{NemesisKill, NemesisPause, NemesisPartition}, Mixed: true, Flood: true, Progress: &progress,
	})
	t.Logf("seed %d\n%s", seed, progress.String())
	require.NoError(t, err)
	var verdicts bytes.Buffer
	WriteVerdicts(&verdicts, res.Verdicts)
	t.Logf("%s%s", verdicts.String(), res.Summary)
	require.True(t, res.OK(), "failing: %v", res.Summary.Failing)
	require.Positive(t, res.Summary.Acknowledged)
	require.Positive(t, res.Summary.Faults, "schedule %v", res.Schedule)
	for _, v := range res.Verdicts {
		if v.Name == CheckFlood {
			require.Equal(t, StatusPass, v.Status, v.Note)
		}
	}
	for _, f := range []string{"history.jsonl", "verdict.json", "report.html"} {
		st, err := os.Stat(filepath.Join(out, f))
		require.NoError(t, err)
		require.Positive(t, st.Size())
	}
	h, err := ReadHistory(filepath.Join(out, "history.jsonl"))
	require.NoError(t, err)
	require.Equal(t, len(res.History), len(h))
}

// TestRunUnderFaultsTLS is a short run with every node and client over
// TLS (issue 14's "the jepsen suite passes with TLS on"): kills and
// partitions, the certificates made in the output directory.
func TestRunUnderFaultsTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster for about 30 s")
	}
	const seed = 3
	bin := proccluster.TestBinary(t)
	out := t.TempDir()
	var progress bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := Run(ctx, Options{
		Binary: bin, OutDir: out, Nodes: 3, Duration: 15 * time.Second, Seed: seed, TLS: true,
		Nemeses: []string{NemesisKill, NemesisPartition}, Progress: &progress,
	})
	t.Logf("seed %d\n%s", seed, progress.String())
	require.NoError(t, err)
	var verdicts bytes.Buffer
	WriteVerdicts(&verdicts, res.Verdicts)
	t.Logf("%s%s", verdicts.String(), res.Summary)
	require.True(t, res.OK(), "failing: %v", res.Summary.Failing)
	require.Positive(t, res.Summary.Acknowledged)
	require.Contains(t, progress.String(), "TLS on")
	require.FileExists(t, filepath.Join(out, "data", "tls", "ca.crt"))
}
