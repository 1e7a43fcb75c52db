package partition

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/heraldlog/herald/partition/partitionpb"
)

// Command types: the first byte of every Raft entry of a partition group.
// Persisted in Raft logs and snapshots: append-only, never renumber.
const (
	commandAppend byte = 1
	commandTrim   byte = 2
)

// ErrBadCommand marks a Raft entry this version cannot decode. Apply stops
// the partition on it rather than skip it: skipping would let replicas diverge.
var ErrBadCommand = errors.New("partition: undecodable command")

// encodeAppend builds the Raft entry for an append command.
func encodeAppend(cmd *partitionpb.AppendCommand) ([]byte, error) {
	size := proto.Size(cmd)
	buf := make([]byte, 1, 1+size)
	buf[0] = commandAppend
	return proto.MarshalOptions{}.MarshalAppend(buf, cmd)
}

// encodeTrim builds the Raft entry for a trim command.
func encodeTrim(cmd *partitionpb.TrimCommand) ([]byte, error) {
	buf := make([]byte, 1, 1+proto.Size(cmd))
	buf[0] = commandTrim
	return proto.MarshalOptions{}.MarshalAppend(buf, cmd)
}

// decodeCommand decodes a Raft entry into an *AppendCommand or a *TrimCommand.
func decodeCommand(data []byte) (proto.Message, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty entry", ErrBadCommand)
	}
	var cmd proto.Message
	switch data[0] {
	case commandAppend:
		cmd = &partitionpb.AppendCommand{}
	case commandTrim:
		cmd = &partitionpb.TrimCommand{}
	default:
		return nil, fmt.Errorf("%w: unknown command type %d", ErrBadCommand, data[0])
	}
	if err := proto.Unmarshal(data[1:], cmd); err != nil {
		return nil, fmt.Errorf("%w: type %d: %v", ErrBadCommand, data[0], err)
	}
	return cmd, nil
}
