package partition

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/heraldlog/herald/partition/partitionpb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/cockroachdb/pebble/v2/internal/cache.(*Cache).releaseLoop"))
}

// singleNodeRaft runs a one-node Raft group over in-memory stores with the
// partition FSM on a real Pebble log: enough to drive the batcher.
func singleNodeRaft(t *testing.T) (*hraft.Raft, *FSM) {
	t.Helper()
	_, lp := openLog(t, 1)
	fsm := NewFSM(1, lp, slog.Default(), nil)
	conf := hraft.DefaultConfig()
	conf.LocalID = "n1"
	conf.HeartbeatTimeout = 50 * time.Millisecond
	conf.ElectionTimeout = 50 * time.Millisecond
	conf.LeaderLeaseTimeout = 50 * time.Millisecond
	conf.CommitTimeout = 5 * time.Millisecond
	conf.BatchApplyCh = true
	conf.Logger = nil
	conf.LogOutput = discardWriter{}
	store := hraft.NewInmemStore()
	_, trans := hraft.NewInmemTransport("n1")
	r, err := hraft.NewRaft(conf, fsm, store, store, hraft.NewInmemSnapshotStore(), trans)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Shutdown().Error() })
	if err := r.BootstrapCluster(hraft.Configuration{Servers: []hraft.Server{{ID: "n1", Address: trans.LocalAddr()}}}).Error(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.LeaderCh():
	case <-time.After(10 * time.Second):
		t.Fatal("no leader")
	}
	for r.State() != hraft.Leader {
		time.Sleep(time.Millisecond)
	}
	return r, fsm
}

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }

func records(tenant string, n int) []*partitionpb.AppendRecord {
	out := make([]*partitionpb.AppendRecord, n)
	for i := range out {
		out[i] = &partitionpb.AppendRecord{TenantId: tenant, Event: []byte(fmt.Sprint(i))}
	}
	return out
}

func TestBatcherConcurrentCallsGetDenseDistinctPositions(t *testing.T) {
	r, fsm := singleNodeRaft(t)
	opts := DefaultBatcherOptions()
	opts.InflightMax = 2
	metrics := NewMetrics()
	b, err := NewBatcher(1, r, opts, slog.Default(), metrics)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	const callers, calls, perCall = 16, 25, 3
	var mu sync.Mutex
	var offsets []uint64
	seqs := map[string][]uint64{}
	var wg sync.WaitGroup
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tenant := fmt.Sprintf("t%d", c%4)
			for range calls {
				got, _, err := b.Submit(context.Background(), records(tenant, perCall), 0)
				if err != nil {
					t.Error(err)
					return
				}
				if len(got) != perCall {
					t.Errorf("got %d positions for %d records", len(got), perCall)
					return
				}
				// A call's records are appended together, in order.
				for i := 1; i < len(got); i++ {
					if got[i].Offset != got[i-1].Offset+1 || got[i].Sequence != got[i-1].Sequence+1 {
						t.Errorf("call positions not contiguous: %v", got)
					}
				}
				mu.Lock()
				for _, a := range got {
					offsets = append(offsets, a.Offset)
					seqs[tenant] = append(seqs[tenant], a.Sequence)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Slice(offsets, func(i, j int) bool { return offsets[i] < offsets[j] })
	for i, o := range offsets {
		if o != uint64(i) {
			t.Fatalf("offsets not dense and distinct at %d: %d", i, o)
		}
	}
	for tenant, s := range seqs {
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		for i, q := range s {
			if q != uint64(i+1) {
				t.Fatalf("tenant %s sequences not dense at %d: %d", tenant, i, q)
			}
		}
	}
	if hw := fsm.log.HighWatermark(); hw != callers*calls*perCall {
		t.Fatalf("high watermark %d, want %d", hw, callers*calls*perCall)
	}
}

func TestBatcherOversizedCallGoesAlone(t *testing.T) {
	r, _ := singleNodeRaft(t)
	opts := DefaultBatcherOptions()
	opts.BatchRecordsMax = 4
	b, err := NewBatcher(1, r, opts, slog.Default(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got, _, err := b.Submit(context.Background(), records("a", 10), 0)
	if err != nil || len(got) != 10 || got[9].Offset != 9 {
		t.Fatalf("oversized call: %v %v", got, err)
	}
}

// A leader holds at most QueueBytesMax bytes of calls: one more is refused
// at once with QUEUE_FULL and nothing of it is proposed; once the held
// calls are answered the same call goes through. The run loop is stalled by
// taking every inflight slot, so the first call stays held.
func TestBatcherRefusesCallsAboveQueueBytesMax(t *testing.T) {
	r, fsm := singleNodeRaft(t)
	opts := DefaultBatcherOptions()
	opts.BatchBytesMax = 4 << 10
	opts.EntryBytesMax = 8 << 10
	opts.QueueBytesMax = 8 << 10
	metrics := NewMetrics()
	b, err := NewBatcher(1, r, opts, slog.Default(), metrics)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	big := func(tenant string) []*partitionpb.AppendRecord {
		return []*partitionpb.AppendRecord{{TenantId: tenant, Event: make([]byte, 5<<10)}}
	}
	for range cap(b.inflight) {
		b.inflight <- struct{}{}
	}
	held := make(chan error, 1)
	go func() {
		_, _, err := b.Submit(context.Background(), big("a"), 0)
		held <- err
	}()
	for b.queuedBytes.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	before := r.LastIndex()
	_, _, err = b.Submit(context.Background(), big("b"), 0)
	var full *QueueFullError
	if !errors.As(err, &full) || !errors.Is(err, ErrQueueFull) {
		t.Fatalf("second call above QueueBytesMax: %v, want *QueueFullError", err)
	}
	if full.QueuedBytes <= 0 || full.QueueBytesMax != opts.QueueBytesMax {
		t.Fatalf("sizes: %+v", full)
	}
	var m dto.Metric
	if err := metrics.queueFull.Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetCounter().GetValue(); got != 1 {
		t.Fatalf("herald_batcher_queue_full_total = %v, want 1", got)
	}
	// A small call still fits beside the held one.
	smallDone := make(chan error, 1)
	go func() {
		_, _, err := b.Submit(context.Background(), records("c", 1), 0)
		smallDone <- err
	}()
	if last := r.LastIndex(); last != before {
		t.Fatalf("raft log moved from %d to %d while every slot was taken", before, last)
	}
	for range cap(b.inflight) {
		<-b.inflight
	}
	if err := <-held; err != nil {
		t.Fatalf("held call: %v", err)
	}
	if err := <-smallDone; err != nil {
		t.Fatalf("small call: %v", err)
	}
	if _, _, err := b.Submit(context.Background(), big("b"), 0); err != nil {
		t.Fatalf("refused call sent again once the queue drained: %v", err)
	}
	if hw := fsm.log.HighWatermark(); hw != 3 {
		t.Fatalf("high watermark %d, want 3 (held, small, resent; the refused call never written)", hw)
	}
	for b.queuedBytes.Load() != 0 {
		time.Sleep(time.Millisecond) // answered calls release their bytes before the waiter returns
	}
}

func TestBatcherRefusesOnFollowerAndAfterClose(t *testing.T) {
	r, _ := singleNodeRaft(t)
	b, err := NewBatcher(1, r, DefaultBatcherOptions(), slog.Default(), nil)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	if _, _, err := b.Submit(context.Background(), records("a", 1), 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
	if err := r.Shutdown().Error(); err != nil {
		t.Fatal(err)
	}
	b2, err := NewBatcher(1, r, DefaultBatcherOptions(), slog.Default(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if _, _, err := b2.Submit(context.Background(), records("a", 1), 0); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("on a shut-down replica: %v", err)
	}
}

func TestBatcherOptionsValidateReportsEveryProblem(t *testing.T) {
	opts := BatcherOptions{Linger: -1}
	err := opts.Validate()
	if err == nil {
		t.Fatal("zero options accepted")
	}
	for _, field := range []string{"QueueCallsMax", "QueueBytesMax", "BatchRecordsMax", "BatchBytesMax", "InflightMax", "Linger", "EnqueueTimeout"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error does not name %s: %v", field, err)
		}
	}
}
