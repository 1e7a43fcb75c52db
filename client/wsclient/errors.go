package wsclient

import (
	"errors"
	"strconv"

	"google.golang.org/grpc/codes"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// Errors of the package. Errors the nodes send are the wire package's
// (wire.ErrTopicNotFound, *wire.OffsetOutOfRangeError, ...), as the gRPC
// SDK returns them, so errors.Is and errors.As work the same over both.
var (
	// ErrClosed: the Client or the Subscription was closed.
	ErrClosed = errors.New("wsclient: closed")
	// ErrProtocol: a node sent a frame that breaks the protocol (an event
	// behind the subscription's position, a frame that does not decode).
	// A subscription ends with it rather than deliver a gap or a repeat.
	ErrProtocol = errors.New("wsclient: protocol violation")
	// ErrRetriesExhausted: a subscription's connection attempts failed
	// Config.MaxRetries times in a row after the first; the error wraps
	// the last attempt's too.
	ErrRetriesExhausted = errors.New("wsclient: connection attempts exhausted")
)

// EpochChangedError ends a subscription whose position belongs to an
// earlier incarnation of the partition (the topic was deleted and made
// again): Epoch is the subscription's, CurrentEpoch the partition's, and
// [Low, High) its offsets now; the same type as the gRPC SDK's
// (wire.EpochChangedError). It matches wire.ErrEpochChanged.
type EpochChangedError = wire.EpochChangedError

// errorOf turns an error frame into the Go error the gRPC SDK would
// return for the same failure.
func errorOf(f *wire.WSError) error {
	num := func(p *uint64, key string) uint64 {
		if p != nil {
			return *p
		}
		v, _ := strconv.ParseUint(f.Metadata[key], 10, 64)
		return v
	}
	if v, ok := heraldpb.ErrorReason_value[f.Code]; ok && v != 0 {
		reason := heraldpb.ErrorReason(v)
		switch reason {
		case heraldpb.ErrorReason_OFFSET_OUT_OF_RANGE:
			return &wire.OffsetOutOfRangeError{Requested: num(nil, wire.MetadataRequested),
				Low: num(f.LowWatermark, wire.MetadataLowWatermark), High: num(f.HighWatermark, wire.MetadataHighWatermark)}
		case heraldpb.ErrorReason_EPOCH_CHANGED:
			return &EpochChangedError{Epoch: num(f.Epoch, wire.MetadataEpoch), CurrentEpoch: num(f.CurrentEpoch, wire.MetadataCurrentEpoch),
				Low: num(f.LowWatermark, wire.MetadataLowWatermark), High: num(f.HighWatermark, wire.MetadataHighWatermark)}
		case heraldpb.ErrorReason_NOT_LEADER:
			return &wire.NotLeaderError{LeaderID: f.Metadata[wire.MetadataLeaderID], LeaderAddr: f.Metadata[wire.MetadataLeaderAddr]}
		}
		return &wire.Error{Reason: reason, Code: wire.CodeOf(reason), Message: f.Message, Metadata: f.Metadata}
	}
	// No Herald reason: the code is a gRPC code in upper snake case; a
	// code newer than this package is Unknown.
	return &wire.Error{Code: wire.WSCodeFromName(f.Code), Message: f.Message, Metadata: f.Metadata}
}

// final reports whether a subscription error ends the subscription, rather
// than move it to another node: what another node would answer the same
// (a missing topic, a position out of range, a changed epoch, a bad
// request, corruption). Leadership, availability and overload are
// retried elsewhere.
func final(err error) bool {
	if errors.Is(err, ErrProtocol) || errors.Is(err, ErrClosed) || errors.Is(err, ErrRetriesExhausted) {
		return true
	}
	if errors.Is(err, wire.ErrNotLeader) {
		return false
	}
	switch wire.Code(err) {
	case codes.InvalidArgument, codes.NotFound, codes.OutOfRange, codes.FailedPrecondition, codes.DataLoss,
		codes.PermissionDenied, codes.Unauthenticated, codes.Unimplemented, codes.AlreadyExists:
		return true
	}
	return false
}
