package partition

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"log/slog"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
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

// A damaged entry is reported as Raft damage before apply stops the node,
// and CheckEntry (the check the node runs on a stored Raft log before
// opening it) finds the same damage without applying.
func TestDamagedEntryIsReportedAsRaftDamage(t *testing.T) {
	_, lp := openLog(t, 7)
	f := NewFSM(7, lp, slog.Default(), nil)
	var reported error
	f.onRaftDamage = func(err error) { reported = err }
	good := appendEntry(t, 1, 100, "a")
	if err := CheckEntry(good); err != nil {
		t.Fatalf("clean entry: %v", err)
	}
	if err := CheckEntry(&hraft.Log{Index: 2, Type: hraft.LogNoop}); err != nil {
		t.Fatalf("noop: %v", err)
	}
	bad := appendEntry(t, 1, 100, "a")
	bad.Data[len(bad.Data)-1] ^= 0x10
	if err := CheckEntry(bad); !errors.Is(err, ErrDamagedCommand) {
		t.Fatalf("CheckEntry missed the damage: %v", err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("apply of a damaged entry did not stop")
			}
		}()
		f.ApplyBatch([]*hraft.Log{bad})
	}()
	if !errors.Is(reported, ErrDamagedCommand) {
		t.Fatalf("damage not reported before stopping: %v", reported)
	}
	if lp.AppliedIndex() != 0 {
		t.Fatalf("damaged entry applied: applied index %d", lp.AppliedIndex())
	}
}

// A flat append entry decodes to the command it encodes, and to the same
// command as the protobuf entry (type 3) older leaders wrote, which still
// decodes: it is in Raft logs. Records with every field set, random.
func TestFlatAppendDecodesLikeProtobuf(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	for range 200 {
		cmd := &partitionpb.AppendCommand{ProducedAtUnixNano: rng.Int64() - rng.Int64()}
		for range rng.IntN(20) {
			rec := randomRecord(rng)
			rec.ProducerEpoch = rng.Uint64()
			rec.RequestRecords = rng.Uint32()
			rec.ContractVersion = rng.Uint64()
			rec.TtlMs = -rec.TtlMs
			cmd.Records = append(cmd.Records, rec)
		}
		flat, err := encodeAppend(cmd)
		require.NoError(t, err)
		require.Equal(t, commandAppendFlat, flat[0])
		protobuf, err := encodeChecked(commandAppendChecked, cmd)
		require.NoError(t, err)
		for _, data := range [][]byte{flat, protobuf} {
			got, err := decodeCommand(data)
			require.NoError(t, err, "seed %d", seed)
			require.True(t, proto.Equal(cmd, got), "seed %d: type %d: decode(encode(%v)) = %v", seed, data[0], cmd, got)
		}
	}
}

// A flat entry whose checksum matches but whose body does not hold its
// records exactly is refused, not applied.
func TestFlatAppendRefusesMalformedBodies(t *testing.T) {
	good := encodeAppendFlat(&partitionpb.AppendCommand{ProducedAtUnixNano: 7, Records: []*partitionpb.AppendRecord{{TenantId: "acme", Event: []byte("payload")}}})
	reseal := func(data []byte) []byte {
		binary.BigEndian.PutUint32(data[1:checkedHeaderBytes], crc32.Checksum(data[checkedHeaderBytes:], castagnoli))
		return data
	}
	for name, data := range map[string][]byte{
		"truncated record":   reseal(slices.Clone(good[:len(good)-1])),
		"byte after records": reseal(append(slices.Clone(good), 0)),
		"count too high":     reseal(func() []byte { d := slices.Clone(good); d[checkedHeaderBytes+1+3] = 2; return d }()),
		"count huge":         reseal(func() []byte { d := slices.Clone(good); d[checkedHeaderBytes+1] = 0xff; return d }()),
		"no count":           reseal([]byte{commandAppendFlat, 0, 0, 0, 0, 14}),
	} {
		if _, err := decodeCommand(data); !errors.Is(err, ErrBadCommand) {
			t.Fatalf("%s: %v", name, err)
		}
		if err := CheckEntry(&hraft.Log{Type: hraft.LogCommand, Data: data}); err == nil {
			t.Fatalf("%s: CheckEntry accepts it", name)
		}
	}
}
