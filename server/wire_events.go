package server

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/heraldlog/herald/client/heraldpb"
	heraldlog "github.com/heraldlog/herald/log"
)

// Field numbers of the wire event and of FetchResponse.events, read from the
// generated descriptors once (and checked: a schema change that moves or
// retypes them panics at start, and the tests catch it).
var (
	fetchEventsField  = fieldNumber((&heraldpb.FetchResponse{}).ProtoReflect().Descriptor(), "events", protoreflect.MessageKind)
	eventTenantField  = fieldNumber(eventDescriptor, "tenant_id", protoreflect.StringKind)
	eventOffsetField  = fieldNumber(eventDescriptor, "offset", protoreflect.Uint64Kind)
	eventSeqField     = fieldNumber(eventDescriptor, "sequence", protoreflect.Uint64Kind)
	eventProducedAt   = fieldNumber(eventDescriptor, "produced_at_unix_nano", protoreflect.Int64Kind)
	eventPartitionFld = fieldNumber(eventDescriptor, "partition", protoreflect.Uint32Kind)
)

var eventDescriptor = (&heraldpb.Event{}).ProtoReflect().Descriptor()

// fieldNumber returns the number of message md's field name, which must have
// kind k.
func fieldNumber(md protoreflect.MessageDescriptor, name protoreflect.Name, k protoreflect.Kind) protowire.Number {
	fd := md.Fields().ByName(name)
	if fd == nil || fd.Kind() != k {
		panic(fmt.Sprintf("server: %s.%s is missing or not a %v", md.FullName(), name, k))
	}
	return fd.Number()
}

// appendWireEvent appends rec as one FetchResponse.events entry to dst,
// without decoding or re-encoding the stored event: the stored body is the
// Event as the leader encoded it once, without the server-assigned fields,
// and the fields from the record header (tenant, offset, sequence, produce
// time) plus the partition index are appended after it. Protobuf parses a
// message whose fields repeat by letting the last scalar win, so the client
// decodes the whole event. The result goes into the response's unknown
// fields (see readReplica); gRPC's encoder copies them out as they are.
func appendWireEvent(dst []byte, rec *heraldlog.Record, partitionIndex uint32) []byte {
	size := len(rec.Body) +
		protowire.SizeTag(eventTenantField) + protowire.SizeBytes(len(rec.Tenant)) +
		protowire.SizeTag(eventOffsetField) + protowire.SizeVarint(rec.Offset) +
		protowire.SizeTag(eventSeqField) + protowire.SizeVarint(rec.Sequence) +
		protowire.SizeTag(eventProducedAt) + protowire.SizeVarint(uint64(rec.TimestampUnixNano)) +
		protowire.SizeTag(eventPartitionFld) + protowire.SizeVarint(uint64(partitionIndex))
	dst = protowire.AppendTag(dst, fetchEventsField, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(size))
	dst = append(dst, rec.Body...)
	dst = protowire.AppendTag(dst, eventTenantField, protowire.BytesType)
	dst = protowire.AppendString(dst, rec.Tenant)
	dst = protowire.AppendTag(dst, eventOffsetField, protowire.VarintType)
	dst = protowire.AppendVarint(dst, rec.Offset)
	dst = protowire.AppendTag(dst, eventSeqField, protowire.VarintType)
	dst = protowire.AppendVarint(dst, rec.Sequence)
	dst = protowire.AppendTag(dst, eventProducedAt, protowire.VarintType)
	dst = protowire.AppendVarint(dst, uint64(rec.TimestampUnixNano))
	dst = protowire.AppendTag(dst, eventPartitionFld, protowire.VarintType)
	return protowire.AppendVarint(dst, uint64(partitionIndex))
}
