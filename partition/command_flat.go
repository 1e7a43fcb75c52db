package partition

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/heraldlog/herald/partition/partitionpb"
)

// The flat append entry (type commandAppendFlat), written since issue 15
// in place of the protobuf AppendCommand: every replica decodes every
// append entry it applies, and a flat decode reads fields in a fixed order
// with no reflection, tags or per-record message allocations.
//
//	type(1) | crc32c(4) of the rest | produced_at (zigzag varint)
//	| record count (4, big-endian) | records
//
// and each record, its fields in AppendRecord's field order:
//
//	len | tenant_id | len | event | len | producer_id | producer_seq
//	| len | event_id | ttl_ms (zigzag) | dedupe_window_ms (zigzag)
//	| producer_epoch | request_records | contract_version
//
// every length and unsigned number a uvarint. The count has a fixed width
// so that an entry's size is its records' sizes plus a header that varies
// only by the produced-at varint (the batcher's accounting). An entry holds exactly its
// records: a byte past the last one, a length past the end or a count
// that does not match is ErrBadCommand. Persisted in Raft logs: a new
// layout takes a new type byte.

// flatCountBytes is the width of a flat entry's record count.
const flatCountBytes = 4

// flatRecordBytesMin is the fewest bytes a flat record takes (four empty
// lengths and six one-byte numbers): it bounds the count an entry may
// announce before anything is allocated.
const flatRecordBytesMin = 10

// errFlatTruncated reports a flat entry that ends inside a field.
var errFlatTruncated = errors.New("truncated")

// flatRecordBytes is exactly what rec takes in a flat append entry.
func flatRecordBytes(rec *partitionpb.AppendRecord) int {
	return uvarintBytes(uint64(len(rec.TenantId))) + len(rec.TenantId) +
		uvarintBytes(uint64(len(rec.Event))) + len(rec.Event) +
		uvarintBytes(uint64(len(rec.ProducerId))) + len(rec.ProducerId) +
		uvarintBytes(rec.ProducerSeq) +
		uvarintBytes(uint64(len(rec.EventId))) + len(rec.EventId) +
		varintBytes(rec.TtlMs) + varintBytes(rec.DedupeWindowMs) +
		uvarintBytes(rec.ProducerEpoch) + uvarintBytes(uint64(rec.RequestRecords)) +
		uvarintBytes(rec.ContractVersion)
}

// uvarintBytes is the length of v as a uvarint.
func uvarintBytes(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// varintBytes is the length of v as a zigzag varint.
func varintBytes(v int64) int { return uvarintBytes(uint64(v<<1) ^ uint64(v>>63)) }

// encodeAppendFlat builds the flat Raft entry for an append command.
func encodeAppendFlat(cmd *partitionpb.AppendCommand) []byte {
	size := checkedHeaderBytes + varintBytes(cmd.ProducedAtUnixNano) + flatCountBytes
	for _, rec := range cmd.Records {
		size += flatRecordBytes(rec)
	}
	buf := make([]byte, checkedHeaderBytes, size)
	buf[0] = commandAppendFlat
	buf = binary.AppendVarint(buf, cmd.ProducedAtUnixNano)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(cmd.Records)))
	for _, rec := range cmd.Records {
		buf = appendFlatString(buf, rec.TenantId)
		buf = binary.AppendUvarint(buf, uint64(len(rec.Event)))
		buf = append(buf, rec.Event...)
		buf = appendFlatString(buf, rec.ProducerId)
		buf = binary.AppendUvarint(buf, rec.ProducerSeq)
		buf = appendFlatString(buf, rec.EventId)
		buf = binary.AppendVarint(buf, rec.TtlMs)
		buf = binary.AppendVarint(buf, rec.DedupeWindowMs)
		buf = binary.AppendUvarint(buf, rec.ProducerEpoch)
		buf = binary.AppendUvarint(buf, uint64(rec.RequestRecords))
		buf = binary.AppendUvarint(buf, rec.ContractVersion)
	}
	binary.BigEndian.PutUint32(buf[1:checkedHeaderBytes], crc32.Checksum(buf[checkedHeaderBytes:], castagnoli))
	return buf
}

// appendFlatString appends s with its uvarint length.
func appendFlatString(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

// flatReader reads a flat entry's body; the first error sticks.
type flatReader struct {
	data []byte
	err  error
}

func (r *flatReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.data)
	if n <= 0 {
		r.err = errFlatTruncated
		return 0
	}
	r.data = r.data[n:]
	return v
}

func (r *flatReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.data)
	if n <= 0 {
		r.err = errFlatTruncated
		return 0
	}
	r.data = r.data[n:]
	return v
}

func (r *flatReader) uint32() uint32 {
	if r.err != nil {
		return 0
	}
	if len(r.data) < 4 {
		r.err = errFlatTruncated
		return 0
	}
	v := binary.BigEndian.Uint32(r.data)
	r.data = r.data[4:]
	return v
}

// bytes returns the next length-prefixed field, aliasing the data.
func (r *flatReader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.data)) {
		r.err = errFlatTruncated
		return nil
	}
	out := r.data[:n:n]
	r.data = r.data[n:]
	return out
}

// decodeAppendFlat decodes the body of a flat append entry (past its
// checked header). The records' events alias body, which must not change
// while the command is in use (Raft never changes an entry's data, and
// apply copies events into Pebble): an entry costs two allocations besides
// its records' strings, whatever the size of its events.
func decodeAppendFlat(body []byte) (*partitionpb.AppendCommand, error) {
	r := &flatReader{data: body}
	cmd := &partitionpb.AppendCommand{ProducedAtUnixNano: r.varint()}
	count := r.uint32()
	if r.err != nil {
		return nil, fmt.Errorf("%w: type %d: header: %v", ErrBadCommand, commandAppendFlat, r.err)
	}
	if uint64(count) > uint64(len(r.data)/flatRecordBytesMin) {
		return nil, fmt.Errorf("%w: type %d: %d records announced in %d bytes", ErrBadCommand, commandAppendFlat, count, len(r.data))
	}
	if count > 0 {
		records := make([]partitionpb.AppendRecord, count)
		cmd.Records = make([]*partitionpb.AppendRecord, count)
		for i := range records {
			rec := &records[i]
			rec.TenantId = string(r.bytes())
			if event := r.bytes(); len(event) > 0 {
				rec.Event = event
			}
			rec.ProducerId = string(r.bytes())
			rec.ProducerSeq = r.uvarint()
			rec.EventId = string(r.bytes())
			rec.TtlMs = r.varint()
			rec.DedupeWindowMs = r.varint()
			rec.ProducerEpoch = r.uvarint()
			requestRecords := r.uvarint()
			if requestRecords > 1<<32-1 && r.err == nil {
				return nil, fmt.Errorf("%w: type %d: record %d: request_records %d overflows", ErrBadCommand, commandAppendFlat, i, requestRecords)
			}
			rec.RequestRecords = uint32(requestRecords)
			rec.ContractVersion = r.uvarint()
			if r.err != nil {
				return nil, fmt.Errorf("%w: type %d: record %d of %d: %v", ErrBadCommand, commandAppendFlat, i, count, r.err)
			}
			cmd.Records[i] = rec
		}
	}
	if len(r.data) != 0 {
		return nil, fmt.Errorf("%w: type %d: %d bytes after the last record", ErrBadCommand, commandAppendFlat, len(r.data))
	}
	return cmd, nil
}
