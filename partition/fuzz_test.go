package partition

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"

	hraft "github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/heraldlog/herald/partition/partitionpb"
)

// FuzzDecodeCommand: a partition group's Raft entry (as a replica reads
// it from its log or a leader sends it) decodes to a command that encodes
// back to an entry decoding to the same command, or fails with
// ErrBadCommand; never a panic. CheckEntry agrees with the decoder. The
// fixCRC flag rewrites a checked entry's CRC first, so that the fuzzer
// reaches the protobuf or flat body behind it (docs/operations.md, "Fuzz
// targets").
func FuzzDecodeCommand(f *testing.F) {
	seeds := []struct {
		kind byte
		cmd  proto.Message
	}{
		{commandAppendChecked, &partitionpb.AppendCommand{ProducedAtUnixNano: 7, Records: []*partitionpb.AppendRecord{{TenantId: "acme", Event: []byte("payload")}, {TenantId: "b"}}}},
		{commandTrimChecked, &partitionpb.TrimCommand{TruncateBefore: 3}},
		{commandContractChecked, &partitionpb.ContractCommand{}},
		{commandGroupCreate, &partitionpb.GroupCreateCommand{}},
		{commandGroupReset, &partitionpb.GroupResetCommand{}},
		{commandGroupDelete, &partitionpb.GroupDeleteCommand{}},
		{commandGroupAssign, &partitionpb.GroupAssignCommand{}},
		{commandGroupDeliver, &partitionpb.GroupDeliverCommand{}},
		{commandGroupAck, &partitionpb.GroupAckCommand{}},
		{commandGroupNack, &partitionpb.GroupNackCommand{}},
		{commandGroupDeadLetter, &partitionpb.GroupDeadLetterCommand{}},
	}
	for _, s := range seeds {
		data, err := encodeChecked(s.kind, s.cmd)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, false)
		f.Add(data[:len(data)-1], true)
	}
	flat := encodeAppendFlat(seeds[0].cmd.(*partitionpb.AppendCommand))
	f.Add(flat, false)
	f.Add(flat[:len(flat)-1], true)
	f.Add(encodeAppendFlat(&partitionpb.AppendCommand{ProducedAtUnixNano: -1, Records: []*partitionpb.AppendRecord{{
		TenantId: "t", Event: []byte{0}, ProducerId: "p", ProducerSeq: 1 << 40, EventId: "e", TtlMs: -5,
		DedupeWindowMs: 1 << 33, ProducerEpoch: 2, RequestRecords: 1<<32 - 1, ContractVersion: 9,
	}}}), false)
	f.Add([]byte{commandAppendFlat, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}, true)
	legacy, _ := proto.Marshal(seeds[0].cmd)
	f.Add(append([]byte{commandAppend}, legacy...), false)
	f.Add([]byte{commandTrim, 0x08, 0x03}, false)
	f.Add([]byte{}, false)
	f.Add([]byte{commandAppendChecked, 1, 2}, false)
	f.Add([]byte{0xff}, false)

	f.Fuzz(func(t *testing.T, data []byte, fixCRC bool) {
		if fixCRC && len(data) >= checkedHeaderBytes {
			data = append([]byte(nil), data...)
			binary.BigEndian.PutUint32(data[1:checkedHeaderBytes], crc32.Checksum(data[checkedHeaderBytes:], castagnoli))
		}
		cmd, err := decodeCommand(data)
		checkErr := CheckEntry(&hraft.Log{Type: hraft.LogCommand, Data: data})
		if err != nil {
			if !errors.Is(err, ErrBadCommand) {
				t.Fatalf("decode error %v is not ErrBadCommand", err)
			}
			if checkErr == nil {
				t.Fatalf("CheckEntry accepts an entry decode refuses (%v)", err)
			}
			return
		}
		if checkErr != nil {
			t.Fatalf("CheckEntry refuses an entry that decodes: %v", checkErr)
		}
		kind := data[0]
		_, checked, _ := newCommand(kind)
		if !checked {
			// The unchecked types are written only by the first versions;
			// their checked twins carry the same messages.
			kind += commandAppendChecked - commandAppend
		}
		var again []byte
		if kind == commandAppendFlat {
			again = encodeAppendFlat(cmd.(*partitionpb.AppendCommand))
		} else {
			again, err = encodeChecked(kind, cmd)
		}
		if err != nil {
			t.Fatalf("encode a decoded command: %v", err)
		}
		round, err := decodeCommand(again)
		if err != nil {
			t.Fatalf("decode(encode(decoded)): %v", err)
		}
		if !proto.Equal(cmd, round) {
			t.Fatalf("decode(encode(%v)) = %v", cmd, round)
		}
	})
}
