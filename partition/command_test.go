package partition

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/heraldlog/herald/partition/partitionpb"
)

func TestCommandsRoundTripAndDetectDamage(t *testing.T) {
	cmd := &partitionpb.AppendCommand{ProducedAtUnixNano: 7, Records: []*partitionpb.AppendRecord{{TenantId: "acme", Event: []byte("payload")}}}
	data, err := encodeAppend(cmd)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeCommand(data)
	if err != nil || !proto.Equal(got, cmd) {
		t.Fatalf("round trip: %v %v", got, err)
	}
	// Every single-bit flip past the type byte is caught by the checksum.
	for i := 1; i < len(data); i++ {
		for bit := 0; bit < 8; bit++ {
			damaged := append([]byte(nil), data...)
			damaged[i] ^= 1 << bit
			if _, err := decodeCommand(damaged); !errors.Is(err, ErrBadCommand) {
				t.Fatalf("flip of bit %d in byte %d not detected: %v", bit, i, err)
			}
		}
	}
	trim, err := encodeTrim(&partitionpb.TrimCommand{TruncateBefore: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := decodeCommand(trim); err != nil || got.(*partitionpb.TrimCommand).TruncateBefore != 3 {
		t.Fatalf("trim: %v %v", got, err)
	}
	// Entries of the first, unchecked format still decode.
	legacy, _ := proto.Marshal(cmd)
	if got, err := decodeCommand(append([]byte{commandAppend}, legacy...)); err != nil || !proto.Equal(got, cmd) {
		t.Fatalf("legacy entry: %v %v", got, err)
	}
	if _, err := decodeCommand([]byte{commandAppendChecked, 1, 2}); !errors.Is(err, ErrBadCommand) {
		t.Fatalf("truncated entry: %v", err)
	}
}
