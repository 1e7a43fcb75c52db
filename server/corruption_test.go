package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldpb"
)

// A node whose Pebble log was damaged while it was down ends with the same
// log as its peers and nothing acknowledged is lost:
//   - a kill -9 loses the batches in Pebble's memtables: the log runs
//     without Pebble's write-ahead log (the Raft log is one; see
//     docs/architecture.md), so it comes back at its last flush, a
//     consistent prefix (records and applied index are written in one
//     batch), and Raft replays the rest from the node's own Raft log;
//   - damage found while applying (the state machine leaves the marker
//     pebble.corrupt before it stops the node; written by hand here): the
//     next start moves the log aside and rebuilds every replica from Raft.
//     A log Pebble refuses to open (a damaged manifest or an older WAL)
//     takes the same path.
func TestProcessesDamagedLogIsRebuiltFromRaft(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	pc := startProcCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := client.New(ctx, client.Config{Servers: pc.grpc})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.CreateTopic(ctx, &heraldpb.TopicConfig{Name: "ledger", Partitions: 1, ReplicationFactor: 3, AutoTenants: true}); err != nil {
		t.Fatal(err)
	}
	p, err := cl.NewProducer(ctx, "ledger")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	send := func(from, to int) {
		t.Helper()
		for i := from; i < to; i += 10 {
			var events []*heraldpb.Event
			for k := i; k < i+10; k++ {
				events = append(events, &heraldpb.Event{TenantId: fmt.Sprintf("t%d", k%4), EventId: fmt.Sprintf("e%d", k), Payload: []byte(fmt.Sprint(k))})
			}
			if _, err := p.Send(ctx, events...); err != nil {
				t.Fatal(err)
			}
		}
	}
	send(0, 500)
	victim := 2
	eventually(t, 10*time.Second, func() error {
		evs, err := pc.readAll(ctx, victim, "ledger", 0)
		if err != nil {
			return err
		}
		if len(evs) != 500 {
			return fmt.Errorf("victim has %d events", len(evs))
		}
		return nil
	})
	pc.kill(victim)

	requireNoWAL(t, filepath.Join(pc.dirs[victim], "pebble"))
	send(500, 700) // the other two still form a quorum
	pc.start(victim)
	pc.waitReady(victim)
	converged(t, ctx, pc, 700)

	pc.kill(victim)
	if err := os.WriteFile(filepath.Join(pc.dirs[victim], "pebble.corrupt"), []byte("test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	send(700, 800)
	pc.start(victim)
	pc.waitReady(victim)
	moved, _ := filepath.Glob(filepath.Join(pc.dirs[victim], "pebble.corrupt-*"))
	if len(moved) != 1 {
		t.Fatalf("log marked damaged was not moved aside: %v", moved)
	}
	converged(t, ctx, pc, 800)
}

// requireNoWAL fails t if a Pebble write-ahead log in dir holds any byte:
// the node's log runs without one, so a kill -9 loses the memtables.
func requireNoWAL(t *testing.T, dir string) {
	t.Helper()
	logs, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range logs {
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if info.Size() != 0 {
			t.Fatalf("pebble write-ahead log %s holds %d bytes; the log should run without one", path, info.Size())
		}
	}
}

// converged waits until every node's own replica holds the same n events.
func converged(t *testing.T, ctx context.Context, pc *procCluster, n int) {
	t.Helper()
	eventually(t, 30*time.Second, func() error {
		var logs [3][]*heraldpb.Event
		for node := range 3 {
			evs, err := pc.readAll(ctx, node, "ledger", 0)
			if err != nil {
				return err
			}
			logs[node] = evs
		}
		for node := range 3 {
			if len(logs[node]) != n {
				return fmt.Errorf("%s has %d events", pc.ids[node], len(logs[node]))
			}
			for i, ev := range logs[node] {
				o := logs[0][i]
				if ev.Offset != uint64(i) || ev.EventId != o.EventId || ev.Sequence != o.Sequence || string(ev.Payload) != string(o.Payload) {
					return fmt.Errorf("%s differs at %d: %+v vs %+v", pc.ids[node], i, ev, o)
				}
			}
		}
		return nil
	})
}
