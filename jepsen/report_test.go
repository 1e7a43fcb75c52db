package jepsen

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRecorderWritesReadableHistory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.jsonl")
	var buf bytes.Buffer
	rec := NewRecorder(&buf)
	for _, op := range clean().history() {
		rec.Record(op)
	}
	require.NoError(t, rec.Flush())
	require.NoError(t, writeFile(path, buf.Bytes()))
	got, err := ReadHistory(path)
	require.NoError(t, err)
	require.Equal(t, rec.History(), got)
	require.Equal(t, Check(clean().history()), Check(got))
}

func TestReportShadesFaults(t *testing.T) {
	h := clean().history()
	h = append(h, Op{Index: len(h), Type: TypeInfo, F: FFault, Time: ms(20), End: ms(60), Fault: "kill:one", Targets: "n2"})
	vs := Check(h)
	var b strings.Builder
	require.NoError(t, WriteReport(&b, Report{Seed: 7, Nodes: 3, Duration: "1s", Summary: Summarize(h, vs), Verdicts: vs}, h))
	out := b.String()
	require.Contains(t, out, "<svg")
	require.Contains(t, out, "<rect")
	require.Contains(t, out, "kill:one")
	require.Contains(t, out, CheckLostWrite)
	require.Equal(t, 2, strings.Count(out, "<svg"))
}

func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o644) }
