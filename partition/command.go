package partition

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	hraft "github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/heraldlog/herald/partition/partitionpb"
)

// Command types: the first byte of every Raft entry of a partition group.
// Persisted in Raft logs and snapshots: append-only, never renumber.
//
// Types 1 and 2 (written by the first versions) carry the protobuf command
// right after the type byte; 3 and 4 carry a CRC32C (Castagnoli) of it
// first, so that an entry damaged in a replica's Raft log (raft-boltdb has no
// checksum of its own) is detected at apply instead of applied wrongly.
// New entries are always written checksummed; the old types still decode.
const (
	commandAppend        byte = 1
	commandTrim          byte = 2
	commandAppendChecked byte = 3
	commandTrimChecked   byte = 4
	// 5 (ContractCommand) exists only checksummed.
	commandContractChecked byte = 5
	// 6..13: the consumer group commands (group.go), only checksummed.
	commandGroupCreate     byte = 6
	commandGroupReset      byte = 7
	commandGroupDelete     byte = 8
	commandGroupAssign     byte = 9
	commandGroupDeliver    byte = 10
	commandGroupAck        byte = 11
	commandGroupNack       byte = 12
	commandGroupDeadLetter byte = 13
	// 14: the flat append entry (command_flat.go), only checksummed;
	// written for every append since issue 15 (3 still decodes).
	commandAppendFlat byte = 14
)

// newCommand returns an empty command of type kind and whether its entries
// carry a checksum; ok is false for an unknown type. The flat append type
// has no protobuf command (cmd is nil).
func newCommand(kind byte) (cmd proto.Message, checked, ok bool) {
	switch kind {
	case commandAppend:
		return &partitionpb.AppendCommand{}, false, true
	case commandTrim:
		return &partitionpb.TrimCommand{}, false, true
	case commandAppendChecked:
		return &partitionpb.AppendCommand{}, true, true
	case commandTrimChecked:
		return &partitionpb.TrimCommand{}, true, true
	case commandContractChecked:
		return &partitionpb.ContractCommand{}, true, true
	case commandGroupCreate:
		return &partitionpb.GroupCreateCommand{}, true, true
	case commandGroupReset:
		return &partitionpb.GroupResetCommand{}, true, true
	case commandGroupDelete:
		return &partitionpb.GroupDeleteCommand{}, true, true
	case commandGroupAssign:
		return &partitionpb.GroupAssignCommand{}, true, true
	case commandGroupDeliver:
		return &partitionpb.GroupDeliverCommand{}, true, true
	case commandGroupAck:
		return &partitionpb.GroupAckCommand{}, true, true
	case commandGroupNack:
		return &partitionpb.GroupNackCommand{}, true, true
	case commandGroupDeadLetter:
		return &partitionpb.GroupDeadLetterCommand{}, true, true
	case commandAppendFlat:
		// Decoded by decodeAppendFlat, which makes its own command: no
		// protobuf message to unmarshal into.
		return nil, true, true
	}
	return nil, false, false
}

// groupCommandType returns the entry type of a consumer group command;
// ok is false when cmd is none.
func groupCommandType(cmd proto.Message) (kind byte, ok bool) {
	switch cmd.(type) {
	case *partitionpb.GroupCreateCommand:
		return commandGroupCreate, true
	case *partitionpb.GroupResetCommand:
		return commandGroupReset, true
	case *partitionpb.GroupDeleteCommand:
		return commandGroupDelete, true
	case *partitionpb.GroupAssignCommand:
		return commandGroupAssign, true
	case *partitionpb.GroupDeliverCommand:
		return commandGroupDeliver, true
	case *partitionpb.GroupAckCommand:
		return commandGroupAck, true
	case *partitionpb.GroupNackCommand:
		return commandGroupNack, true
	case *partitionpb.GroupDeadLetterCommand:
		return commandGroupDeadLetter, true
	}
	return 0, false
}

// encodeGroup builds the Raft entry for a consumer group command (one of
// the partitionpb.Group*Command messages).
func encodeGroup(cmd proto.Message) ([]byte, error) {
	kind, ok := groupCommandType(cmd)
	if !ok {
		return nil, fmt.Errorf("partition: %T is not a consumer group command", cmd)
	}
	return encodeChecked(kind, cmd)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrBadCommand marks a Raft entry this version cannot decode. Apply stops
// the partition on it rather than skip it: skipping would let replicas diverge.
var ErrBadCommand = errors.New("partition: undecodable command")

// ErrDamagedCommand marks a checksummed Raft entry whose checksum does not
// match, or that is too short to hold one: the replica's copy of the entry
// is damaged. It comes with ErrBadCommand.
var ErrDamagedCommand = errors.New("partition: damaged command")

// checkedHeaderBytes is the type byte and CRC32C before a command's body.
const checkedHeaderBytes = 5

// appendCommandOverheadBytes bounds what an append entry holds besides its
// records: the checked header, the produced-at varint (at most 10 bytes)
// and the record count (flatCountBytes).
const appendCommandOverheadBytes = checkedHeaderBytes + binary.MaxVarintLen64 + flatCountBytes

// appendRecordBytes is exactly what rec adds to an encoded (flat) append
// entry. An entry's encoded size is at most appendCommandOverheadBytes plus
// the sum over its records (at most 9 bytes less: the produced-at varint
// is shorter for small values).
func appendRecordBytes(rec *partitionpb.AppendRecord) int {
	return flatRecordBytes(rec)
}

// encodeAppend builds the Raft entry for an append command: the flat
// entry (command_flat.go). The error is always nil; it stays for the
// encoders' common shape.
func encodeAppend(cmd *partitionpb.AppendCommand) ([]byte, error) {
	return encodeAppendFlat(cmd), nil
}

// encodeChecked writes type | crc32c(body) | body.
func encodeChecked(kind byte, cmd proto.Message) ([]byte, error) {
	buf := make([]byte, checkedHeaderBytes, checkedHeaderBytes+proto.Size(cmd))
	buf[0] = kind
	buf, err := proto.MarshalOptions{}.MarshalAppend(buf, cmd)
	if err != nil {
		return nil, err
	}
	binary.BigEndian.PutUint32(buf[1:5], crc32.Checksum(buf[5:], castagnoli))
	return buf, nil
}

// encodeTrim builds the Raft entry for a trim command.
func encodeTrim(cmd *partitionpb.TrimCommand) ([]byte, error) {
	return encodeChecked(commandTrimChecked, cmd)
}

// encodeContract builds the Raft entry for a contract fence.
func encodeContract(cmd *partitionpb.ContractCommand) ([]byte, error) {
	return encodeChecked(commandContractChecked, cmd)
}

// decodeCommand decodes a Raft entry into an *AppendCommand, a
// *TrimCommand, a *ContractCommand or one of the Group*Command messages.
func decodeCommand(data []byte) (proto.Message, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty entry", ErrBadCommand)
	}
	cmd, checked, ok := newCommand(data[0])
	if !ok {
		return nil, fmt.Errorf("%w: unknown command type %d", ErrBadCommand, data[0])
	}
	body := data[1:]
	if checked {
		if len(data) < checkedHeaderBytes {
			return nil, fmt.Errorf("%w: %w: type %d: truncated", ErrBadCommand, ErrDamagedCommand, data[0])
		}
		body = data[checkedHeaderBytes:]
		if want, got := binary.BigEndian.Uint32(data[1:checkedHeaderBytes]), crc32.Checksum(body, castagnoli); want != got {
			return nil, fmt.Errorf("%w: %w: type %d: checksum mismatch (stored %08x, computed %08x): the entry is damaged in this replica's Raft log", ErrBadCommand, ErrDamagedCommand, data[0], want, got)
		}
	}
	if data[0] == commandAppendFlat {
		return decodeAppendFlat(body)
	}
	if err := proto.Unmarshal(body, cmd); err != nil {
		return nil, fmt.Errorf("%w: type %d: %v", ErrBadCommand, data[0], err)
	}
	return cmd, nil
}

// CheckEntry verifies one stored Raft entry of a partition group without
// applying it: a command must decode and, when checksummed, match its
// checksum. It is the raft.EntryChecker the node verifies a partition's
// Raft log with before opening it.
func CheckEntry(l *hraft.Log) error {
	if l.Type != hraft.LogCommand {
		return nil
	}
	_, err := decodeCommand(l.Data)
	return err
}
