package raft

import (
	"context"
	"errors"
	"fmt"

	hraft "github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinel errors. Callers match them with errors.Is; they are wrapped with
// context (group, peer) where they are returned.
var (
	// ErrInvalidOptions marks every problem reported by MuxOptions.Validate
	// and GroupConfig.Validate.
	ErrInvalidOptions = errors.New("raft: invalid options")
	// ErrMuxClosed is returned by a Mux, and by transports whose Mux, was closed.
	ErrMuxClosed = errors.New("raft: mux closed")
	// ErrTransportClosed is returned by a Transport after Close, and fails the
	// RPCs it was still serving or sending.
	ErrTransportClosed = errors.New("raft: transport closed")
	// ErrGroupRegistered is returned by Mux.Transport for a group that already
	// has an open Transport on this Mux.
	ErrGroupRegistered = errors.New("raft: group already registered")
	// ErrUnknownGroup means the receiving node hosts no open transport for the
	// group named in the message. It travels as codes.NotFound.
	ErrUnknownGroup = errors.New("raft: unknown group")
	// ErrPipelineClosed fails the in-flight appends of a closed pipeline.
	ErrPipelineClosed = errors.New("raft: pipeline closed")
	// ErrSnapshotSize means an InstallSnapshot stream carried fewer or more
	// data bytes than the request's Size. It travels as codes.OutOfRange.
	ErrSnapshotSize = errors.New("raft: snapshot size mismatch")
	// ErrProtocol means a peer sent a message this transport cannot accept
	// (a missing field, a stream naming two groups). It travels as
	// codes.InvalidArgument.
	ErrProtocol = errors.New("raft: protocol violation")
	// ErrFSMBehindSnapshot means an IndexedFSM still reports an applied index
	// below the newest snapshot after that snapshot was restored into it, so
	// starting Raft would silently skip entries.
	ErrFSMBehindSnapshot = errors.New("raft: fsm behind newest snapshot")
)

// RemoteError is the failure of one outgoing RPC as gRPC reported it: a
// status from the peer (or from the local gRPC client, e.g. Unavailable when
// the peer cannot be dialled, DeadlineExceeded when the per-call timeout ran
// out). Unwrap maps the codes this transport assigns back to its sentinels, so
// errors.Is(err, ErrUnknownGroup) works across the wire.
type RemoteError struct {
	Method  string              // RPC name, e.g. "AppendEntries"
	Target  hraft.ServerAddress // peer address
	GroupID uint64
	Code    codes.Code
	Message string
}

// Error implements error.
func (e *RemoteError) Error() string {
	return fmt.Sprintf("raft: %s to %s (group %d): %s: %s", e.Method, e.Target, e.GroupID, e.Code, e.Message)
}

// Unwrap returns the sentinel that the code stands for, or nil.
func (e *RemoteError) Unwrap() error {
	switch e.Code {
	case codes.NotFound:
		return ErrUnknownGroup
	case codes.OutOfRange:
		return ErrSnapshotSize
	case codes.InvalidArgument:
		return ErrProtocol
	default:
		return nil
	}
}

// toStatus is the one place that maps a receive-side error to the gRPC status
// returned to the sending peer. Errors produced by hashicorp/raft itself (an
// RPC it answered with an error) travel as codes.Unknown with their text.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Unknown
	switch {
	case errors.Is(err, ErrUnknownGroup):
		code = codes.NotFound
	case errors.Is(err, ErrTransportClosed), errors.Is(err, ErrMuxClosed):
		code = codes.Unavailable
	case errors.Is(err, ErrSnapshotSize):
		code = codes.OutOfRange
	case errors.Is(err, ErrProtocol):
		code = codes.InvalidArgument
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	return status.Error(code, err.Error())
}

// fromStatus turns the error of an outgoing call into a *RemoteError (for a
// gRPC status) or wraps it with the call's context.
func fromStatus(method string, target hraft.ServerAddress, groupID uint64, err error) error {
	if err == nil {
		return nil
	}
	if s, ok := status.FromError(err); ok {
		return &RemoteError{Method: method, Target: target, GroupID: groupID, Code: s.Code(), Message: s.Message()}
	}
	return fmt.Errorf("raft: %s to %s (group %d): %w", method, target, groupID, err)
}
