package log

import (
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"
)

// pebbleLogger adapts a *slog.Logger to pebble.Logger.
type pebbleLogger struct {
	logger *slog.Logger
}

var _ pebble.Logger = pebbleLogger{}

// Infof implements pebble.Logger.
func (l pebbleLogger) Infof(format string, args ...any) {
	l.logger.Info(fmt.Sprintf(format, args...))
}

// Errorf implements pebble.Logger.
func (l pebbleLogger) Errorf(format string, args ...any) {
	l.logger.Error(fmt.Sprintf(format, args...))
}

// Fatalf implements pebble.Logger. Pebble expects Fatalf not to return; it
// logs at error level and panics so the stack reaches the operator.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.logger.Error(msg, slog.Bool("fatal", true))
	panic("pebble: " + msg)
}
