package wire

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/heraldlog/herald/client/heraldpb"
)

// Error is a Herald error without a dedicated type: a reason, the gRPC code
// it travels with and the ErrorInfo metadata. errors.Is matches it against
// the sentinel of its reason. An Error with no reason stands for a plain
// gRPC status (for example a transport failure): it matches ErrUnavailable
// when its code is Unavailable, and context.DeadlineExceeded or
// context.Canceled for those codes.
//
// Code may be left zero when Reason is set: the error travels with the
// reason's code from the error table.
type Error struct {
	Reason   heraldpb.ErrorReason
	Code     codes.Code
	Message  string
	Metadata map[string]string
}

// newError makes an Error of reason with the reason's code from the table.
func newError(reason heraldpb.ErrorReason, message string, metadata map[string]string) *Error {
	return &Error{Reason: reason, Code: CodeOf(reason), Message: message, Metadata: metadata}
}

// Error returns the message; a reason-less error names its gRPC code.
func (e *Error) Error() string {
	if e.Reason == heraldpb.ErrorReason_ERROR_REASON_UNSPECIFIED {
		return fmt.Sprintf("herald: %s: %s", e.Code, e.Message)
	}
	if e.Message == "" {
		if s := SentinelOf(e.Reason); s != nil {
			return s.Error()
		}
		return "herald: " + e.Reason.String()
	}
	return e.Message
}

// Is reports whether target is the sentinel of e's reason (see Error).
func (e *Error) Is(target error) bool {
	if e.Reason != heraldpb.ErrorReason_ERROR_REASON_UNSPECIFIED {
		if target != nil && alsoMatches[e.Reason] == target {
			return true
		}
		s := SentinelOf(e.Reason)
		return s != nil && target == s
	}
	switch e.Code {
	case codes.Unavailable:
		return target == ErrUnavailable
	case codes.DeadlineExceeded:
		return target == context.DeadlineExceeded
	case codes.Canceled:
		return target == context.Canceled
	}
	return false
}

// code is the gRPC code e travels with.
func (e *Error) code() codes.Code {
	if e.Code != codes.OK {
		return e.Code
	}
	if e.Reason == heraldpb.ErrorReason_ERROR_REASON_UNSPECIFIED {
		return codes.Unknown
	}
	return CodeOf(e.Reason)
}

// NotLeaderError says the answering node does not lead the group that
// must serve the request. LeaderAddr is the leader's gRPC address when the
// node knows it, else empty. It matches ErrNotLeader.
type NotLeaderError struct {
	LeaderID   string
	LeaderAddr string
}

func (e *NotLeaderError) Error() string {
	if e.LeaderAddr == "" && e.LeaderID == "" {
		return "herald: not leader; leader unknown"
	}
	return fmt.Sprintf("herald: not leader; leader is %s at %s", e.LeaderID, e.LeaderAddr)
}

// Is matches ErrNotLeader.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// OffsetOutOfRangeError says a read asked for an offset (or tenant
// sequence) outside [Low, High): history before Low was truncated, and High
// is the next offset to be assigned. It matches ErrOffsetOutOfRange.
type OffsetOutOfRangeError struct {
	Requested, Low, High uint64
}

func (e *OffsetOutOfRangeError) Error() string {
	return fmt.Sprintf("herald: offset %d out of range [%d, %d)", e.Requested, e.Low, e.High)
}

// Is matches ErrOffsetOutOfRange.
func (e *OffsetOutOfRangeError) Is(target error) bool { return target == ErrOffsetOutOfRange }

// EpochChangedError says a position was taken at Epoch while the partition
// is now at CurrentEpoch (the topic was deleted and recreated), whose
// offsets are [Low, High): the position means nothing now, and where to
// start in the new epoch is the caller's decision. It matches
// ErrEpochChanged.
type EpochChangedError struct {
	Epoch, CurrentEpoch uint64
	Low, High           uint64
}

func (e *EpochChangedError) Error() string {
	return fmt.Sprintf("herald: partition epoch changed: position from epoch %d, partition now at epoch %d (offsets %d..%d); restart from a new position",
		e.Epoch, e.CurrentEpoch, e.Low, e.High)
}

// Is matches ErrEpochChanged.
func (e *EpochChangedError) Is(target error) bool { return target == ErrEpochChanged }

// UnreachableError says that none of Servers answered; Errs holds each
// server's error in the same order. It matches ErrUnavailable, and travels
// as UNAVAILABLE (Status).
type UnreachableError struct {
	Servers []string
	Errs    []error
}

func (e *UnreachableError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "herald: no node answered at %s: ", strings.Join(e.Servers, ","))
	b.WriteString(e.Cause())
	return b.String()
}

// Cause describes why the servers did not answer, without the list of
// addresses when there is one server.
func (e *UnreachableError) Cause() string {
	if len(e.Errs) == 1 {
		return e.Errs[0].Error()
	}
	parts := make([]string, 0, len(e.Errs))
	for i, err := range e.Errs {
		addr := ""
		if i < len(e.Servers) {
			addr = e.Servers[i]
		}
		parts = append(parts, addr+": "+err.Error())
	}
	return strings.Join(parts, "; ")
}

// Is matches ErrUnavailable.
func (e *UnreachableError) Is(target error) bool { return target == ErrUnavailable }

// Unwrap returns the per-server errors.
func (e *UnreachableError) Unwrap() []error { return e.Errs }
