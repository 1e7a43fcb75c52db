package partition

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	heraldlog "github.com/heraldlog/herald/log"
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
	batcher := DefaultBatcherOptions()
	batcher.EntryBytesMax = min(batcher.EntryBytesMax, tr.EntryBytesMax())
	batcher.BatchBytesMax = min(batcher.BatchBytesMax, batcher.EntryBytesMax)
	r, err := OpenReplica(ReplicaConfig{
		GroupID:   gid,
		NodeID:    n.id,
		Dir:       filepath.Join(n.dir, fmt.Sprintf("g%d", gid)),
		Log:       lp,
		Transport: tr,
		Servers:   servers,
		Logger:    testLogger(t),
		Metrics:   NewMetrics(),
		Batcher:   batcher,
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

// plainRecords returns n records of tenant with no producer, for one call.
func plainRecords(tenant string, n int) []Record {
	out := make([]Record, n)
	for i := range out {
		out[i] = Record{TenantID: tenant, Event: []byte(fmt.Sprint(i))}
	}
	return out
}

func produce(t testing.TB, r *Replica, recs []Record) []Assigned {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	assigned, _, err := r.Produce(ctx, 0, recs)
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
	produce(t, r, plainRecords("acme", 10))
	require.NoError(t, r.Raft().Barrier(5*time.Second).Error())
	require.NoError(t, r.Raft().Snapshot().Error())
	snapshotIndex := r.Raft().Stats()["last_snapshot_index"]
	require.NotEqual(t, fmt.Sprint(r.Log().AppliedIndex()), snapshotIndex, "the snapshot should end in the barrier, above the fsm")
	require.NoError(t, r.Close())

	for restart := range 2 {
		r = n.openReplica(t, 1, voters(n), nil)
		awaitLeader(t, r)
		require.Equal(t, uint64(10+restart), r.Log().HighWatermark(), "start %d", restart)
		got := produce(t, r, plainRecords("acme", 1))
		require.Equal(t, uint64(10+restart), got[0].Offset)
		require.NoError(t, r.Close())
	}
	recs, err := r.Log().Read(0, 100, 1<<20)
	require.NoError(t, err)
	require.Len(t, recs, 12)
}

// A follower that is down while the leader commits many entries close to
// the entry cap catches up when it comes back. Each AppendEntries hashicorp/
// raft builds holds up to MaxAppendEntries of them, far more bytes than one
// gRPC message of the transport may carry: the transport must send what
// fits (here one entry per message), or the follower never catches up.
func TestFollowerBehindByManyLargeEntriesCatchesUp(t *testing.T) {
	const (
		messageBytesMax = 1 << 20
		entries         = 16
	)
	small := func(o *heraldraft.MuxOptions) {
		o.MaxMessageBytes = messageBytesMax
		o.SnapshotChunkBytes = messageBytesMax / 4
	}
	nodes := []*replicaNode{startReplicaNode(t, "n1", small), startReplicaNode(t, "n2", small), startReplicaNode(t, "n3", small)}
	// Raft's default timeouts: large fsyncs under -race on a shared machine
	// must not cost the leader its lease.
	conf := heraldraft.DefaultConfig
	replicas := make([]*Replica, len(nodes))
	for i, n := range nodes {
		replicas[i] = n.openReplica(t, 7, voters(nodes...), conf(n.id))
	}
	leader := awaitLeader(t, replicas...)
	down := 0
	for replicas[down] == leader {
		down++
	}
	require.NoError(t, replicas[down].Close())
	var up []*Replica
	for i, r := range replicas {
		if i != down {
			up = append(up, r)
		}
	}

	// One record per call, one call per entry, each entry within 1 KiB of
	// the cap.
	entryBytesMax := leader.batcher.opts.EntryBytesMax
	body := make([]byte, entryBytesMax-1<<10)
	rec := Record{TenantID: "acme", Event: body}
	require.LessOrEqual(t, appendCommandOverheadBytes+appendRecordBytes(appendRecords(0, []Record{rec})[0]), entryBytesMax)
	for i := range entries {
		body[0] = byte(i)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, _, err := leader.Produce(ctx, 0, []Record{rec})
		cancel()
		for errors.Is(err, ErrNotLeader) { // not proposed: safe to send to the new leader
			leader = awaitLeader(t, up...)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			_, _, err = leader.Produce(ctx, 0, []Record{rec})
			cancel()
		}
		require.NoError(t, err, "entry %d", i)
	}
	want := leader.Log().HighWatermark()
	require.Equal(t, uint64(entries), want)

	replicas[down] = nodes[down].openReplica(t, 7, voters(nodes...), conf(nodes[down].id))
	if !assert.Eventually(t, func() bool { return replicas[down].Log().HighWatermark() == want }, 60*time.Second, 20*time.Millisecond) {
		t.Fatalf("the follower did not catch up: high watermark %d of %d", replicas[down].Log().HighWatermark(), want)
	}
	recs, err := replicas[down].Log().Read(entries-1, 1, 1<<20)
	require.NoError(t, err)
	require.Len(t, recs, 1)
	require.Equal(t, byte(entries-1), recs[0].Body[0])
}

// An entry cap above what one raft message carries would let through
// entries that can never replicate: the configuration is refused.
func TestReplicaConfigRefusesAnEntryCapAboveTheMessageLimit(t *testing.T) {
	n := startReplicaNode(t, "n1", func(o *heraldraft.MuxOptions) {
		o.MaxMessageBytes = 1 << 20
		o.SnapshotChunkBytes = 1 << 18
	})
	tr, err := n.mux.Transport(3)
	require.NoError(t, err)
	defer tr.Close()
	lp, err := n.db.Partition(3)
	require.NoError(t, err)
	cfg := ReplicaConfig{GroupID: 3, NodeID: n.id, Dir: t.TempDir(), Log: lp, Transport: tr, Servers: voters(n), Batcher: DefaultBatcherOptions()}
	require.ErrorContains(t, cfg.Validate(), "could never replicate")
	cfg.Batcher.EntryBytesMax = tr.EntryBytesMax()
	cfg.Batcher.BatchBytesMax = min(cfg.Batcher.BatchBytesMax, cfg.Batcher.EntryBytesMax)
	require.NoError(t, cfg.Validate())
}

// A leader elected while its state machine is behind its Raft log holds a
// high watermark below offsets the previous leader acknowledged. CatchUp
// must not return until it has applied them (here it cannot, the apply is
// held, so it runs out of time), and then must. A follower refuses it.
// Before CatchUp, Fetch trusted such a leader's high watermark and
// answered acknowledged offsets "out of range" (jepsen acked-offset-in-range,
// 10-minute runs of seeds 1-3).
func TestCatchUpWaitsForEntriesTheNewLeaderHasNotApplied(t *testing.T) {
	nodes := []*replicaNode{startReplicaNode(t, "n1", nil), startReplicaNode(t, "n2", nil), startReplicaNode(t, "n3", nil)}
	servers := voters(nodes...)
	replicas := make([]*Replica, len(nodes))
	for i, n := range nodes {
		replicas[i] = n.openReplica(t, 1, servers, nil)
	}
	leader := awaitLeader(t, replicas...)
	produce(t, leader, plainRecords("acme", 10))
	var slow *Replica
	var slowNode *replicaNode
	for i, r := range replicas {
		if r != leader && slow == nil {
			slow, slowNode = r, nodes[i]
		}
	}
	require.Eventually(t, func() bool { return slow.Log().HighWatermark() == 10 }, 10*time.Second, 5*time.Millisecond)

	slow.fsm.applyMu.Lock()
	held := true
	release := func() {
		if held {
			held = false
			slow.fsm.applyMu.Unlock()
		}
	}
	defer release()
	produce(t, leader, plainRecords("acme", 20)) // acknowledged: offsets 0-29
	require.Eventually(t, func() bool { return slow.Raft().LastIndex() >= leader.Raft().LastIndex() },
		10*time.Second, 5*time.Millisecond, "the held replica's raft log should still take the entries")
	require.NoError(t, leader.Raft().LeadershipTransferToServer(hraft.ServerID(slowNode.id), hraft.ServerAddress(slowNode.addr)).Error())
	require.Eventually(t, slow.IsLeader, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, uint64(10), slow.Log().HighWatermark(), "with its apply held, the new leader's high watermark is behind what was acknowledged")

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err := slow.CatchUp(ctx)
	cancel()
	// Held, it cannot have caught up: it runs out of time, or (under load,
	// elections flap at these timeouts) it has lost the lead meanwhile.
	require.Error(t, err, "CatchUp returned before the acknowledged entries applied")
	if !errors.Is(err, ErrNotLeader) {
		require.ErrorIs(t, err, context.DeadlineExceeded)
	}

	release()
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.Eventually(t, func() bool {
		l := awaitLeader(t, replicas...)
		if err := l.CatchUp(ctx); err != nil {
			return false
		}
		return l.Log().HighWatermark() >= 30
	}, 20*time.Second, 10*time.Millisecond, "the leader never caught up with what was acknowledged")
	for _, r := range replicas {
		if !r.IsLeader() {
			if err := r.CatchUp(ctx); err != nil {
				require.ErrorIs(t, err, ErrNotLeader)
			} else {
				require.True(t, r.IsLeader(), "a follower answered CatchUp")
			}
		}
	}
}
