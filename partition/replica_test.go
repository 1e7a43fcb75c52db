package partition

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	heraldlog "github.com/heraldlog/herald/log"
	"github.com/heraldlog/herald/partition/partitionpb"
	heraldraft "github.com/heraldlog/herald/raft"
)

// replicaNode is one in-process node for replica tests: a Pebble log and a
// gRPC server carrying a raft Mux on 127.0.0.1:0. Everything it starts is
// stopped by the test's cleanup, replicas first.
type replicaNode struct {
	id   string
	addr string
	dir  string
	db   *heraldlog.DB
	mux  *heraldraft.Mux
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("PARTITION_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func startReplicaNode(t testing.TB, id string, mutate func(*heraldraft.MuxOptions)) *replicaNode {
	t.Helper()
	n := &replicaNode{id: id, dir: t.TempDir()}
	db, err := heraldlog.Open(heraldlog.Options{Dir: filepath.Join(n.dir, "pebble"), Logger: testLogger(t)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	n.db = db
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	n.addr = lis.Addr().String()
	opts := heraldraft.MuxOptions{
		LocalAddr:         n.addr,
		Logger:            testLogger(t),
		RPCTimeout:        2 * time.Second,
		ReconnectDelayMax: 200 * time.Millisecond,
	}
	if mutate != nil {
		mutate(&opts)
	}
	mux, err := heraldraft.NewMux(opts)
	require.NoError(t, err)
	n.mux = mux
	server := grpc.NewServer(heraldraft.ServerOptions(opts.MaxMessageBytes)...)
	mux.Register(server)
	serveDone := make(chan struct{})
	go func() {
		defer close(serveDone)
		_ = server.Serve(lis)
	}()
	t.Cleanup(func() {
		_ = mux.Close()
		server.Stop()
		<-serveDone
	})
	return n
}

// testRaftConfig is raft.DefaultConfig with timeouts short enough for quick
// tests but long enough not to flap under -race on two cores.
func testRaftConfig(id string) *hraft.Config {
	c := heraldraft.DefaultConfig(id)
	c.HeartbeatTimeout = 300 * time.Millisecond
	c.ElectionTimeout = 300 * time.Millisecond
	c.LeaderLeaseTimeout = 150 * time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
	return c
}

// openReplica opens group gid's replica on n (its directory under n.dir).
func (n *replicaNode) openReplica(t testing.TB, gid uint64, servers []hraft.Server, conf *hraft.Config) *Replica {
	t.Helper()
	lp, err := n.db.Partition(gid)
	require.NoError(t, err)
	tr, err := n.mux.Transport(gid)
	require.NoError(t, err)
	if conf == nil {
		conf = testRaftConfig(n.id)
	}
	r, err := OpenReplica(ReplicaConfig{
		GroupID:   gid,
		NodeID:    n.id,
		Dir:       filepath.Join(n.dir, fmt.Sprintf("g%d", gid)),
		Log:       lp,
		Transport: tr,
		Servers:   servers,
		Logger:    testLogger(t),
		Metrics:   NewMetrics(),
		Batcher:   DefaultBatcherOptions(),
		Raft:      conf,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func voters(nodes ...*replicaNode) []hraft.Server {
	out := make([]hraft.Server, len(nodes))
	for i, n := range nodes {
		out[i] = hraft.Server{Suffrage: hraft.Voter, ID: hraft.ServerID(n.id), Address: hraft.ServerAddress(n.addr)}
	}
	return out
}

// awaitLeader waits until exactly one of replicas leads and returns it.
func awaitLeader(t testing.TB, replicas ...*Replica) *Replica {
	t.Helper()
	var leader *Replica
	require.Eventually(t, func() bool {
		leader = nil
		for _, r := range replicas {
			if r.IsLeader() {
				if leader != nil {
					return false
				}
				leader = r
			}
		}
		return leader != nil
	}, 20*time.Second, 10*time.Millisecond, "no single leader")
	return leader
}

func produce(t testing.TB, r *Replica, recs []*partitionpb.AppendRecord) []Assigned {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	assigned, err := r.Produce(ctx, recs)
	require.NoError(t, err)
	return assigned
}

// A Barrier (here, as a rejoin's membership step confirms itself) is the
// last entry before a snapshot: hashicorp/raft gives the snapshot the
// barrier's index, which the FSM never sees, so the FSM's applied index
// stays below it. The replica must restart cleanly with its data, every
// time.
func TestReplicaRestartsAfterASnapshotEndingInABarrier(t *testing.T) {
	n := startReplicaNode(t, "n1", nil)
	r := n.openReplica(t, 1, voters(n), nil)
	awaitLeader(t, r)
	produce(t, r, records("acme", 10))
	require.NoError(t, r.Raft().Barrier(5*time.Second).Error())
	require.NoError(t, r.Raft().Snapshot().Error())
	snapshotIndex := r.Raft().Stats()["last_snapshot_index"]
	require.NotEqual(t, fmt.Sprint(r.Log().AppliedIndex()), snapshotIndex, "the snapshot should end in the barrier, above the fsm")
	require.NoError(t, r.Close())

	for restart := range 2 {
		r = n.openReplica(t, 1, voters(n), nil)
		awaitLeader(t, r)
		require.Equal(t, uint64(10+restart), r.Log().HighWatermark(), "start %d", restart)
		got := produce(t, r, records("acme", 1))
		require.Equal(t, uint64(10+restart), got[0].Offset)
		require.NoError(t, r.Close())
	}
	recs, err := r.Log().Read(0, 100, 1<<20)
	require.NoError(t, err)
	require.Len(t, recs, 12)
}
