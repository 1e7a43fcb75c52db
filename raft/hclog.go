package raft

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

const (
	// logRepeatWindow is how often one message may be logged; repeats within
	// the window are counted and reported as "suppressed" on the next line.
	logRepeatWindow = 5 * time.Second
	// logKeysMax bounds the messages a limiter remembers.
	logKeysMax = 4096
)

var _ hclog.Logger = (*hclogAdapter)(nil)

// NewHCLogger returns an hclog.Logger (what hashicorp/raft logs to) that
// writes to l. Lines carry the logger's name under "logger", then its With
// arguments, then the call's. The level starts at INFO (SetLevel changes it
// for the logger and all loggers derived from it) and l's handler may filter
// further.
//
// Rate limiting, so that a dead peer does not flood the log: an identical
// line is written at most once per 5 s; the next one written says how many
// were dropped ("suppressed"). For WARN and ERROR, identical means same
// logger name, level, message and "peer" argument, whatever the With
// arguments: every group of a node reports the same dead peer with the same
// words, and one line per 5 s for the node says it. For lower levels the With
// arguments (the group) are part of the key, since those lines are about one
// group. Derived loggers share the limiter; loggers of one Mux's groups share
// one too (see OpenGroup).
func NewHCLogger(l *slog.Logger, name string) hclog.Logger {
	return newHCLogger(l, name, newLogLimiter(logRepeatWindow, logKeysMax, time.Now))
}

func newHCLogger(l *slog.Logger, name string, limiter *logLimiter) *hclogAdapter {
	if l == nil {
		l = slog.Default()
	}
	level := new(atomic.Int32)
	level.Store(int32(hclog.Info))
	return &hclogAdapter{logger: l, name: name, level: level, limiter: limiter}
}

// hclogAdapter implements hclog.Logger over slog. It is immutable but for
// the shared level and limiter, so safe for concurrent use.
type hclogAdapter struct {
	logger  *slog.Logger
	name    string
	implied []any
	level   *atomic.Int32 // hclog.Level, shared with derived loggers
	limiter *logLimiter
}

func slogLevel(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (a *hclogAdapter) enabled(level hclog.Level) bool {
	current := hclog.Level(a.level.Load())
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	if level == hclog.Off || current == hclog.Off || level < current {
		return false
	}
	return a.logger.Enabled(context.Background(), slogLevel(level))
}

// log writes one line; depth is the number of frames between the caller of
// the public method and log (for the source location).
func (a *hclogAdapter) log(depth int, level hclog.Level, msg string, args []any) {
	if !a.enabled(level) {
		return
	}
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	emit, suppressed := a.limiter.allow(a.limitKey(level, msg, args))
	if !emit {
		return
	}
	var pcs [1]uintptr
	runtime.Callers(depth+2, pcs[:]) // skip runtime.Callers and log
	r := slog.NewRecord(time.Now(), slogLevel(level), msg, pcs[0])
	if a.name != "" {
		r.AddAttrs(slog.String("logger", a.name))
	}
	r.Add(convertHCLogArgs(a.implied)...)
	r.Add(convertHCLogArgs(args)...)
	if suppressed > 0 {
		r.AddAttrs(slog.Int("suppressed", suppressed))
	}
	_ = a.logger.Handler().Handle(context.Background(), r)
}

// limitKey identifies "the same line" for the limiter (see NewHCLogger).
func (a *hclogAdapter) limitKey(level hclog.Level, msg string, args []any) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\x00%d\x00%s", a.name, level, msg)
	for i := 0; i+1 < len(args); i += 2 {
		if k, ok := args[i].(string); ok && k == "peer" {
			fmt.Fprintf(&b, "\x00peer=%v", args[i+1])
		}
	}
	if level < hclog.Warn {
		for _, v := range a.implied {
			fmt.Fprintf(&b, "\x00%v", v)
		}
	}
	return b.String()
}

// convertHCLogArgs turns hclog's key/value list into slog arguments,
// rendering hclog's formatting wrappers and naming a trailing lone value.
func convertHCLogArgs(args []any) []any {
	if len(args) == 0 {
		return nil
	}
	out := make([]any, 0, len(args)+1)
	for i := 0; i < len(args); i += 2 {
		if i+1 == len(args) {
			out = append(out, hclog.MissingKey, renderHCLogValue(args[i]))
			break
		}
		key, ok := args[i].(string)
		if !ok {
			key = fmt.Sprint(args[i])
		}
		out = append(out, key, renderHCLogValue(args[i+1]))
	}
	return out
}

func renderHCLogValue(v any) any {
	switch v := v.(type) {
	case hclog.Format:
		if len(v) == 0 {
			return ""
		}
		if f, ok := v[0].(string); ok {
			return fmt.Sprintf(f, v[1:]...)
		}
		return fmt.Sprint(v...)
	case hclog.Hex:
		return fmt.Sprintf("0x%x", int(v))
	case hclog.Octal:
		return fmt.Sprintf("0%o", int(v))
	case hclog.Binary:
		return fmt.Sprintf("0b%b", int(v))
	case hclog.Quote:
		return fmt.Sprintf("%q", string(v))
	default:
		return v
	}
}

// Log writes at level.
func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) { a.log(1, level, msg, args) }

// Trace writes at TRACE (slog DEBUG-4).
func (a *hclogAdapter) Trace(msg string, args ...any) { a.log(1, hclog.Trace, msg, args) }

// Debug writes at DEBUG.
func (a *hclogAdapter) Debug(msg string, args ...any) { a.log(1, hclog.Debug, msg, args) }

// Info writes at INFO.
func (a *hclogAdapter) Info(msg string, args ...any) { a.log(1, hclog.Info, msg, args) }

// Warn writes at WARN.
func (a *hclogAdapter) Warn(msg string, args ...any) { a.log(1, hclog.Warn, msg, args) }

// Error writes at ERROR.
func (a *hclogAdapter) Error(msg string, args ...any) { a.log(1, hclog.Error, msg, args) }

// IsTrace reports whether TRACE lines are written.
func (a *hclogAdapter) IsTrace() bool { return a.enabled(hclog.Trace) }

// IsDebug reports whether DEBUG lines are written.
func (a *hclogAdapter) IsDebug() bool { return a.enabled(hclog.Debug) }

// IsInfo reports whether INFO lines are written.
func (a *hclogAdapter) IsInfo() bool { return a.enabled(hclog.Info) }

// IsWarn reports whether WARN lines are written.
func (a *hclogAdapter) IsWarn() bool { return a.enabled(hclog.Warn) }

// IsError reports whether ERROR lines are written.
func (a *hclogAdapter) IsError() bool { return a.enabled(hclog.Error) }

// ImpliedArgs returns the With arguments.
func (a *hclogAdapter) ImpliedArgs() []any { return append([]any(nil), a.implied...) }

// With returns a logger that adds args to every line.
func (a *hclogAdapter) With(args ...any) hclog.Logger {
	c := *a
	c.implied = append(append([]any(nil), a.implied...), args...)
	return &c
}

// Name returns the logger's name.
func (a *hclogAdapter) Name() string { return a.name }

// Named returns a logger named "<name>.<name>".
func (a *hclogAdapter) Named(name string) hclog.Logger {
	c := *a
	if c.name != "" {
		c.name = c.name + "." + name
	} else {
		c.name = name
	}
	return &c
}

// ResetNamed returns a logger named name.
func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *a
	c.name = name
	return &c
}

// SetLevel sets the level of this logger and those derived from it.
func (a *hclogAdapter) SetLevel(level hclog.Level) { a.level.Store(int32(level)) }

// GetLevel returns the level.
func (a *hclogAdapter) GetLevel() hclog.Level { return hclog.Level(a.level.Load()) }

// StandardLogger returns a *log.Logger writing through this logger.
func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

// StandardWriter returns a writer that logs each write as one line, at
// opts.ForceLevel when set, else INFO.
func (a *hclogAdapter) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	level := hclog.Info
	if opts != nil && opts.ForceLevel != hclog.NoLevel {
		level = opts.ForceLevel
	}
	return &hclogWriter{logger: a, level: level}
}

type hclogWriter struct {
	logger *hclogAdapter
	level  hclog.Level
}

func (w *hclogWriter) Write(p []byte) (int, error) {
	w.logger.log(1, w.level, string(bytes.TrimRight(p, "\n")), nil)
	return len(p), nil
}

// logLimiter decides which lines are written: each key at most once per
// window. It remembers at most keysMax keys; when full it forgets the keys
// whose window has passed, and if none has, all of them (their suppressed
// counts are lost, never the bound). Safe for concurrent use.
type logLimiter struct {
	window  time.Duration
	keysMax int
	now     func() time.Time

	mu struct {
		sync.Mutex
		seen map[string]*logLimitEntry
	}
}

type logLimitEntry struct {
	written    time.Time // when the key was last written
	suppressed int       // repeats dropped since then
}

func newLogLimiter(window time.Duration, keysMax int, now func() time.Time) *logLimiter {
	l := &logLimiter{window: window, keysMax: keysMax, now: now}
	l.mu.seen = make(map[string]*logLimitEntry)
	return l
}

// allow reports whether a line with key may be written now and, if so, how
// many were suppressed since the last one written.
func (l *logLimiter) allow(key string) (emit bool, suppressed int) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.mu.seen[key]; ok {
		if now.Sub(e.written) < l.window {
			e.suppressed++
			return false, 0
		}
		suppressed = e.suppressed
		e.written, e.suppressed = now, 0
		return true, suppressed
	}
	if len(l.mu.seen) >= l.keysMax {
		l.forgetLocked(now)
	}
	l.mu.seen[key] = &logLimitEntry{written: now}
	return true, 0
}

// forgetLocked makes room in a full map. l.mu must be held.
func (l *logLimiter) forgetLocked(now time.Time) {
	for k, e := range l.mu.seen {
		if now.Sub(e.written) >= l.window {
			delete(l.mu.seen, k)
		}
	}
	if len(l.mu.seen) >= l.keysMax {
		clear(l.mu.seen)
	}
}
