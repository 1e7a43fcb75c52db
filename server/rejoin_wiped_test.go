package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
	heraldraft "github.com/heraldlog/herald/raft"
	"github.com/heraldlog/herald/server/controller"
)

// Config.Rejoin leaves groups that have Raft state alone, and a partition
// pass left pending by a crash (<data>/rejoin-wiped) resumes at the next
// start without the flag: a partition group without state rejoins from its
// peers instead of being bootstrapped.
func TestRejoinWipedOnlyTouchesGroupsWithoutState(t *testing.T) {
	f := newRejoinFixture(t)
	c, hc, gid, raftDir, promoted, produce := f.c, f.hc, f.gid, f.groupDir, f.promoted, f.produce
	const victim = rejoinVictim
	pendingGone := func() error {
		if _, err := os.Stat(filepath.Join(c.dirs[victim], wipedMarkerFile)); !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s still there (%v)", wipedMarkerFile, err)
		}
		return nil
	}

	t.Run("state kept: no-op", func(t *testing.T) {
		c.stop(victim)
		produce(5)
		c.cfgs[victim].Rejoin = true
		c.restart(victim)
		c.cfgs[victim].Rejoin = false
		eventually(t, 30*time.Second, pendingGone)
		c.waitRejoined(victim, gid, "ledger", f.produced)
		for _, g := range []uint64{controller.GroupID, gid} {
			if _, err := os.Stat(heraldraft.RejoinMarkerPath(raftDir(g))); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("group %d got a rejoin marker though it has state (%v)", g, err)
			}
		}
		if promoted() != 0 {
			t.Fatalf("promotions: %v, want none", promoted())
		}
		// A topic created after the pass bootstraps normally on the node.
		later := createTopic(t, hc, "later", 1, 3)
		produceRetry(t, hc, "later", &heraldpb.Event{TenantId: "acme", Payload: []byte("x")})
		eventually(t, 30*time.Second, func() error {
			if c.nodes[victim].replica(later.Partitions[0].GroupId) == nil {
				return errors.New("replica of the later topic not open")
			}
			return nil
		})
		if c.nodes[victim].rejoins.count() != 0 {
			t.Fatal("the later topic's group rejoins instead of bootstrapping")
		}
	})

	t.Run("pending pass resumes without the flag", func(t *testing.T) {
		c.stop(victim)
		if err := os.RemoveAll(raftDir(gid)); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(c.dirs[victim], wipedMarkerFile), []byte(wipedReason+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		produce(10)
		c.restart(victim) // Config.Rejoin false
		c.waitRejoined(victim, gid, "ledger", f.produced)
		eventually(t, 30*time.Second, pendingGone)
		if promoted() != 1 {
			t.Fatalf("promotions: %v, want 1 (the partition group)", promoted())
		}
	})
}

// TestRejoinWipedWithoutPeersIsRefused: --rejoin on an empty data directory
// without --peers has no one to ask for its demotion; the node refuses to
// start with an error naming --peers instead of waiting forever.
func TestRejoinWipedWithoutPeersIsRefused(t *testing.T) {
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer gl.Close()
	defer hl.Close()
	n, err := StartNode(Config{NodeID: "n1", DataDir: t.TempDir(), GRPCAddr: gl.Addr().String(), HTTPAddr: hl.Addr().String(),
		Rejoin: true, Logger: testLogger(t), GRPCListener: gl, HTTPListener: hl})
	if err == nil {
		n.Close()
		t.Fatal("a wiped node with --rejoin and no peers started")
	}
	if !strings.Contains(err.Error(), "--peers") {
		t.Fatalf("error does not say what to do: %v", err)
	}
}
