package partition

import (
	"errors"
	"io"
	"log/slog"
	"testing"

	hraft "github.com/hashicorp/raft"

	"github.com/heraldlog/herald/partition/partitionpb"
)

func applyContract(t *testing.T, f *FSM, index, version uint64) uint64 {
	t.Helper()
	data, err := encodeContract(&partitionpb.ContractCommand{Version: version})
	if err != nil {
		t.Fatal(err)
	}
	return f.ApplyBatch([]*hraft.Log{{Index: index, Term: 1, Type: hraft.LogCommand, Data: data}})[0].(*contractResult).version
}

// plainCall returns one call of n plain records checked against contract
// version v.
func plainCall(tenant string, n int, v uint64) []*partitionpb.AppendRecord {
	records := records(tenant, n)
	records[0].RequestRecords, records[0].ContractVersion = uint32(n), v
	return records
}

// After a fence at version v the FSM refuses, as a whole, every call
// checked against an older contract and appends the others of the same
// entry; the fence never moves back, and it survives a snapshot into
// another replica (issue 17: produce never applies a contract older than
// the last acknowledged alter).
func TestFSMRefusesCallsCheckedAgainstAnOlderContract(t *testing.T) {
	_, log := openLog(t, 1)
	f := NewFSM(1, log, slog.Default(), nil)
	if got := applyRecords(t, f, 1, plainCall("a", 2, 0)...); got[0].Err != nil || got[1].Err != nil {
		t.Fatalf("before any fence: %+v", got)
	}
	if v := applyContract(t, f, 2, 7); v != 7 {
		t.Fatalf("fence at 7 gave %d", v)
	}
	entry := append(append(plainCall("a", 3, 5), plainCall("b", 2, 7)...), plainCall("c", 1, 9)...)
	got := applyRecords(t, f, 3, entry...)
	for j := range 3 {
		var cc *ContractChangedError
		if !errors.As(got[j].Err, &cc) || cc.Checked != 5 || cc.Current != 7 {
			t.Fatalf("stale call, record %d: %+v, want ContractChangedError{5, 7}", j, got[j])
		}
	}
	for j := 3; j < 6; j++ {
		if got[j].Err != nil {
			t.Fatalf("current call, record %d refused: %v", j, got[j].Err)
		}
	}
	if hw := log.HighWatermark(); hw != 5 {
		t.Fatalf("high watermark %d, want 5 (2 before the fence, 3 current after, none of the stale call)", hw)
	}
	if v := applyContract(t, f, 4, 3); v != 7 {
		t.Fatalf("a lower fence moved the version to %d", v)
	}
	if v, err := log.ContractVersion(); err != nil || v != 7 {
		t.Fatalf("committed contract version %d, %v", v, err)
	}

	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	_, dst := openLog(t, 1)
	g := NewFSM(1, dst, slog.Default(), nil)
	if err := g.Restore(io.NopCloser(&sink.Buffer)); err != nil {
		t.Fatal(err)
	}
	if got := applyRecords(t, g, 5, plainCall("a", 1, 6)...); !errors.Is(got[0].Err, ErrContractChanged) {
		t.Fatalf("restored replica took a stale call: %+v", got)
	}
}

func TestContractCommandRoundTrips(t *testing.T) {
	data, err := encodeContract(&partitionpb.ContractCommand{Version: 42})
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeCommand(data)
	if err != nil || got.(*partitionpb.ContractCommand).Version != 42 {
		t.Fatalf("contract: %v %v", got, err)
	}
	data[len(data)-1] ^= 1
	if _, err := decodeCommand(data); !errors.Is(err, ErrDamagedCommand) {
		t.Fatalf("damaged contract entry: %v", err)
	}
}
