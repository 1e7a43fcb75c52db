package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// counterValue reads a Prometheus counter of a test node.
func counterValue(t *testing.T, c interface{ Write(*dto.Metric) error }) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// awaitReconciles waits until node i has run k more reconcile passes after
// its registry caught up with the controller leader's.
func (c *testCluster) awaitReconciles(i, k int) {
	c.t.Helper()
	n := c.nodes[i]
	eventually(c.t, 30*time.Second, func() error {
		if !n.registrySynced.Load() {
			return fmt.Errorf("%s: registry not caught up", n.cfg.NodeID)
		}
		return nil
	})
	from := counterValue(c.t, n.metrics.reconciles)
	eventually(c.t, 30*time.Second, func() error {
		if got := counterValue(c.t, n.metrics.reconciles); got < from+float64(k) {
			return fmt.Errorf("%s: %v reconcile passes of %d", n.cfg.NodeID, got-from, k)
		}
		return nil
	})
}

// copyDir copies a directory tree of regular files.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		dst := filepath.Join(to, rel)
		if info.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, info.Mode())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A group's local state is never deleted because the registry does not
// list the group: that is what a registry not replayed yet looks like. The
// test leaves a replica directory of a group the registry has never heard
// of (a copy of a live one, under an unused id); before deletion became
// tombstone-only, the first reconcile pass with a caught-up registry
// deleted it ("removed replica of deleted partition").
func TestGroupAbsentFromRegistryIsKept(t *testing.T) {
	f := newRejoinFixture(t)
	c := f.c
	c.stop(rejoinVictim)
	stranger := f.groupDir(9999)
	copyDir(t, f.groupDir(f.gid), stranger)
	c.restart(rejoinVictim)
	c.awaitReconciles(rejoinVictim, 3)
	if _, err := os.Stat(filepath.Join(stranger, raftStateFile)); err != nil {
		t.Fatalf("a group absent from the registry lost its state: %v", err)
	}
	if got := counterValue(t, c.nodes[rejoinVictim].metrics.groupsRemoved); got != 0 {
		t.Fatalf("%v groups removed without a tombstone", got)
	}
}

// A deleted topic's replicas are removed on every node by its tombstone,
// including on a node that was down when the topic was deleted.
func TestDeletedTopicIsRemovedByTombstone(t *testing.T) {
	f := newRejoinFixture(t)
	c, hc := f.c, f.hc
	gone := createTopic(t, hc, "gone", 1, 3)
	gid := gone.Partitions[0].GroupId
	produceRetry(t, hc, "gone", &heraldpb.Event{TenantId: "acme", Payload: []byte("x")})
	c.stop(rejoinVictim)
	// The stopped node may have led the controller: retry until a new
	// leader answers (TOPIC_NOT_FOUND after a retry: an earlier try committed).
	eventually(t, 20*time.Second, func() error {
		_, err := hc.DeleteTopic(ctxTimeout(t, 10*time.Second), &heraldpb.DeleteTopicRequest{Name: "gone", Force: true})
		if err := wire.FromStatus(err); err != nil && !errors.Is(err, wire.ErrTopicNotFound) {
			return err
		}
		return nil
	})
	c.restart(rejoinVictim)
	for i := range c.nodes {
		eventually(t, 30*time.Second, func() error {
			if _, err := os.Stat(filepath.Join(c.dirs[i], "raft", fmt.Sprintf("g%d", gid))); !os.IsNotExist(err) {
				return fmt.Errorf("node %d still has group %d (%v)", i, gid, err)
			}
			if !c.nodes[i].controllerFSM.Tombstoned(gid) {
				return fmt.Errorf("node %d has no tombstone for group %d", i, gid)
			}
			return nil
		})
	}
	// The live topic is untouched.
	c.waitRejoined(rejoinVictim, f.gid, "ledger", f.produced)
}

// A replica of a live group (one that has had a leader) that finds no
// local state rejoins from its peers as a non-voter and is promoted once
// caught up; it never bootstraps an empty log (before, it bootstrapped
// and, with an amnesiac vote, could have helped elect a leader missing
// acknowledged entries).
func TestLiveGroupWithoutStateRejoins(t *testing.T) {
	f := newRejoinFixture(t)
	c := f.c
	for i := range c.nodes {
		eventually(t, 20*time.Second, func() error {
			for _, a := range c.nodes[i].controllerFSM.AssignedTo(c.cfgs[i].NodeID) {
				if a.Partition.GroupID == f.gid && a.Partition.Live {
					return nil
				}
			}
			return fmt.Errorf("node %d: group %d not live in its registry", i, f.gid)
		})
	}
	c.stop(rejoinVictim)
	if err := os.RemoveAll(f.groupDir(f.gid)); err != nil {
		t.Fatal(err)
	}
	f.produce(5)
	c.restart(rejoinVictim)
	c.waitRejoined(rejoinVictim, f.gid, "ledger", f.produced)
	if got := f.promoted(); got != 1 {
		t.Fatalf("the replica without state was promoted %v times; want one rejoin", got)
	}
}
