package partition

import (
	"log/slog"
	"reflect"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/heraldlog/herald/partition/partitionpb"
)

// Dedupe expiry is decided only by times carried in the replicated
// entries (issue 9, defect 9): the append's produced_at and the trim's
// now, both stamped by the leader before Raft. Two replicas applying the
// same entries decide the same, and the wall clock of the applying
// replica plays no part: the entries below are stamped in 1970, so any
// use of the local clock would expire everything at once.
func TestDedupeExpiryUsesOnlyTheTimesInTheEntries(t *testing.T) {
	const window = time.Minute
	stamp := int64(1_000_000) // 1970, far behind every replica's clock
	eventEntry := func(index uint64, at int64) *hraft.Log {
		data, err := encodeAppend(&partitionpb.AppendCommand{ProducedAtUnixNano: at, Records: []*partitionpb.AppendRecord{{
			TenantId: "acme", Event: []byte("e"), EventId: "order-1", DedupeWindowMs: window.Milliseconds(),
		}}})
		if err != nil {
			t.Fatal(err)
		}
		return &hraft.Log{Index: index, Term: 1, Type: hraft.LogCommand, Data: data}
	}
	trimEntry := func(index uint64, now int64) *hraft.Log {
		data, err := encodeTrim(&partitionpb.TrimCommand{NowUnixNano: now, ProducerIdleMs: ProducerIdleMax.Milliseconds()})
		if err != nil {
			t.Fatal(err)
		}
		return &hraft.Log{Index: index, Term: 1, Type: hraft.LogCommand, Data: data}
	}
	entries := []*hraft.Log{
		eventEntry(1, stamp),
		trimEntry(2, stamp+int64(window)-1), // one nanosecond before the id expires
		eventEntry(3, stamp+1),              // a duplicate
		trimEntry(4, stamp+int64(window)),   // the id expires
		eventEntry(5, stamp+int64(window)),  // appended again
	}
	replay := func() []Assigned {
		_, log := openLog(t, 1)
		f := NewFSM(1, log, slog.Default(), nil)
		var out []Assigned
		for _, e := range entries {
			if res, ok := f.ApplyBatch([]*hraft.Log{e})[0].(*appendResult); ok {
				out = append(out, res.assigned...)
			}
		}
		return out
	}
	first := replay()
	want := []Assigned{{Offset: 0, Sequence: 1}, {Offset: 0, Sequence: 1, Duplicate: true}, {Offset: 1, Sequence: 2}}
	if !reflect.DeepEqual(first, want) {
		t.Fatalf("got %+v, want %+v", first, want)
	}
	if second := replay(); !reflect.DeepEqual(second, first) {
		t.Fatalf("a second replica decided %+v, the first %+v", second, first)
	}
}
