package client

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// The byte charge of a response is the size of its events entries as
// received, not as the decoded events would re-encode: the server sends
// stored bodies with fields appended, some repeated.
func TestSubscribeCodecChargesReceivedEventBytes(t *testing.T) {
	body, err := proto.Marshal(&heraldpb.Event{TenantId: "acme", Payload: []byte("hello")})
	require.NoError(t, err)
	// As the server appends: the body, then tenant again and offset 0
	// (a zero a canonical encoding would leave out).
	entry := append([]byte(nil), body...)
	entry = protowire.AppendTag(entry, 2, protowire.BytesType)
	entry = protowire.AppendString(entry, "acme")
	entry = protowire.AppendTag(entry, 4, protowire.VarintType)
	entry = protowire.AppendVarint(entry, 0)
	var data []byte
	for range 3 {
		data = protowire.AppendTag(data, subscribeEventsField, protowire.BytesType)
		data = protowire.AppendBytes(data, entry)
	}
	data = protowire.AppendTag(data, 4, protowire.VarintType) // high_watermark
	data = protowire.AppendVarint(data, 3)

	frame := &subscribeFrame{resp: &heraldpb.SubscribeResponse{}}
	require.NoError(t, subscribeCodec{}.Unmarshal(data, frame))
	require.Len(t, frame.resp.GetEvents(), 3)
	assert.Equal(t, uint64(3), frame.resp.GetHighWatermark())
	perEntry := uint64(protowire.SizeTag(subscribeEventsField) + protowire.SizeBytes(len(entry)))
	assert.Equal(t, 3*perEntry, frame.eventBytes)
	assert.Greater(t, frame.eventBytes, uint64(3*(protowire.SizeTag(1)+protowire.SizeBytes(proto.Size(frame.resp.GetEvents()[0])))),
		"more than the re-encoded size")

	_, err = eventFieldBytes([]byte{0x0a, 0x05, 0x01})
	assert.Error(t, err, "a truncated entry")
	plain := &heraldpb.SubscribeResponse{}
	require.NoError(t, subscribeCodec{}.Unmarshal(data, plain), "other messages decode as protobuf")
	assert.Len(t, plain.GetEvents(), 3)
}

// Credit is due once a quarter of either window was taken, only for the
// stream it was taken from.
func TestSubscribeFeedGivesCreditBackByQuarters(t *testing.T) {
	f := &feed{wake: make(chan struct{}, 1)}
	gen := f.newStream()
	woken := func() bool {
		select {
		case <-f.wake:
			return true
		default:
			return false
		}
	}
	f.giveBack(gen, 24, 100, 100, 1<<20)
	assert.False(t, woken(), "24 of 100 events")
	f.giveBack(gen, 1, 100, 100, 1<<20)
	assert.True(t, woken(), "25 of 100 events")
	events, bytes := f.take(gen)
	assert.Equal(t, [2]uint64{25, 200}, [2]uint64{events, bytes})

	f.giveBack(gen, 1, 300, 100, 1000)
	assert.True(t, woken(), "300 of 1000 bytes")

	next := f.newStream()
	f.giveBack(gen, 100, 1000, 100, 1000)
	assert.False(t, woken(), "credit of an old stream is dropped")
	events, bytes = f.take(next)
	assert.Zero(t, events+bytes, "a new stream starts with nothing due")
	events, bytes = f.take(gen)
	assert.Zero(t, events+bytes)
}

func TestSubscribeRetryable(t *testing.T) {
	cases := []struct {
		err  error
		want bool
	}{
		{wire.NoLeader("partition 0 of t"), true},
		{wire.NodeStopping("n1"), true},
		{wire.NotLeader("n2", "127.0.0.1:1"), true},
		{FromStatus(status.Error(codes.Unavailable, "connection refused")), true},
		{FromStatus(status.Error(codes.Canceled, "server closed the stream")), true},
		{FromStatus(status.Error(codes.Internal, "RST_STREAM")), true},
		{wire.OffsetOutOfRange(0, 5, 20), false},
		{wire.EpochChanged(1, 2, 0, 5), false},
		{wire.TopicNotFound("t"), false},
		{wire.PartitionNotFound("t", 9), false},
		{wire.InvalidArgument("start", "no"), false},
		{FromStatus(status.Error(codes.Unimplemented, "method Subscribe not implemented")), false},
		{ErrInconsistentStream, false},
		{ErrClosed, false},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, subscribeRetryable(tc.err), "%v", tc.err)
	}
}

func TestSubscribeEpochChangedIsTyped(t *testing.T) {
	err := FromStatus(wire.Status(wire.EpochChanged(7, 9, 3, 40)).Err())
	var changed *EpochChangedError
	require.ErrorAs(t, err, &changed)
	assert.Equal(t, EpochChangedError{Epoch: 7, CurrentEpoch: 9, Low: 3, High: 40}, *changed)
	assert.ErrorIs(t, err, ErrEpochChanged)
	other := FromStatus(wire.Status(wire.NoLeader("x")).Err())
	assert.False(t, errors.As(other, &changed), "another error is not an EpochChangedError: %v", other)
}

func TestSubscribeOptionsValidate(t *testing.T) {
	assert.NoError(t, (&SubscribeOptions{}).Validate())
	assert.NoError(t, (&SubscribeOptions{Start: FromSequence(3), TenantID: "acme", Heartbeat: time.Second, Partitions: []uint32{0, 2},
		Resume: map[uint32]Position{2: {Offset: 5, Epoch: 1}}}).Validate())
	err := (&SubscribeOptions{
		Start: FromSequence(0), Heartbeat: 50 * time.Millisecond,
		Partitions: []uint32{1, 1}, Resume: map[uint32]Position{4: {}},
	}).Validate()
	require.ErrorIs(t, err, ErrInvalidArgument)
	for _, want := range []string{"needs the tenant id", "sequences start at 1", "heartbeat 50ms", "partition 1 is listed twice", "partition 4 is resumed but not subscribed"} {
		assert.ErrorContains(t, err, want)
	}
	assert.ErrorContains(t, (&SubscribeOptions{Partitions: []uint32{}}).Validate(), "subscribes to nothing")
}

func TestSubscribeTenantOrdered(t *testing.T) {
	assert.True(t, tenantOrdered(heraldpb.Ordering_ORDERING_UNSPECIFIED), "the default is per tenant")
	assert.True(t, tenantOrdered(OrderingPerTenant))
	assert.False(t, tenantOrdered(OrderingPerKey))
	assert.False(t, tenantOrdered(OrderingNone))
}
