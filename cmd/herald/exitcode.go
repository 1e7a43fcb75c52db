package main

import (
	"errors"

	"github.com/heraldlog/herald/client"
)

// Exit codes. Scripts rely on them: never renumber.
const (
	exitOK = 0
	// exitFailure: the command ran and failed (unknown topic, payload too
	// large, a node refused the request, ...).
	exitFailure = 1
	// exitUsage: bad flags or arguments; nothing was sent.
	exitUsage = 2
	// exitUnavailable: no node could be reached.
	exitUnavailable = 3
	// exitUnknownOutcome: a write may or may not have been applied.
	exitUnknownOutcome = 4
)

// usageError marks an error in the command line itself.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// exitCode maps the error a command returned to the process exit code.
func exitCode(err error) int {
	var usage usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &usage):
		return exitUsage
	case errors.Is(err, client.ErrUnknownOutcome):
		return exitUnknownOutcome
	case errors.Is(err, client.ErrUnavailable):
		return exitUnavailable
	default:
		return exitFailure
	}
}
