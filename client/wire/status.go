package wire

import (
	"context"
	"errors"
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heraldlog/herald/client/heraldpb"
)

// This file is the one place where Herald errors meet gRPC statuses. A
// node converts every error it returns with Status (in an interceptor);
// the SDK, and a node calling a peer, convert every RPC error back with
// FromStatus, so errors.Is and errors.As work the same on both sides of the
// wire.
//
// Wire format (herald.v1): a gRPC status whose details hold one
// google.rpc.ErrorInfo with Domain ErrorDomain, Reason the name of a
// heraldpb.ErrorReason and the metadata keys documented in herald.proto.
// The code is the reason's, from the error table (table.go).

// Status converts err to the gRPC status it travels as. Herald errors
// (typed, or sentinels, possibly wrapped) get their code and an ErrorInfo
// detail; context errors become DeadlineExceeded or Canceled; an error that
// already carries a gRPC status keeps it; anything else is Internal. The
// message is err.Error(), so wrapping context reaches the caller.
//
// A nil err gives an OK status.
func Status(err error) *status.Status {
	if err == nil {
		return status.New(codes.OK, "")
	}
	msg := err.Error()
	var (
		notLeader  *NotLeaderError
		outOfRange *OffsetOutOfRangeError
		epoch      *EpochChangedError
		herr       *Error
		unreach    *UnreachableError
	)
	switch {
	case errors.As(err, &notLeader):
		return withInfo(msg, heraldpb.ErrorReason_NOT_LEADER, map[string]string{
			MetadataLeaderID:   notLeader.LeaderID,
			MetadataLeaderAddr: notLeader.LeaderAddr,
		})
	case errors.As(err, &outOfRange):
		return withInfo(msg, heraldpb.ErrorReason_OFFSET_OUT_OF_RANGE, map[string]string{
			MetadataRequested:     strconv.FormatUint(outOfRange.Requested, 10),
			MetadataLowWatermark:  strconv.FormatUint(outOfRange.Low, 10),
			MetadataHighWatermark: strconv.FormatUint(outOfRange.High, 10),
		})
	case errors.As(err, &epoch):
		return withInfo(msg, heraldpb.ErrorReason_EPOCH_CHANGED, map[string]string{
			MetadataEpoch:         strconv.FormatUint(epoch.Epoch, 10),
			MetadataCurrentEpoch:  strconv.FormatUint(epoch.CurrentEpoch, 10),
			MetadataLowWatermark:  strconv.FormatUint(epoch.Low, 10),
			MetadataHighWatermark: strconv.FormatUint(epoch.High, 10),
		})
	case errors.As(err, &herr):
		if herr.Reason == heraldpb.ErrorReason_ERROR_REASON_UNSPECIFIED {
			return status.New(herr.code(), msg)
		}
		return withCodeAndInfo(herr.code(), msg, herr.Reason, herr.Metadata)
	case errors.As(err, &unreach):
		return status.New(codes.Unavailable, msg)
	}
	for _, row := range reasonTable {
		if errors.Is(err, row.sentinel) {
			return withInfo(msg, row.reason, nil)
		}
	}
	switch {
	case errors.Is(err, ErrUnavailable):
		return status.New(codes.Unavailable, msg)
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, msg)
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, msg)
	}
	if st, ok := status.FromError(err); ok {
		return st
	}
	return status.New(codes.Internal, msg)
}

// withInfo builds a status of reason's code carrying an ErrorInfo detail.
func withInfo(msg string, reason heraldpb.ErrorReason, md map[string]string) *status.Status {
	return withCodeAndInfo(CodeOf(reason), msg, reason, md)
}

// withCodeAndInfo builds a status carrying an ErrorInfo detail. The code is
// given apart from the reason for an Error decoded from a peer, which keeps
// the code it arrived with.
func withCodeAndInfo(code codes.Code, msg string, reason heraldpb.ErrorReason, md map[string]string) *status.Status {
	st := status.New(code, msg)
	detailed, err := st.WithDetails(&errdetails.ErrorInfo{Domain: ErrorDomain, Reason: reason.String(), Metadata: md})
	if err != nil {
		// Only a detail that cannot be marshalled fails; ErrorInfo always can.
		return st
	}
	return detailed
}

// FromStatus converts an error returned by a Herald RPC into the typed
// errors: NotLeaderError, OffsetOutOfRangeError, EpochChangedError or Error. A status without
// a Herald ErrorInfo becomes an Error without a reason (so a transport-level
// Unavailable matches ErrUnavailable). An error that is not a gRPC status
// is returned unchanged; nil gives nil.
func FromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	if st.Code() == codes.OK {
		return nil
	}
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetDomain() != ErrorDomain {
			continue
		}
		value, known := heraldpb.ErrorReason_value[info.GetReason()]
		if !known {
			break // a reason newer than this package: keep the code only
		}
		reason := heraldpb.ErrorReason(value)
		md := info.GetMetadata()
		switch reason {
		case heraldpb.ErrorReason_NOT_LEADER:
			return &NotLeaderError{LeaderID: md[MetadataLeaderID], LeaderAddr: md[MetadataLeaderAddr]}
		case heraldpb.ErrorReason_OFFSET_OUT_OF_RANGE:
			return &OffsetOutOfRangeError{
				Requested: parseUint(md[MetadataRequested]),
				Low:       parseUint(md[MetadataLowWatermark]),
				High:      parseUint(md[MetadataHighWatermark]),
			}
		case heraldpb.ErrorReason_EPOCH_CHANGED:
			return &EpochChangedError{
				Epoch:        parseUint(md[MetadataEpoch]),
				CurrentEpoch: parseUint(md[MetadataCurrentEpoch]),
				Low:          parseUint(md[MetadataLowWatermark]),
				High:         parseUint(md[MetadataHighWatermark]),
			}
		}
		return &Error{Reason: reason, Code: st.Code(), Message: st.Message(), Metadata: md}
	}
	return &Error{Code: st.Code(), Message: st.Message()}
}

// parseUint reads a metadata number; a missing or malformed one is 0.
func parseUint(s string) uint64 {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// Code returns the gRPC code err travels with (see Status).
func Code(err error) codes.Code {
	return Status(err).Code()
}

// Reason returns the Herald reason of err, or UNSPECIFIED when err carries
// none.
func Reason(err error) heraldpb.ErrorReason {
	var (
		notLeader  *NotLeaderError
		outOfRange *OffsetOutOfRangeError
		epoch      *EpochChangedError
		herr       *Error
	)
	switch {
	case errors.As(err, &notLeader):
		return heraldpb.ErrorReason_NOT_LEADER
	case errors.As(err, &outOfRange):
		return heraldpb.ErrorReason_OFFSET_OUT_OF_RANGE
	case errors.As(err, &epoch):
		return heraldpb.ErrorReason_EPOCH_CHANGED
	case errors.As(err, &herr):
		return herr.Reason
	}
	return heraldpb.ErrorReason_ERROR_REASON_UNSPECIFIED
}
