package client

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// overTheWire sends st through its marshalled protobuf form, as gRPC does.
func overTheWire(t *testing.T, st *status.Status) error {
	b, err := proto.Marshal(st.Proto())
	require.NoError(t, err)
	var decoded spb.Status
	require.NoError(t, proto.Unmarshal(b, &decoded))
	return status.FromProto(&decoded).Err()
}

func TestErrorRoundTrip(t *testing.T) {
	sentinels := []error{
		ErrTopicNotFound, ErrTopicExists, ErrInvalidArgument, ErrPayloadTooLarge, ErrNoLeader, ErrUnavailable,
		ErrUnknownOutcome, ErrPartitionNotFound, ErrCorruption, ErrOffsetOutOfRange, ErrNotLeader,
		ErrTenantNotFound, ErrTenantExists, ErrSchemaVersionNotAllowed, ErrTTLTooLarge, ErrMissingField,
		ErrTopicInUse, ErrOutOfOrderSequence,
	}
	cases := []struct {
		name   string
		err    error
		code   codes.Code
		reason heraldpb.ErrorReason
		is     []error // sentinels (or context errors) the decoded error matches; it matches no other sentinel
		check  func(t *testing.T, got error)
	}{
		{name: "topic not found", err: TopicNotFound("orders"), code: codes.NotFound,
			reason: heraldpb.ErrorReason_TOPIC_NOT_FOUND, is: []error{ErrTopicNotFound},
			check: metadataIs(map[string]string{MetadataTopic: "orders"})},
		{name: "topic exists", err: TopicExists("orders"), code: codes.AlreadyExists,
			reason: heraldpb.ErrorReason_TOPIC_EXISTS, is: []error{ErrTopicExists},
			check: metadataIs(map[string]string{MetadataTopic: "orders"})},
		{name: "invalid argument", err: InvalidArgument("partitions", "must be at least %d", 1), code: codes.InvalidArgument,
			reason: heraldpb.ErrorReason_INVALID_ARGUMENT, is: []error{ErrInvalidArgument},
			check: metadataIs(map[string]string{MetadataField: "partitions"})},
		{name: "payload too large", err: PayloadTooLarge(2048, 1024), code: codes.InvalidArgument,
			reason: heraldpb.ErrorReason_PAYLOAD_TOO_LARGE, is: []error{ErrPayloadTooLarge},
			check: metadataIs(map[string]string{MetadataSize: "2048", MetadataMax: "1024"})},
		{name: "no leader", err: NoLeader("orders/1"), code: codes.Unavailable,
			reason: heraldpb.ErrorReason_NO_LEADER, is: []error{ErrNoLeader}},
		{name: "partition not found", err: PartitionNotFound("orders", 7), code: codes.NotFound,
			reason: heraldpb.ErrorReason_PARTITION_NOT_FOUND, is: []error{ErrPartitionNotFound},
			check: metadataIs(map[string]string{MetadataTopic: "orders", MetadataPartition: "7"})},
		{name: "unknown outcome", err: UnknownOutcome("apply timed out"), code: codes.Unknown,
			reason: heraldpb.ErrorReason_UNKNOWN_OUTCOME, is: []error{ErrUnknownOutcome}},
		{name: "corruption", err: Corruption(12, 99, "crc mismatch"), code: codes.DataLoss,
			reason: heraldpb.ErrorReason_CORRUPTION, is: []error{ErrCorruption},
			check: metadataIs(map[string]string{MetadataPartition: "12", MetadataOffset: "99"})},
		{name: "offset out of range", err: OffsetOutOfRange(5, 10, 20), code: codes.OutOfRange,
			reason: heraldpb.ErrorReason_OFFSET_OUT_OF_RANGE, is: []error{ErrOffsetOutOfRange},
			check: func(t *testing.T, got error) {
				var oor *OffsetOutOfRangeError
				require.ErrorAs(t, got, &oor)
				assert.Equal(t, OffsetOutOfRangeError{Requested: 5, Low: 10, High: 20}, *oor)
			}},
		{name: "not leader", err: NotLeader("n2", "127.0.0.1:7702"), code: codes.FailedPrecondition,
			reason: heraldpb.ErrorReason_NOT_LEADER, is: []error{ErrNotLeader},
			check: func(t *testing.T, got error) {
				var nl *NotLeaderError
				require.ErrorAs(t, got, &nl)
				assert.Equal(t, NotLeaderError{LeaderID: "n2", LeaderAddr: "127.0.0.1:7702"}, *nl)
			}},
		{name: "not leader, leader unknown", err: NotLeader("", ""), code: codes.FailedPrecondition,
			reason: heraldpb.ErrorReason_NOT_LEADER, is: []error{ErrNotLeader},
			check: func(t *testing.T, got error) {
				var nl *NotLeaderError
				require.ErrorAs(t, got, &nl)
				assert.Empty(t, nl.LeaderAddr)
			}},
		{name: "tenant not found", err: TenantNotFound("acme"), code: codes.NotFound,
			reason: heraldpb.ErrorReason_TENANT_NOT_FOUND, is: []error{ErrTenantNotFound},
			check: metadataIs(map[string]string{MetadataTenant: "acme"})},
		{name: "tenant exists", err: TenantExists("acme"), code: codes.AlreadyExists,
			reason: heraldpb.ErrorReason_TENANT_EXISTS, is: []error{ErrTenantExists},
			check: metadataIs(map[string]string{MetadataTenant: "acme"})},
		{name: "schema version not allowed", err: SchemaVersionNotAllowed("order", 3, []uint32{1, 2}), code: codes.InvalidArgument,
			reason: heraldpb.ErrorReason_SCHEMA_VERSION_NOT_ALLOWED, is: []error{ErrSchemaVersionNotAllowed},
			check: func(t *testing.T, got error) {
				metadataIs(map[string]string{MetadataSchema: "order", MetadataVersion: "3", MetadataAllowed: "1,2"})(t, got)
				assert.Contains(t, got.Error(), `schema "order" version 3 not allowed`)
			}},
		{name: "schema version, none allowed", err: SchemaVersionNotAllowed("order", 1, nil), code: codes.InvalidArgument,
			reason: heraldpb.ErrorReason_SCHEMA_VERSION_NOT_ALLOWED, is: []error{ErrSchemaVersionNotAllowed},
			check: metadataIs(map[string]string{MetadataSchema: "order", MetadataVersion: "1", MetadataAllowed: ""})},
		{name: "ttl too large", err: TTLTooLarge(90_000, 60_000), code: codes.InvalidArgument,
			reason: heraldpb.ErrorReason_TTL_TOO_LARGE, is: []error{ErrTTLTooLarge},
			check: metadataIs(map[string]string{MetadataTTLMs: "90000", MetadataMaxTTLMs: "60000"})},
		{name: "missing field", err: MissingField("correlation_id", "topic %q requires it", "orders"), code: codes.InvalidArgument,
			reason: heraldpb.ErrorReason_MISSING_FIELD, is: []error{ErrMissingField},
			check: func(t *testing.T, got error) {
				metadataIs(map[string]string{MetadataField: "correlation_id"})(t, got)
				assert.Contains(t, got.Error(), `missing correlation_id: topic "orders" requires it`)
			}},
		{name: "topic in use", err: TopicInUse("orders", 1_700_000_000_000_000_000), code: codes.FailedPrecondition,
			reason: heraldpb.ErrorReason_TOPIC_IN_USE, is: []error{ErrTopicInUse},
			check: func(t *testing.T, got error) {
				metadataIs(map[string]string{MetadataTopic: "orders", MetadataLastProduceUnixNano: "1700000000000000000"})(t, got)
				assert.Contains(t, got.Error(), "2023-11-14T22:13:20Z")
			}},
		{name: "out of order sequence", err: OutOfOrderSequence("p-1", 4, 9), code: codes.FailedPrecondition,
			reason: heraldpb.ErrorReason_OUT_OF_ORDER_SEQUENCE, is: []error{ErrOutOfOrderSequence},
			check: metadataIs(map[string]string{MetadataProducerID: "p-1", MetadataExpected: "4", MetadataGot: "9"})},
		{name: "wrapped typed error keeps its kind and the wrapping text",
			err: fmt.Errorf("server: produce orders: %w", TopicNotFound("orders")), code: codes.NotFound,
			reason: heraldpb.ErrorReason_TOPIC_NOT_FOUND, is: []error{ErrTopicNotFound},
			check: func(t *testing.T, got error) { assert.Contains(t, got.Error(), "server: produce orders") }},
		{name: "wrapped sentinel", err: fmt.Errorf("partition 3: %w", ErrNoLeader), code: codes.Unavailable,
			reason: heraldpb.ErrorReason_NO_LEADER, is: []error{ErrNoLeader}},
		{name: "wrapped typed not leader", err: fmt.Errorf("forward: %w", NotLeader("n3", "h:3")), code: codes.FailedPrecondition,
			reason: heraldpb.ErrorReason_NOT_LEADER, is: []error{ErrNotLeader}},
		{name: "unavailable sentinel", err: fmt.Errorf("dial: %w", ErrUnavailable), code: codes.Unavailable,
			is: []error{ErrUnavailable}},
		{name: "unreachable", err: &UnreachableError{Servers: []string{"a:1"}, Errs: []error{errors.New("refused")}},
			code: codes.Unavailable, is: []error{ErrUnavailable}},
		{name: "deadline", err: fmt.Errorf("apply: %w", context.DeadlineExceeded), code: codes.DeadlineExceeded,
			is: []error{context.DeadlineExceeded}},
		{name: "canceled", err: context.Canceled, code: codes.Canceled, is: []error{context.Canceled}},
		{name: "anything else is internal", err: errors.New("boom"), code: codes.Internal,
			check: func(t *testing.T, got error) { assert.Contains(t, got.Error(), "boom") }},
		{name: "a plain gRPC status passes through", err: status.Error(codes.Unimplemented, "not yet"), code: codes.Unimplemented},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := Status(tc.err)
			require.Equal(t, tc.code, st.Code())
			assert.Contains(t, tc.err.Error(), st.Message())
			info := errorInfo(st)
			if tc.reason == heraldpb.ErrorReason_ERROR_REASON_UNSPECIFIED {
				assert.Nil(t, info, "no ErrorInfo without a reason")
			} else {
				require.NotNil(t, info)
				assert.Equal(t, ErrorDomain, info.GetDomain())
				assert.Equal(t, tc.reason.String(), info.GetReason())
			}

			got := FromStatus(overTheWire(t, st))
			require.Error(t, got)
			for _, want := range tc.is {
				assert.ErrorIs(t, got, want)
			}
			for _, s := range sentinels {
				if !containsErr(tc.is, s) {
					assert.NotErrorIs(t, got, s)
				}
			}
			assert.Equal(t, tc.code, Status(got).Code(), "a decoded error re-encodes to the same code")
			assert.Equal(t, tc.reason, errorReason(got))
			if tc.check != nil {
				tc.check(t, got)
			}
		})
	}
}

func TestStatusAndFromStatusEdges(t *testing.T) {
	assert.Equal(t, codes.OK, Status(nil).Code())
	assert.NoError(t, FromStatus(nil))
	plain := errors.New("not an RPC error")
	assert.Same(t, plain, FromStatus(plain))

	// Transport failures carry no ErrorInfo: Unavailable is ErrUnavailable.
	got := FromStatus(status.Error(codes.Unavailable, "connection refused"))
	assert.ErrorIs(t, got, ErrUnavailable)
	assert.NotErrorIs(t, got, ErrNoLeader)
	assert.Contains(t, got.Error(), "connection refused")

	// Another domain's ErrorInfo is ignored.
	st, err := status.New(codes.NotFound, "x").WithDetails(&errdetails.ErrorInfo{Domain: "example.com", Reason: "TOPIC_NOT_FOUND"})
	require.NoError(t, err)
	got = FromStatus(st.Err())
	assert.NotErrorIs(t, got, ErrTopicNotFound)
	assert.Equal(t, codes.NotFound, Status(got).Code())

	// A reason newer than this SDK keeps its code.
	st, err = status.New(codes.ResourceExhausted, "slow down").WithDetails(&errdetails.ErrorInfo{Domain: ErrorDomain, Reason: "SOME_NEWER_REASON"})
	require.NoError(t, err)
	got = FromStatus(st.Err())
	var herr *Error
	require.ErrorAs(t, got, &herr)
	assert.Equal(t, codes.ResourceExhausted, herr.Code)
	assert.Equal(t, heraldpb.ErrorReason_ERROR_REASON_UNSPECIFIED, herr.Reason)
}

func TestRefusedAndTransientClassification(t *testing.T) {
	cases := []struct {
		err                error
		refused, transient bool
	}{
		{NotLeader("n1", "a:1"), true, false},
		{NoLeader("x"), true, true},
		{TopicNotFound("x"), true, false},
		{PayloadTooLarge(2, 1), true, false},
		{UnknownOutcome("x"), false, false},
		{Corruption(1, 1, "x"), false, false},
		{&Error{Code: codes.Unavailable}, false, true},
		{&Error{Code: codes.DeadlineExceeded}, false, true},
		// No Herald reason: gRPC's own, maybe the client's receive limit
		// after the server committed; never a refusal (issue 9, 5c).
		{&Error{Code: codes.ResourceExhausted}, false, true},
		{&Error{Code: codes.Internal}, false, false},
		{&Error{Code: codes.Unimplemented}, true, false},
		{ErrClosed, false, false},
		{TenantNotFound("a"), true, false},
		{TTLTooLarge(2, 1), true, false},
		{MissingField("key", "x"), true, false},
		{SchemaVersionNotAllowed("s", 2, []uint32{1}), true, false},
		{TopicInUse("t", 1), true, false},
		{OutOfOrderSequence("p", 1, 3), true, false},
		// Backpressure: refused, nothing written; resent after the hint.
		{QueueFull(2, 1, 10), true, true},
		{wire.QuotaExceeded("a", "events/s", 10), true, false},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.refused, refused(tc.err), "refused(%v)", tc.err)
		assert.Equal(t, tc.transient, transient(tc.err), "transient(%v)", tc.err)
	}
}

func metadataIs(want map[string]string) func(t *testing.T, got error) {
	return func(t *testing.T, got error) {
		var herr *Error
		require.ErrorAs(t, got, &herr)
		assert.Equal(t, want, herr.Metadata)
	}
}

func errorInfo(st *status.Status) *errdetails.ErrorInfo {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}

func containsErr(list []error, e error) bool {
	for _, x := range list {
		if x == e {
			return true
		}
	}
	return false
}
