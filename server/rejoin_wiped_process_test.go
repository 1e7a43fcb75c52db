package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldpb"
)

// A node whose data directory is wiped while it is down, restarted with
// --rejoin, is demoted in the controller and in every partition group,
// catches up as a non-voter and is promoted again, never bootstrapping a
// group; producers keep going meanwhile. Every acknowledged event ends
// present exactly once, at its acknowledged offset, and the node's own log
// equals its peers'.
func TestProcessesWipedNodeRejoinsEveryGroup(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	const partitions = 3
	began := time.Now()
	pc := startProcCluster(t, 3)
	t.Logf("%s: cluster up", time.Since(began).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cl, err := client.New(ctx, client.Config{Servers: pc.grpc})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.CreateTopic(ctx, &heraldpb.TopicConfig{Name: "ledger", Partitions: partitions, ReplicationFactor: 3,
		AutoTenants: true, DedupeWindowMs: time.Hour.Milliseconds()}); err != nil {
		t.Fatal(err)
	}
	w := startRejoinWorkload(t, ctx, cl)
	w.waitAcked(t, 300)
	t.Logf("%s: 300 acknowledged", time.Since(began).Round(time.Millisecond))
	victim := (pc.leaderOf(ctx, cl, "ledger", 0) + 1) % 3
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(pc.dirs[victim], "node.log"))
			for _, line := range strings.Split(string(b), "\n") {
				if strings.Contains(line, "rejoin") || strings.Contains(line, "bootstrap") {
					t.Log(line)
				}
			}
		}
	})

	t.Logf("wiping %s", pc.ids[victim])
	before := w.ackedCount()
	if err := pc.c.Wipe(victim); err != nil { // kills it; keeps node.log for diagnosis
		t.Fatal(err)
	}
	w.waitAcked(t, before+100) // the other two keep committing
	t.Logf("%s: restarting %s with --rejoin", time.Since(began).Round(time.Millisecond), pc.ids[victim])
	pc.start(victim) // with --rejoin: Wipe set it
	pc.waitReady(victim)
	t.Logf("%s: %s ready", time.Since(began).Round(time.Millisecond), pc.ids[victim])
	eventually(t, 60*time.Second, func() error {
		if got := promotions(t, pc.http[victim]); got != 1+partitions {
			return fmt.Errorf("%s: %v promotions, want %d (the controller and every partition)", pc.ids[victim], got, 1+partitions)
		}
		left, _ := filepath.Glob(filepath.Join(pc.dirs[victim], "raft", "*.rejoin"))
		if _, err := os.Stat(filepath.Join(pc.dirs[victim], wipedMarkerFile)); err == nil {
			left = append(left, wipedMarkerFile)
		}
		if len(left) > 0 {
			return fmt.Errorf("rejoin markers left: %v", left)
		}
		return nil
	})
	t.Logf("%s: %s promoted in every group", time.Since(began).Round(time.Millisecond), pc.ids[victim])
	w.waitAcked(t, w.ackedCount()+50)
	acked := w.stop(t)

	st, err := cl.ClusterStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	voter := func(s string) bool { return s == "Follower" || s == "Leader" }
	for _, node := range st.GetNodes() {
		if node.GetId() == pc.ids[victim] && !voter(node.GetControllerState()) {
			t.Fatalf("%s's controller is %q after its rejoin", node.GetId(), node.GetControllerState())
		}
	}
	for _, p := range st.GetPartitions() {
		found := false
		for _, rs := range p.GetReplicaStatus() {
			if rs.GetNodeId() == pc.ids[victim] {
				found = true
				if !voter(rs.GetState()) {
					t.Fatalf("partition %d on %s is %q after its rejoin", p.GetIndex(), rs.GetNodeId(), rs.GetState())
				}
			}
		}
		if !found {
			t.Fatalf("partition %d reports no replica on %s", p.GetIndex(), pc.ids[victim])
		}
	}

	// Every node's own log of every partition: identical, each acknowledged
	// event exactly once, at its acknowledged partition and offset.
	seen := map[string]int{}
	total := 0
	for p := range uint32(partitions) {
		var logs [3][]*heraldpb.Event
		eventually(t, 30*time.Second, func() error {
			for node := range 3 {
				evs, err := pc.readAll(ctx, node, "ledger", p)
				if err != nil {
					return err
				}
				logs[node] = evs
			}
			if len(logs[0]) != len(logs[1]) || len(logs[0]) != len(logs[2]) {
				return fmt.Errorf("partition %d: lengths differ: %d %d %d", p, len(logs[0]), len(logs[1]), len(logs[2]))
			}
			return nil
		})
		total += len(logs[0])
		for i, ev := range logs[0] {
			if ev.Offset != uint64(i) {
				t.Fatalf("partition %d: offsets not dense at %d: %d", p, i, ev.Offset)
			}
			seen[ev.EventId]++
			for node := 1; node < 3; node++ {
				o := logs[node][i]
				if o.EventId != ev.EventId || o.Sequence != ev.Sequence || string(o.Payload) != string(ev.Payload) {
					t.Fatalf("partition %d offset %d differs on %s: %+v vs %+v", p, i, pc.ids[node], o, ev)
				}
			}
			if off, ok := acked[ev.EventId]; ok && (off != ev.Offset || w.parts[ev.EventId] != p) {
				t.Fatalf("event %s acknowledged at %d/%d, found at %d/%d", ev.EventId, w.parts[ev.EventId], off, p, ev.Offset)
			}
		}
	}
	for id := range acked {
		if seen[id] != 1 {
			t.Fatalf("acknowledged event %s present %d times", id, seen[id])
		}
	}
	t.Logf("%s: %d events acknowledged, %d in the log", time.Since(began).Round(time.Millisecond), len(acked), total)
}
