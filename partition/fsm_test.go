package partition

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"testing"

	hraft "github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus/testutil"

	heraldlog "github.com/heraldlog/herald/log"
	"github.com/heraldlog/herald/partition/partitionpb"
)

func openLog(t testing.TB, id uint64) (*heraldlog.DB, *heraldlog.Partition) {
	t.Helper()
	db, err := heraldlog.Open(heraldlog.Options{Dir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	p, err := db.Partition(id)
	if err != nil {
		t.Fatal(err)
	}
	return db, p
}

func appendEntry(t testing.TB, index uint64, producedAt int64, tenants ...string) *hraft.Log {
	t.Helper()
	cmd := &partitionpb.AppendCommand{ProducedAtUnixNano: producedAt}
	for i, tenant := range tenants {
		cmd.Records = append(cmd.Records, &partitionpb.AppendRecord{TenantId: tenant, Event: []byte(fmt.Sprintf("%d/%d", index, i))})
	}
	data, err := encodeAppend(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return &hraft.Log{Index: index, Term: 1, Type: hraft.LogCommand, Data: data}
}

func TestFSMAssignsOffsetsAndSequencesInLogOrder(t *testing.T) {
	_, lp := openLog(t, 7)
	woken := 0
	f := NewFSM(7, lp, slog.Default(), func(uint64) { woken++ })
	results := f.ApplyBatch([]*hraft.Log{
		appendEntry(t, 1, 100, "a", "b", "a"),
		{Index: 2, Term: 1, Type: hraft.LogNoop},
		appendEntry(t, 3, 200, "b"),
	})
	want := [][]Assigned{
		{{Offset: 0, Sequence: 1}, {Offset: 1, Sequence: 1}, {Offset: 2, Sequence: 2}},
		nil,
		{{Offset: 3, Sequence: 2}},
	}
	for i, w := range want {
		if w == nil {
			if results[i] != nil {
				t.Fatalf("entry %d: want no result, got %v", i, results[i])
			}
			continue
		}
		got := results[i].(*appendResult).assigned
		if fmt.Sprint(got) != fmt.Sprint(w) {
			t.Fatalf("entry %d: got %v, want %v", i, got, w)
		}
	}
	if f.AppliedIndex() != 3 || lp.HighWatermark() != 4 || woken != 1 {
		t.Fatalf("applied %d, high watermark %d, woken %d", f.AppliedIndex(), lp.HighWatermark(), woken)
	}
	recs, err := lp.Read(0, 10, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 4 || recs[3].TimestampUnixNano != 200 || string(recs[3].Body) != "3/0" || recs[2].Tenant != "a" {
		t.Fatalf("records: %+v", recs)
	}
}

// A restart replays Raft entries from the last snapshot: those at or below
// the stored applied index must change nothing.
func TestFSMIsIdempotentByRaftIndex(t *testing.T) {
	_, lp := openLog(t, 1)
	f := NewFSM(1, lp, slog.Default(), nil)
	entries := []*hraft.Log{appendEntry(t, 1, 1, "a"), appendEntry(t, 2, 2, "a", "b")}
	f.ApplyBatch(entries)
	// Replay the same entries plus one new one.
	res := f.ApplyBatch(append(entries, appendEntry(t, 3, 3, "a")))
	if res[0] != nil || res[1] != nil {
		t.Fatalf("replayed entries produced results: %v", res)
	}
	if got := res[2].(*appendResult).assigned; fmt.Sprint(got) != fmt.Sprint([]Assigned{{Offset: 3, Sequence: 3}}) {
		t.Fatalf("new entry assigned %v", got)
	}
	if lp.HighWatermark() != 4 {
		t.Fatalf("high watermark %d, want 4", lp.HighWatermark())
	}
}

func TestFSMPanicsOnUndecodableEntry(t *testing.T) {
	_, lp := openLog(t, 1)
	f := NewFSM(1, lp, slog.Default(), nil)
	defer func() {
		if recover() == nil {
			t.Fatal("an undecodable entry was applied silently")
		}
		if lp.AppliedIndex() != 0 {
			t.Fatalf("applied index moved to %d", lp.AppliedIndex())
		}
	}()
	f.ApplyBatch([]*hraft.Log{{Index: 1, Type: hraft.LogCommand, Data: []byte{99, 1, 2}}})
}

type memSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }

func TestFSMSnapshotRestoresIntoAnotherReplica(t *testing.T) {
	_, src := openLog(t, 3)
	f := NewFSM(3, src, slog.Default(), nil)
	for i := uint64(1); i <= 50; i++ {
		f.ApplyBatch([]*hraft.Log{appendEntry(t, i, int64(i), "a", "b", "c")})
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Applies after the snapshot must not leak into it.
	f.ApplyBatch([]*hraft.Log{appendEntry(t, 51, 51, "a")})
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	if !sink.closed {
		t.Fatal("sink not closed")
	}

	_, dst := openLog(t, 3)
	g := NewFSM(3, dst, slog.Default(), nil)
	if err := g.Restore(io.NopCloser(&sink.Buffer)); err != nil {
		t.Fatal(err)
	}
	if g.AppliedIndex() != 50 || dst.HighWatermark() != 150 {
		t.Fatalf("restored applied %d, high watermark %d", g.AppliedIndex(), dst.HighWatermark())
	}
	// The restored replica continues exactly where the source was.
	res := g.ApplyBatch([]*hraft.Log{appendEntry(t, 51, 51, "a")})
	if got := res[0].(*appendResult).assigned; fmt.Sprint(got) != fmt.Sprint([]Assigned{{Offset: 150, Sequence: 51}}) {
		t.Fatalf("after restore assigned %v", got)
	}
	a, _ := src.Read(0, 1000, 1<<30)
	b, _ := dst.Read(0, 1000, 1<<30)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatal("restored log differs from the source")
	}
}

func BenchmarkFSMApplyBatch(b *testing.B) {
	_, lp := openLog(b, 1)
	f := NewFSM(1, lp, slog.Default(), nil)
	tenants := make([]string, 1000)
	for i := range tenants {
		tenants[i] = fmt.Sprintf("tenant-%d", i%16)
	}
	body := bytes.Repeat([]byte("x"), 128)
	cmd := &partitionpb.AppendCommand{ProducedAtUnixNano: 1}
	for _, tn := range tenants {
		cmd.Records = append(cmd.Records, &partitionpb.AppendRecord{TenantId: tn, Event: body})
	}
	data, err := encodeAppend(cmd)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f.ApplyBatch([]*hraft.Log{{Index: uint64(i + 1), Type: hraft.LogCommand, Data: data}})
	}
	b.ReportMetric(float64(b.N*len(tenants))/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkEncodeAppend(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 128)
	cmd := &partitionpb.AppendCommand{ProducedAtUnixNano: 1}
	for i := 0; i < 1000; i++ {
		cmd.Records = append(cmd.Records, &partitionpb.AppendRecord{TenantId: "tenant", Event: body})
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := encodeAppend(cmd); err != nil {
			b.Fatal(err)
		}
	}
}

// TestFSMCountsSnapshotsAndRestores: a persisted snapshot and a restore
// each count once, so that a run can report how often the paths were taken.
func TestFSMCountsSnapshotsAndRestores(t *testing.T) {
	m := NewMetrics()
	_, src := openLog(t, 3)
	f := NewFSM(3, src, slog.Default(), nil)
	f.metrics = m
	f.ApplyBatch([]*hraft.Log{appendEntry(t, 1, 1, "a")})
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	_, dst := openLog(t, 3)
	g := NewFSM(3, dst, slog.Default(), nil)
	g.metrics = m
	if err := g.Restore(io.NopCloser(&sink.Buffer)); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m.snapshots); got != 1 {
		t.Errorf("snapshots counted %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.restores); got != 1 {
		t.Errorf("restores counted %v, want 1", got)
	}
}
