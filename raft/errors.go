package raft

import (
	"context"
	"errors"
	"fmt"

	hraft "github.com/hashicorp/raft"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
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
	// ErrEntryTooLarge means an entry is larger than one AppendEntries
	// message may carry (Transport.EntryBytesMax): it could never replicate.
	ErrEntryTooLarge = errors.New("raft: entry too large for one message")
	// ErrFSMBehindSnapshot means an IndexedFSM still reports an applied index
	// below the one recorded in the newest snapshot after that snapshot was
	// restored into it, so starting Raft would silently skip entries.
	ErrFSMBehindSnapshot = errors.New("raft: fsm behind newest snapshot")
	// ErrDamaged means a group's stored Raft state (raft.db or a snapshot)
	// is unreadable or fails verification. The replica must not serve it:
	// it is moved aside and the replica rejoins from its peers (see
	// PrepareRejoin). A *DamageError carries the reason.
	ErrDamaged = errors.New("raft: stored state damaged")
	// ErrNotMember means a RejoinReplica PROMOTE named a server that is not
	// in the group's configuration (it was removed meanwhile): promoting it
	// would add a member nobody placed there, so the leader refuses. It
	// travels as codes.FailedPrecondition with reason NOT_MEMBER.
	ErrNotMember = errors.New("raft: not a member of the group")
	// ErrNotLeader is what a *NotLeaderError matches.
	ErrNotLeader = errors.New("raft: not the leader")
)

// DamageError is the damage VerifyStore found in one group directory. It
// matches ErrDamaged.
type DamageError struct {
	Dir    string
	Reason string
}

// Error implements error.
func (e *DamageError) Error() string {
	return fmt.Sprintf("raft: stored state damaged in %s: %s", e.Dir, e.Reason)
}

// Is reports whether target is ErrDamaged.
func (e *DamageError) Is(target error) bool { return target == ErrDamaged }

// NotLeaderError answers a RejoinReplica sent to a node that does not lead
// the group, with the leader it knows (both fields empty when none). It
// matches ErrNotLeader and travels as codes.FailedPrecondition with an
// ErrorInfo of reason NOT_LEADER.
type NotLeaderError struct {
	GroupID    uint64
	LeaderID   string
	LeaderAddr string
}

// Error implements error.
func (e *NotLeaderError) Error() string {
	if e.LeaderAddr == "" {
		return fmt.Sprintf("raft: group %d: not the leader, and no leader known", e.GroupID)
	}
	return fmt.Sprintf("raft: group %d: not the leader; the leader is %s at %s", e.GroupID, e.LeaderID, e.LeaderAddr)
}

// Is reports whether target is ErrNotLeader.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// ErrorInfo reasons of the RejoinReplica RPC (see raft.proto).
const (
	errorDomain        = "herald.raft.v1"
	reasonNotLeader    = "NOT_LEADER"
	reasonNotMember    = "NOT_MEMBER"
	metadataLeaderID   = "leader_id"
	metadataLeaderAddr = "leader_address"
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
	// NotLeader is set when the peer answered NOT_LEADER; Unwrap returns it.
	NotLeader *NotLeaderError
	// Reason is the ErrorInfo reason the peer attached, if any.
	Reason string
}

// Error implements error.
func (e *RemoteError) Error() string {
	return fmt.Sprintf("raft: %s to %s (group %d): %s: %s", e.Method, e.Target, e.GroupID, e.Code, e.Message)
}

// Unwrap returns the sentinel that the code stands for, or nil.
func (e *RemoteError) Unwrap() error {
	switch {
	case e.NotLeader != nil:
		return e.NotLeader
	case e.Reason == reasonNotMember:
		return ErrNotMember
	}
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
	var notLeader *NotLeaderError
	switch {
	case errors.As(err, &notLeader):
		return withReason(codes.FailedPrecondition, err, reasonNotLeader, map[string]string{
			metadataLeaderID: notLeader.LeaderID, metadataLeaderAddr: notLeader.LeaderAddr})
	case errors.Is(err, ErrNotMember):
		return withReason(codes.FailedPrecondition, err, reasonNotMember, nil)
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
		re := &RemoteError{Method: method, Target: target, GroupID: groupID, Code: s.Code(), Message: s.Message()}
		for _, d := range s.Details() {
			info, ok := d.(*errdetails.ErrorInfo)
			if !ok || info.GetDomain() != errorDomain {
				continue
			}
			re.Reason = info.GetReason()
			if re.Reason == reasonNotLeader {
				re.NotLeader = &NotLeaderError{GroupID: groupID,
					LeaderID: info.GetMetadata()[metadataLeaderID], LeaderAddr: info.GetMetadata()[metadataLeaderAddr]}
			}
		}
		return re
	}
	return fmt.Errorf("raft: %s to %s (group %d): %w", method, target, groupID, err)
}

// withReason is a status of code with an ErrorInfo of this package's domain.
func withReason(code codes.Code, err error, reason string, md map[string]string) error {
	st := status.New(code, err.Error())
	if detailed, derr := st.WithDetails(&errdetails.ErrorInfo{Domain: errorDomain, Reason: reason, Metadata: md}); derr == nil {
		st = detailed
	}
	return st.Err()
}
