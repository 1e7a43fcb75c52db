package client

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/heraldlog/herald/client/heraldpb"
)

// subscribeEventsField is SubscribeResponse.events.
var subscribeEventsField = (&heraldpb.SubscribeResponse{}).ProtoReflect().Descriptor().Fields().ByName("events").Number()

// subscribeFrame is what a subscription stream receives: the response and
// the bytes of credit the server charged for its events.
//
// The server charges each event's encoding as it sent it (its field tag,
// length and body: a stored body plus appended fields, not the canonical
// encoding the decoded Event would re-marshal to), so only the received
// bytes tell the exact charge. Credit given back from an estimate would
// drift, and a byte window that drifts down ends in a stalled stream.
type subscribeFrame struct {
	resp       *heraldpb.SubscribeResponse
	eventBytes uint64
}

// subscribeCodec is the protobuf codec, plus the charge of a
// subscribeFrame. It is given per call (grpc.ForceCodec, marked
// experimental by gRPC) to the Subscribe streams only, and keeps the
// content-subtype "proto".
type subscribeCodec struct{}

var _ encoding.Codec = subscribeCodec{}

func (subscribeCodec) Name() string { return "proto" }

func (subscribeCodec) Marshal(v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("client: subscribe codec cannot marshal %T", v)
	}
	return proto.Marshal(m)
}

func (subscribeCodec) Unmarshal(data []byte, v any) error {
	switch m := v.(type) {
	case *subscribeFrame:
		n, err := eventFieldBytes(data)
		if err != nil {
			return err
		}
		m.eventBytes = n
		return proto.Unmarshal(data, m.resp)
	case proto.Message:
		return proto.Unmarshal(data, m)
	}
	return fmt.Errorf("client: subscribe codec cannot unmarshal into %T", v)
}

// eventFieldBytes sums the encoded size of a SubscribeResponse's events
// entries, tag and length included: the server's byte charge.
func eventFieldBytes(b []byte) (uint64, error) {
	var total uint64
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return 0, protowire.ParseError(m)
		}
		if num == subscribeEventsField && typ == protowire.BytesType {
			total += uint64(n + m)
		}
		b = b[n+m:]
	}
	return total, nil
}
