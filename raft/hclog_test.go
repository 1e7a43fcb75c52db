package raft

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"
)

// fakeClock is a settable clock for the limiter.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// jsonLines captures slog JSON output as decoded lines.
type jsonLines struct{ buf bytes.Buffer }

func (j *jsonLines) lines(t *testing.T) []map[string]any {
	var out []map[string]any
	dec := json.NewDecoder(bytes.NewReader(j.buf.Bytes()))
	for dec.More() {
		var m map[string]any
		require.NoError(t, dec.Decode(&m))
		out = append(out, m)
	}
	return out
}

func newCapturedHCLogger(level slog.Level) (*hclogAdapter, *jsonLines, *fakeClock) {
	out := &jsonLines{}
	clock := &fakeClock{now: time.Unix(1000, 0)}
	l := slog.New(slog.NewJSONHandler(&out.buf, &slog.HandlerOptions{Level: level, AddSource: true}))
	return newHCLogger(l, "raft", newLogLimiter(logRepeatWindow, 8, clock.Now)), out, clock
}

func TestHCLoggerSuppressesRepeatsAndCountsThem(t *testing.T) {
	log, out, clock := newCapturedHCLogger(slog.LevelInfo)
	peer := "{Voter n2 127.0.0.1:2}"
	for range 3 {
		log.Error("failed to heartbeat to", "peer", peer, "error", errors.New("connection refused"))
	}
	log.Error("failed to heartbeat to", "peer", "{Voter n3 127.0.0.1:3}") // another peer: its own line
	clock.Advance(logRepeatWindow)
	log.Error("failed to heartbeat to", "peer", peer)

	lines := out.lines(t)
	require.Len(t, lines, 3)
	require.Equal(t, "ERROR", lines[0]["level"])
	require.Equal(t, "raft", lines[0]["logger"])
	require.Equal(t, "connection refused", lines[0]["error"])
	require.NotContains(t, lines[0], "suppressed")
	require.Equal(t, "{Voter n3 127.0.0.1:3}", lines[1]["peer"])
	require.Equal(t, 2.0, lines[2]["suppressed"])
	source := lines[0]["source"].(map[string]any)
	require.Contains(t, source["file"], "hclog_test.go", "source must be the caller, not the adapter")
}

func TestHCLoggerFoldsGroupsForWarningsNotForInfo(t *testing.T) {
	log, out, _ := newCapturedHCLogger(slog.LevelInfo)
	g1, g2 := log.With("group", 1), log.With("group", 2)
	g1.Warn("failed to contact", "peer", "p")
	g2.Warn("failed to contact", "peer", "p") // same dead peer, other group: folded
	g1.Info("entering follower state")
	g2.Info("entering follower state") // about another group: kept
	lines := out.lines(t)
	require.Len(t, lines, 3)
	require.Equal(t, 1.0, lines[0]["group"])
	require.Equal(t, 1.0, lines[1]["group"])
	require.Equal(t, 2.0, lines[2]["group"])
}

func TestHCLoggerLevelsNamesAndValues(t *testing.T) {
	log, out, _ := newCapturedHCLogger(slog.LevelDebug - 4)
	require.Equal(t, hclog.Info, log.GetLevel())
	require.False(t, log.IsDebug(), "INFO by default")
	log.Debug("hidden")
	log.SetLevel(hclog.Trace)
	require.True(t, log.IsTrace())
	named := log.Named("snapshot").With("k", hclog.Fmt("%d/%d", 1, 2))
	named.Trace("shown", "hex", hclog.Hex(255), "odd")
	require.Equal(t, "raft.snapshot", named.Name())
	require.Equal(t, "other", named.ResetNamed("other").Name())
	require.Equal(t, []any{"k", hclog.Fmt("%d/%d", 1, 2)}, named.ImpliedArgs())
	named.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Warn}).Print("from std log")
	log.SetLevel(hclog.Off)
	log.Error("off")

	lines := out.lines(t)
	require.Len(t, lines, 2)
	require.Equal(t, "shown", lines[0]["msg"])
	require.Equal(t, "DEBUG-4", lines[0]["level"])
	require.Equal(t, "raft.snapshot", lines[0]["logger"])
	require.Equal(t, "1/2", lines[0]["k"])
	require.Equal(t, "0xff", lines[0]["hex"])
	require.Equal(t, "odd", lines[0][hclog.MissingKey])
	require.Equal(t, "from std log", lines[1]["msg"])
	require.Equal(t, "WARN", lines[1]["level"])
}

func TestHCLoggerRespectsSlogHandlerLevel(t *testing.T) {
	log, out, _ := newCapturedHCLogger(slog.LevelWarn)
	log.Info("dropped by the handler")
	log.Warn("kept")
	require.False(t, log.IsInfo())
	require.Len(t, out.lines(t), 1)
}

func TestLogLimiterStaysBounded(t *testing.T) {
	clock := &fakeClock{now: time.Unix(0, 0)}
	l := newLogLimiter(time.Second, 4, clock.Now)
	for i := range 100 {
		emit, _ := l.allow(fmt.Sprint("key-", i))
		require.True(t, emit, "a new key is always written")
		l.mu.Lock()
		require.LessOrEqual(t, len(l.mu.seen), 4)
		l.mu.Unlock()
	}
	emit, _ := l.allow("key-99")
	require.False(t, emit, "a remembered key within its window is suppressed")
	clock.Advance(time.Second)
	emit, suppressed := l.allow("key-99")
	require.True(t, emit)
	require.Equal(t, 1, suppressed)
}
