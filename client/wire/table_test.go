package wire

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/heraldlog/herald/client/heraldpb"
)

// Every reason the protocol defines has exactly one row in the error
// table, with a code and a sentinel of its own: a reason added to
// herald.proto without a row would travel as INTERNAL and match nothing.
func TestErrorTable(t *testing.T) {
	rows := map[heraldpb.ErrorReason]int{}
	sentinels := map[error]heraldpb.ErrorReason{}
	for _, row := range reasonTable {
		rows[row.reason]++
		if other, dup := sentinels[row.sentinel]; dup {
			t.Errorf("%s and %s share a sentinel", other, row.reason)
		}
		sentinels[row.sentinel] = row.reason
	}
	for v, name := range heraldpb.ErrorReason_name {
		r := heraldpb.ErrorReason(v)
		if r == heraldpb.ErrorReason_ERROR_REASON_UNSPECIFIED {
			assert.Zero(t, rows[r], "UNSPECIFIED has no row")
			continue
		}
		if rows[r] != 1 {
			t.Errorf("%s has %d rows in the error table, want one", name, rows[r])
			continue
		}
		assert.NotNil(t, SentinelOf(r), "%s has no sentinel", name)
		code := CodeOf(r)
		assert.NotContains(t, []codes.Code{codes.OK, codes.Internal}, code, "%s has no code", name)
	}
	assert.Equal(t, codes.Internal, CodeOf(heraldpb.ErrorReason_ERROR_REASON_UNSPECIFIED))
	assert.Nil(t, SentinelOf(heraldpb.ErrorReason_ERROR_REASON_UNSPECIFIED))
}

// Every reason, as a bare Error or as its wrapped sentinel, goes through
// Status and back through FromStatus with its code, its reason and its
// sentinel, and matches no other sentinel.
func TestEveryReasonRoundTrips(t *testing.T) {
	for _, row := range reasonTable {
		for name, err := range map[string]error{
			"error":    &Error{Reason: row.reason, Message: "herald: test"},
			"sentinel": errors.Join(errors.New("context"), row.sentinel),
		} {
			t.Run(row.reason.String()+"/"+name, func(t *testing.T) {
				st := Status(err)
				require.Equal(t, row.code, st.Code())
				info := errorInfo(st)
				require.NotNil(t, info)
				assert.Equal(t, ErrorDomain, info.GetDomain())
				assert.Equal(t, row.reason.String(), info.GetReason())

				got := FromStatus(overTheWire(t, st))
				assert.Equal(t, row.reason, Reason(got))
				assert.Equal(t, row.code, Code(got))
				for _, other := range reasonTable {
					if other.reason == row.reason || alsoMatches[row.reason] == other.sentinel {
						assert.ErrorIs(t, got, other.sentinel)
					} else {
						assert.NotErrorIs(t, got, other.sentinel)
					}
				}
			})
		}
	}
}

// Constructors take their code from the table, and their messages say the
// error is Herald's, on whichever side it was made.
func TestConstructorsUseTheTable(t *testing.T) {
	for _, err := range []error{
		InvalidArgument("f", "x"), PayloadTooLarge(2, 1), TopicNotFound("t"), TopicExists("t"),
		PartitionNotFound("t", 1), NotLeader("n", "a"), NoLeader("x"), NodeStarting("n"), NodeStopping("n"),
		NodeCatchingUp("n"), OffsetOutOfRange(1, 2, 3), UnknownOutcome("x"), Corruption(1, 2, "x"),
		TenantNotFound("a"), TenantExists("a"), SchemaVersionNotAllowed("s", 1, nil), TTLTooLarge(2, 1),
		MissingField("key", "x"), TopicInUse("t", 1), OutOfOrderSequence("p", 1, 2), UnknownProducer("x"),
		ProducerFenced("p", 1, 2), QueueFull(2, 1, 10), DuplicateSequence("x"),
		TenantQueueFull("a", 2, 1, 10), QuotaExceeded("a", "x", 10), ConsumerLagExceeded("t", "g", 2, 1, 10), NodeLimit("streams", "x", 10),
		GroupFenced("t", "g", 1, 2, 3, "x"),
	} {
		reason := Reason(err)
		require.NotEqual(t, heraldpb.ErrorReason_ERROR_REASON_UNSPECIFIED, reason, err.Error())
		assert.Equal(t, CodeOf(reason), Code(err), err.Error())
		assert.ErrorIs(t, err, SentinelOf(reason))
		assert.Regexp(t, "^herald: ", err.Error())
	}
}

// overTheWire sends st through its marshalled protobuf form, as gRPC does.
func overTheWire(t *testing.T, st *status.Status) error {
	b, err := proto.Marshal(st.Proto())
	require.NoError(t, err)
	var decoded spb.Status
	require.NoError(t, proto.Unmarshal(b, &decoded))
	return status.FromProto(&decoded).Err()
}

func errorInfo(st *status.Status) *errdetails.ErrorInfo {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}

// A backpressure refusal names its limit and retry hint, on both sides of
// the wire, and matches ErrThrottled whichever reason carries it.
func TestBackpressureRefusalsCarryLimitAndHint(t *testing.T) {
	for _, tc := range []struct {
		err   error
		limit string
	}{
		{QueueFull(2, 1, 100), LimitPartitionQueue},
		{TenantQueueFull("a", 2, 1, 100), LimitPartitionQueue},
		{QuotaExceeded("a", "events", 100), LimitTenantQuota},
		{ConsumerLagExceeded("t", "g", 2, 1, 100), LimitConsumerLag},
		{NodeLimit("streams", "x", 100), LimitNodeLimit},
	} {
		got := FromStatus(overTheWire(t, Status(tc.err)))
		assert.ErrorIs(t, got, ErrThrottled)
		d, limit, ok := RetryAfter(got)
		assert.True(t, ok)
		assert.Equal(t, 100*time.Millisecond, d)
		assert.Equal(t, tc.limit, limit)
	}
	_, _, ok := RetryAfter(TopicNotFound("t"))
	assert.False(t, ok)
	assert.NotErrorIs(t, TopicNotFound("t"), ErrThrottled)
}
