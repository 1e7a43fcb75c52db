package server

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/server/proccluster"
)

// procCluster runs real `herald serve` processes through the shared
// harness; its fields keep the layout at hand for the tests.
type procCluster struct {
	t    *testing.T
	c    *proccluster.Cluster
	ids  []string
	grpc []string
	http []string
	dirs []string
}

// startProcCluster starts size nodes, each logging to <data>/node.log,
// and waits until every one is ready. The nodes stop when the test ends.
func startProcCluster(t *testing.T, size int) *procCluster {
	t.Helper()
	nodes, err := proccluster.Layout(t.TempDir(), size)
	if err != nil {
		t.Fatal(err)
	}
	pc := &procCluster{t: t}
	for i := range nodes {
		nodes[i].LogPath = filepath.Join(nodes[i].DataDir, "node.log")
		pc.ids = append(pc.ids, nodes[i].ID)
		pc.grpc = append(pc.grpc, nodes[i].GRPCAddr)
		pc.http = append(pc.http, nodes[i].HTTPAddr)
		pc.dirs = append(pc.dirs, nodes[i].DataDir)
	}
	pc.c, err = proccluster.New(proccluster.Config{Binary: proccluster.TestBinary(t), Nodes: nodes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pc.stopAll)
	if err := pc.c.StartAll(); err != nil {
		t.Fatal(err)
	}
	for i := range size {
		pc.waitReady(i)
	}
	return pc
}

// waitReady waits until node i reports ready: a controller leader is
// known and every replica assigned to it is open.
func (pc *procCluster) waitReady(i int) {
	pc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pc.c.AwaitReady(ctx, i); err != nil {
		pc.t.Fatal(err)
	}
}

// start starts node i's process with extra serve flags, if any.
func (pc *procCluster) start(i int, flags ...string) {
	pc.t.Helper()
	if err := pc.c.Start(i, flags...); err != nil {
		pc.t.Fatal(err)
	}
}

func (pc *procCluster) kill(i int) {
	pc.t.Helper()
	if err := pc.c.Kill(i); err != nil {
		pc.t.Fatal(err)
	}
}

// stop stops node i's process cleanly (SIGTERM, then waits for it).
func (pc *procCluster) stop(i int) {
	pc.t.Helper()
	if err := pc.c.Stop(i); err != nil {
		pc.t.Fatal(err)
	}
}

func (pc *procCluster) stopAll() {
	if err := pc.c.Close(); err != nil {
		pc.t.Error(err)
	}
	if pc.t.Failed() {
		for i, d := range pc.dirs {
			if b, err := os.ReadFile(pc.c.Node(i).LogPath); err == nil {
				lines := strings.Split(string(b), "\n")
				pc.t.Logf("--- %s (last lines)\n%s", d, strings.Join(lines[max(0, len(lines)-40):], "\n"))
			}
		}
	}
}

type ackedEvent struct {
	tenant    string
	partition uint32
	offset    uint64
	sequence  uint64
}

// TestProcessesLeaderKilledMidStream is the foundation's acceptance test:
// three real `herald serve` processes, 10,000 events from several
// goroutines and tenants, the leader of a partition killed with SIGKILL in
// the middle and restarted. Every acknowledged event must be present
// exactly once at the acknowledged position, offsets dense, tenant
// sequences 1..n, and all replicas identical. Plain producers never resend
// an ambiguous write, so some events may end with an unknown outcome.
func TestProcessesLeaderKilledMidStream(t *testing.T) {
	testLeaderKilledMidStream(t, false)
}

// TestProcessesIdempotentProducersRetryThroughLeaderKill is the same
// scenario with idempotent producers that resend every failed send: every
// event must end acknowledged, exactly once, with dense tenant sequences.
func TestProcessesIdempotentProducersRetryThroughLeaderKill(t *testing.T) {
	testLeaderKilledMidStream(t, true)
}

func testLeaderKilledMidStream(t *testing.T, idempotent bool) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	const (
		total     = 10_000
		producers = 8
		batch     = 10
	)
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))

	pc := startProcCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cl, err := client.New(ctx, client.Config{Servers: pc.grpc})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.CreateTopic(ctx, &heraldpb.TopicConfig{Name: "orders", Partitions: 3, ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		if _, err := cl.CreateTenant(ctx, &heraldpb.Tenant{Id: fmt.Sprintf("tenant-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	victimPartition := uint32(rng.IntN(3))

	var (
		mu        sync.Mutex
		acked     = map[string]ackedEvent{} // event id -> where
		unknown   = map[string]bool{}       // outcome unknown: may or may not be present once
		ackCount  int
		killOnce  sync.Once
		killed    = make(chan int, 1)
		perWorker = total / producers
	)
	var wg sync.WaitGroup
	for w := range producers {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			send := func(events []*heraldpb.Event) ([]*heraldpb.ProduceResult, error) {
				return cl.Produce(ctx, "orders", events...)
			}
			if idempotent {
				p, err := cl.NewProducer(ctx, "orders")
				if err != nil {
					t.Error(err)
					return
				}
				defer p.Close()
				send = func(events []*heraldpb.Event) ([]*heraldpb.ProduceResult, error) {
					return p.Send(ctx, events...)
				}
			}
			for i := 0; i < perWorker; i += batch {
				events := make([]*heraldpb.Event, 0, batch)
				for k := i; k < i+batch && k < perWorker; k++ {
					tenant := fmt.Sprintf("tenant-%d", (w+k)%6)
					events = append(events, &heraldpb.Event{
						EventId:  fmt.Sprintf("w%d-e%d", w, k),
						TenantId: tenant,
						Payload:  []byte(fmt.Sprintf("payload %d/%d", w, k)),
					})
				}
				for attempt := 0; len(events) > 0; attempt++ {
					res, err := send(events)
					// Acknowledged events (all, or some when one partition's
					// group failed) are recorded and never sent again.
					var rest []*heraldpb.Event
					mu.Lock()
					for j, r := range res {
						if r == nil {
							rest = append(rest, events[j])
							continue
						}
						acked[events[j].EventId] = ackedEvent{tenant: events[j].TenantId, partition: r.Partition, offset: r.Offset, sequence: r.Sequence}
						ackCount++
					}
					if res == nil {
						rest = events
					}
					n := ackCount
					mu.Unlock()
					if n >= total/3 {
						killOnce.Do(func() { killed <- 1 })
					}
					events = rest
					if err == nil {
						break
					}
					if errors.Is(err, client.ErrUnknownOutcome) || ctx.Err() != nil {
						// Without idempotent producers a resend could
						// duplicate: record and move on.
						mu.Lock()
						for _, ev := range events {
							unknown[ev.EventId] = true
						}
						if len(unknown) <= 3*batch {
							t.Logf("worker %d: unknown outcome: %v", w, err)
						}
						mu.Unlock()
						break
					}
					// Definitely not written (no leader, not leader, node
					// unreachable before sending): safe to send again.
					retriable := errors.Is(err, client.ErrNoLeader) || errors.Is(err, client.ErrNotLeader) || errors.Is(err, client.ErrUnavailable)
					if !retriable || attempt > 200 {
						t.Errorf("worker %d: giving up: %v", w, err)
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		}(w)
	}

	// Kill the leader of one partition mid-stream, then restart it.
	workersDone := make(chan struct{})
	go func() { wg.Wait(); close(workersDone) }()
	select {
	case <-killed:
	case <-workersDone:
		t.Fatal("producers stopped before a third of the events was acknowledged")
	case <-ctx.Done():
		t.Fatal("producers made no progress")
	}
	victim := pc.leaderOf(ctx, cl, "orders", victimPartition)
	t.Logf("killing %s, leader of partition %d", pc.ids[victim], victimPartition)
	pc.kill(victim)
	time.Sleep(time.Second)
	pc.start(victim)
	<-workersDone
	if t.Failed() {
		return
	}
	t.Logf("acknowledged %d events, %d with unknown outcome", len(acked), len(unknown))
	if len(acked)+len(unknown) != total {
		t.Fatalf("accounted for %d events, produced %d", len(acked)+len(unknown), total)
	}
	if idempotent && len(unknown) > 0 {
		t.Fatalf("idempotent producers gave up on %d events", len(unknown))
	}

	// Wait until every replica has the same high watermark, then compare.
	var logs [3][3][]*heraldpb.Event // node, partition
	eventually(t, 60*time.Second, func() error {
		for node := range 3 {
			for p := range uint32(3) {
				evs, err := pc.readAll(ctx, node, "orders", p)
				if err != nil {
					return fmt.Errorf("node %s partition %d: %w", pc.ids[node], p, err)
				}
				logs[node][p] = evs
			}
		}
		for p := range 3 {
			if len(logs[0][p]) != len(logs[1][p]) || len(logs[0][p]) != len(logs[2][p]) {
				return fmt.Errorf("partition %d lengths differ: %d %d %d", p, len(logs[0][p]), len(logs[1][p]), len(logs[2][p]))
			}
		}
		return nil
	})

	seen := map[string]int{}
	for p := range uint32(3) {
		nextSeq := map[string]uint64{}
		for i, ev := range logs[0][p] {
			if ev.Offset != uint64(i) {
				t.Fatalf("partition %d: offsets not dense: index %d has offset %d", p, i, ev.Offset)
			}
			nextSeq[ev.TenantId]++
			if ev.Sequence != nextSeq[ev.TenantId] {
				t.Fatalf("partition %d: tenant %s sequence %d at offset %d, want %d", p, ev.TenantId, ev.Sequence, ev.Offset, nextSeq[ev.TenantId])
			}
			if client.PartitionForTenant(ev.TenantId, 3) != p {
				t.Fatalf("tenant %s found in partition %d", ev.TenantId, p)
			}
			seen[ev.EventId]++
			for node := 1; node < 3; node++ {
				o := logs[node][p][i]
				if o.EventId != ev.EventId || o.Offset != ev.Offset || o.Sequence != ev.Sequence || o.TenantId != ev.TenantId ||
					string(o.Payload) != string(ev.Payload) || o.ProducedAtUnixNano != ev.ProducedAtUnixNano {
					t.Fatalf("partition %d offset %d differs on %s: %+v vs %+v", p, i, pc.ids[node], o, ev)
				}
			}
			if a, ok := acked[ev.EventId]; ok && (a.partition != p || a.offset != ev.Offset || a.sequence != ev.Sequence) {
				t.Fatalf("event %s acknowledged at %d/%d seq %d, found at %d/%d seq %d", ev.EventId, a.partition, a.offset, a.sequence, p, ev.Offset, ev.Sequence)
			}
			if _, ok := acked[ev.EventId]; !ok && !unknown[ev.EventId] {
				t.Fatalf("event %s in the log was never produced", ev.EventId)
			}
		}
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("event %s present %d times", id, n)
		}
	}
	var missing []string
	for id := range acked {
		if seen[id] != 1 {
			missing = append(missing, id)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("%d acknowledged events lost, e.g. %v", len(missing), missing[:min(5, len(missing))])
	}
}

func (pc *procCluster) leaderOf(ctx context.Context, cl *client.Client, topic string, p uint32) int {
	pc.t.Helper()
	var leader string
	eventually(pc.t, 20*time.Second, func() error {
		st, err := cl.ClusterStatus(ctx)
		if err != nil {
			return err
		}
		for _, ps := range st.Partitions {
			if ps.Topic == topic && ps.Index == p && ps.LeaderId != "" {
				leader = ps.LeaderId
				return nil
			}
		}
		return fmt.Errorf("no leader for %s/%d", topic, p)
	})
	for i, id := range pc.ids {
		if id == leader {
			return i
		}
	}
	pc.t.Fatalf("leader %s is not a node", leader)
	return -1
}

// readAll reads a whole partition from one node's local replica.
func (pc *procCluster) readAll(ctx context.Context, node int, topic string, p uint32) ([]*heraldpb.Event, error) {
	hc := rawClientAt(pc.t, pc.grpc[node])
	var out []*heraldpb.Event
	next := uint64(0)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		// Marked as forwarded so that the node answers from its own
		// replica (or refuses) instead of asking another node.
		resp, err := hc.Fetch(forwardContext(cctx), &heraldpb.FetchRequest{Topic: topic, Partition: p,
			Start: &heraldpb.FetchRequest_Offset{Offset: next}, MaxEvents: 5000})
		cancel()
		if err != nil {
			return nil, err
		}
		out = append(out, resp.Events...)
		next = resp.NextOffset
		if len(resp.Events) == 0 || next >= resp.HighWatermark {
			return out, nil
		}
	}
}
