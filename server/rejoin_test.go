package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
	dto "github.com/prometheus/client_model/go"

	"github.com/heraldlog/herald/client/heraldpb"
	heraldraft "github.com/heraldlog/herald/raft"
	"github.com/heraldlog/herald/server/controller"
)

// groupLeader returns the in-process Raft instance leading group gid.
func (c *testCluster) groupLeader(gid uint64) (*hraft.Raft, error) {
	for _, n := range c.nodes {
		if n == nil {
			continue
		}
		var rf *hraft.Raft
		if gid == controller.GroupID {
			rf = n.controller.Raft()
		} else if r := n.replica(gid); r != nil {
			rf = r.Raft()
		}
		if rf != nil && rf.State() == hraft.Leader {
			return rf, nil
		}
	}
	return nil, fmt.Errorf("group %d has no leader", gid)
}

// suffrage is node id's suffrage in group gid as its leader sees it.
func (c *testCluster) suffrage(gid uint64, id string) (hraft.ServerSuffrage, error) {
	rf, err := c.groupLeader(gid)
	if err != nil {
		return 0, err
	}
	f := rf.GetConfiguration()
	if err := f.Error(); err != nil {
		return 0, err
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == id {
			return s.Suffrage, nil
		}
	}
	return 0, fmt.Errorf("%s not in group %d", id, gid)
}

// localEvents reads a whole partition from node i's own replica.
func (c *testCluster) localEvents(i int, topic string) ([]*heraldpb.Event, error) {
	hc := c.rawClient(i)
	ctx, cancel := context.WithTimeout(forwardContext(context.Background()), 5*time.Second)
	defer cancel()
	resp, err := hc.Fetch(ctx, &heraldpb.FetchRequest{Topic: topic, Start: &heraldpb.FetchRequest_Offset{Offset: 0}, MaxEvents: 10000})
	if err != nil {
		return nil, err
	}
	return resp.Events, nil
}

// waitRejoined waits until node i's replica of gid is a voter again, its
// marker is gone, and (for a partition) it holds the same n events as node 0.
func (c *testCluster) waitRejoined(i int, gid uint64, topic string, n int) {
	c.t.Helper()
	id := c.cfgs[i].NodeID
	eventually(c.t, 30*time.Second, func() error {
		if _, err := os.Stat(heraldraft.RejoinMarkerPath(filepath.Join(c.dirs[i], "raft", fmt.Sprintf("g%d", gid)))); !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("marker of group %d still there (%v)", gid, err)
		}
		if s, err := c.suffrage(gid, id); err != nil || s != hraft.Voter {
			return fmt.Errorf("%s in group %d: %v %v", id, gid, s, err)
		}
		if topic == "" {
			return nil
		}
		want, err := c.localEvents(0, topic)
		if err != nil {
			return err
		}
		got, err := c.localEvents(i, topic)
		if err != nil {
			return err
		}
		if len(got) != n || len(want) != n {
			return fmt.Errorf("%d events on %s, %d on n1, want %d", len(got), id, len(want), n)
		}
		for k := range got {
			if got[k].Offset != want[k].Offset || string(got[k].Payload) != string(want[k].Payload) || got[k].Sequence != want[k].Sequence {
				return fmt.Errorf("event %d differs: %+v vs %+v", k, got[k], want[k])
			}
		}
		return nil
	})
}

// The node drives the rejoin from whatever stage a crash left in the
// marker: damage found at apply (stage damaged, directory still there),
// a crash after the leader demoted it (stage demoted), and damage of the
// controller group (its demotion awaited before the node serves).
func TestRejoinResumesFromEveryStage(t *testing.T) {
	f := newRejoinFixture(t)
	c, hc, gid, dir, promoted, produce := f.c, f.hc, f.gid, f.groupDir, f.promoted, f.produce
	const victim = rejoinVictim

	t.Run("damaged at apply", func(t *testing.T) {
		c.stop(victim)
		if err := heraldraft.MarkDamaged(dir(gid), gid, "test: entry damaged at apply"); err != nil {
			t.Fatal(err)
		}
		produce(10)
		c.restart(victim)
		c.waitRejoined(victim, gid, "ledger", f.produced)
		if moved, _ := filepath.Glob(dir(gid) + ".damaged-*"); len(moved) != 1 {
			t.Fatalf("damaged directory not moved aside: %v", moved)
		}
		if promoted() != 1 {
			t.Fatalf("promotions counted: %v", promoted())
		}
	})

	t.Run("crash after demotion", func(t *testing.T) {
		c.stop(victim)
		eventually(t, 20*time.Second, func() error {
			rf, err := c.groupLeader(gid)
			if err != nil {
				return err
			}
			return rf.DemoteVoter(hraft.ServerID(c.cfgs[victim].NodeID), 0, 5*time.Second).Error()
		})
		rf, err := c.groupLeader(gid)
		if err != nil {
			t.Fatal(err)
		}
		if err := heraldraft.WriteRejoinMarker(dir(gid), &heraldraft.RejoinMarker{Group: gid, Stage: heraldraft.RejoinDemoted,
			Reason: "test", CatchUpIndex: rf.LastIndex()}); err != nil {
			t.Fatal(err)
		}
		produce(10)
		c.restart(victim)
		c.waitRejoined(victim, gid, "ledger", f.produced)
		if moved, _ := filepath.Glob(dir(gid) + ".damaged-*"); len(moved) != 1 {
			t.Fatalf("a verified demoted replica must keep its state: %v", moved)
		}
	})

	t.Run("controller damaged", func(t *testing.T) {
		c.stop(victim)
		if err := heraldraft.MarkDamaged(dir(controller.GroupID), controller.GroupID, "test: controller damaged"); err != nil {
			t.Fatal(err)
		}
		createTenant(t, hc, "globex") // a registry change the victim misses
		produce(5)
		// Without --peers: the peers come from the node's other groups.
		peers := c.cfgs[victim].Peers
		c.cfgs[victim].Peers = nil
		c.restart(victim)
		c.cfgs[victim].Peers = peers
		c.waitRejoined(victim, controller.GroupID, "ledger", f.produced)
		if _, ok := c.nodes[victim].controllerFSM.Tenant("globex"); !ok {
			t.Fatal("rejoined controller misses a tenant created while it was down")
		}
		if moved, _ := filepath.Glob(dir(controller.GroupID) + ".damaged-*"); len(moved) != 1 {
			t.Fatalf("damaged controller directory not moved aside: %v", moved)
		}
	})
}

// rejoinVictim is the node the rejoin tests damage.
const rejoinVictim = 2

// rejoinFixture is what the in-process rejoin tests share: a three-node
// cluster with a one-partition topic "ledger" (group gid) holding the
// first events of tenant acme, and helpers about the victim's groups.
type rejoinFixture struct {
	t        *testing.T
	c        *testCluster
	hc       heraldpb.HeraldClient
	gid      uint64
	produced int // events of acme produced so far
}

func newRejoinFixture(t *testing.T) *rejoinFixture {
	c := startCluster(t, 3)
	hc := c.rawClient(0)
	topic := createTopic(t, hc, "ledger", 1, 3)
	createTenant(t, hc, "acme")
	f := &rejoinFixture{t: t, c: c, hc: hc, gid: topic.Partitions[0].GroupId}
	f.produce(20)
	return f
}

// produce produces k more events of acme to "ledger".
func (f *rejoinFixture) produce(k int) {
	for range k {
		produceRetry(f.t, f.hc, "ledger", &heraldpb.Event{TenantId: "acme", Payload: []byte(fmt.Sprint(f.produced))})
		f.produced++
	}
}

// groupDir is the victim's Raft directory of group g.
func (f *rejoinFixture) groupDir(g uint64) string {
	return filepath.Join(f.c.dirs[rejoinVictim], "raft", fmt.Sprintf("g%d", g))
}

// promoted is the victim's count of promotions after a rejoin.
func (f *rejoinFixture) promoted() float64 {
	var m dto.Metric
	if err := f.c.nodes[rejoinVictim].metrics.rejoins.WithLabelValues(rejoinStagePromoted).Write(&m); err != nil {
		f.t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
