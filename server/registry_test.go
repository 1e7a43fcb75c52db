package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

func createTopicConfig(t *testing.T, hc heraldpb.HeraldClient, cfg *heraldpb.TopicConfig) *heraldpb.TopicInfo {
	t.Helper()
	resp, err := hc.CreateTopic(ctxTimeout(t, 20*time.Second), &heraldpb.CreateTopicRequest{Config: cfg})
	if err != nil {
		t.Fatalf("create topic %s: %v", cfg.Name, err)
	}
	return resp.Topic
}

// createTenant registers a tenant through hc, retrying while the
// controller has no reachable leader (a node of the test may just have
// stopped); TENANT_EXISTS after a retry means an earlier try committed.
func createTenant(t *testing.T, hc heraldpb.HeraldClient, id string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for retried := false; ; retried = true {
		_, err := hc.CreateTenant(ctxTimeout(t, 10*time.Second), &heraldpb.CreateTenantRequest{Tenant: &heraldpb.Tenant{Id: id}})
		err = wire.FromStatus(err)
		switch {
		case err == nil, retried && errors.Is(err, wire.ErrTenantExists):
			return
		case (errors.Is(err, wire.ErrUnavailable) || errors.Is(err, wire.ErrNoLeader) || errors.Is(err, wire.ErrNotLeader) || errors.Is(err, wire.ErrUnknownOutcome)) && time.Now().Before(deadline):
			time.Sleep(100 * time.Millisecond)
		default:
			t.Fatalf("create tenant %s: %v", id, err)
		}
	}
}

func produceErr(t *testing.T, hc heraldpb.HeraldClient, topic string, events ...*heraldpb.Event) error {
	t.Helper()
	_, err := hc.Produce(ctxTimeout(t, 10*time.Second), &heraldpb.ProduceRequest{Topic: topic, Events: events})
	return wire.FromStatus(err)
}

func fetchAll(t *testing.T, hc heraldpb.HeraldClient, topic string, p uint32) (*heraldpb.FetchResponse, error) {
	t.Helper()
	resp, err := hc.Fetch(forwardContext(ctxTimeout(t, 5*time.Second)), &heraldpb.FetchRequest{Topic: topic, Partition: p,
		Start: &heraldpb.FetchRequest_Position{Position: heraldpb.StartPosition_EARLIEST}, MaxEvents: 10_000})
	return resp, wire.FromStatus(err)
}

func TestIdempotentProducerSurvivesLeaderFailover(t *testing.T) {
	c := startCluster(t, 3)
	hc := c.rawClient(0)
	createTopic(t, hc, "payments", 1, 3)
	createTenant(t, hc, "acme")
	ev := func(seq uint64) *heraldpb.Event {
		return &heraldpb.Event{TenantId: "acme", ProducerId: "p-test", ProducerSeq: seq, Payload: []byte(fmt.Sprint(seq))}
	}
	var first []*heraldpb.ProduceResult
	for seq := uint64(1); seq <= 10; seq++ {
		res := produceRetry(t, hc, "payments", ev(seq))
		if res[0].Duplicate {
			t.Fatalf("seq %d reported duplicate on first send", seq)
		}
		first = append(first, res[0])
	}
	// A retried batch comes back as duplicates with the original positions.
	res := produceRetry(t, hc, "payments", ev(8), ev(9), ev(10))
	for i, r := range res {
		orig := first[7+i]
		if !r.Duplicate || r.Offset != orig.Offset || r.Sequence != orig.Sequence {
			t.Fatalf("retry of seq %d: %+v, original %+v", 8+i, r, orig)
		}
	}
	// A sequence that skips ahead is refused and nothing is written.
	if err := produceErr(t, hc, "payments", ev(12)); !errors.Is(err, wire.ErrOutOfOrderSequence) {
		t.Fatalf("skipping ahead: %v", err)
	}

	// Kill the leader; the producer state is replicated, so a retry through
	// another node is still recognised.
	leader := -1
	eventually(t, 10*time.Second, func() error {
		for i, n := range c.nodes {
			for _, r := range n.replicasSnapshot() {
				if r.IsLeader() {
					leader = i
					return nil
				}
			}
		}
		return errors.New("no leader")
	})
	c.stop(leader)
	other := c.rawClient((leader + 1) % 3)
	res = produceRetry(t, other, "payments", ev(10), ev(11))
	if !res[0].Duplicate || res[0].Offset != first[9].Offset {
		t.Fatalf("retry of seq 10 after failover: %+v, original %+v", res[0], first[9])
	}
	if res[1].Duplicate || res[1].Offset != 10 || res[1].Sequence != 11 {
		t.Fatalf("seq 11 after failover: %+v", res[1])
	}
	c.restart(leader)
	// The restarted node holds the same log: each event once, dense.
	rc := c.rawClient(leader)
	eventually(t, 20*time.Second, func() error {
		resp, err := fetchAll(t, rc, "payments", 0)
		if err != nil {
			return err
		}
		if len(resp.Events) != 11 {
			return fmt.Errorf("%d events", len(resp.Events))
		}
		for i, e := range resp.Events {
			if e.Offset != uint64(i) || e.Sequence != uint64(i+1) || string(e.Payload) != fmt.Sprint(i+1) {
				return fmt.Errorf("event %d: %+v", i, e)
			}
		}
		return nil
	})
}

func TestEventIDDedupeWindow(t *testing.T) {
	c := startCluster(t, 3)
	hc := c.rawClient(1)
	createTopicConfig(t, hc, &heraldpb.TopicConfig{Name: "clicks", Partitions: 2, ReplicationFactor: 3, DedupeWindowMs: 60_000, AutoTenants: true})
	a := produceRetry(t, hc, "clicks", &heraldpb.Event{TenantId: "acme", EventId: "evt-1", Payload: []byte("x")})
	b := produceRetry(t, hc, "clicks", &heraldpb.Event{TenantId: "acme", EventId: "evt-1", Payload: []byte("x")})
	if a[0].Duplicate || !b[0].Duplicate || b[0].Offset != a[0].Offset || b[0].Sequence != a[0].Sequence {
		t.Fatalf("first %+v, second %+v", a[0], b[0])
	}
	// The auto-tenants topic registered the tenant.
	eventually(t, 10*time.Second, func() error {
		_, err := hc.DescribeTenant(ctxTimeout(t, 5*time.Second), &heraldpb.DescribeTenantRequest{Id: "acme"})
		return err
	})
}

func TestTopicContractIsEnforced(t *testing.T) {
	c := startCluster(t, 3)
	hc := c.rawClient(2)
	createTopicConfig(t, hc, &heraldpb.TopicConfig{
		Name: "orders", Partitions: 1, ReplicationFactor: 3,
		Schema: "order", SchemaVersions: []uint32{1, 2}, MaxTtlMs: 60_000,
		RequiredFields: []string{"causation_id"},
	})
	createTenant(t, hc, "acme")
	good := func() *heraldpb.Event {
		return &heraldpb.Event{TenantId: "acme", Schema: "order", SchemaVersion: 2, CausationId: "c1", Payload: []byte("ok")}
	}
	produceRetry(t, hc, "orders", good())

	cases := []struct {
		name  string
		event func() *heraldpb.Event
		want  error
	}{
		{"unknown tenant", func() *heraldpb.Event { e := good(); e.TenantId = "nobody"; return e }, wire.ErrTenantNotFound},
		{"schema version not allowed", func() *heraldpb.Event { e := good(); e.SchemaVersion = 3; return e }, wire.ErrSchemaVersionNotAllowed},
		{"ttl above max", func() *heraldpb.Event { e := good(); e.TtlMs = 120_000; return e }, wire.ErrTTLTooLarge},
		{"missing required field", func() *heraldpb.Event { e := good(); e.CausationId = ""; return e }, wire.ErrMissingField},
		{"wrong schema", func() *heraldpb.Event { e := good(); e.Schema = "invoice"; return e }, wire.ErrInvalidArgument},
		{"producer seq missing", func() *heraldpb.Event { e := good(); e.ProducerId = "p1"; return e }, wire.ErrInvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// The bad event travels with a good one: the whole request fails.
			err := produceErr(t, hc, "orders", good(), tc.event())
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	badTopics := []struct {
		name string
		cfg  *heraldpb.TopicConfig
	}{
		{"invalid name", &heraldpb.TopicConfig{Name: "no spaces allowed"}},
		{"too many partitions", &heraldpb.TopicConfig{Name: "big", Partitions: 5000}},
		{"replication above nodes", &heraldpb.TopicConfig{Name: "r4", ReplicationFactor: 4}},
		{"default ttl above max", &heraldpb.TopicConfig{Name: "ttl", DefaultTtlMs: 10, MaxTtlMs: 5}},
		{"unknown required field", &heraldpb.TopicConfig{Name: "req", RequiredFields: []string{"payload_hash"}}},
	}
	for _, tc := range badTopics {
		t.Run(tc.name, func(t *testing.T) {
			_, err := hc.CreateTopic(ctxTimeout(t, 5*time.Second), &heraldpb.CreateTopicRequest{Config: tc.cfg})
			if err := wire.FromStatus(err); !errors.Is(err, wire.ErrInvalidArgument) {
				t.Fatalf("got %v, want invalid argument", err)
			}
		})
	}
	// Nothing of the refused requests reached the log: a sentinel produced
	// after them directly follows the one good event on every replica.
	produceRetry(t, hc, "orders", func() *heraldpb.Event { e := good(); e.Payload = []byte("sentinel"); return e }())
	eventually(t, 10*time.Second, func() error {
		for i := range c.nodes {
			resp, err := fetchAll(t, c.rawClient(i), "orders", 0)
			if err != nil {
				return err
			}
			if len(resp.Events) != 2 || string(resp.Events[1].Payload) != "sentinel" {
				return fmt.Errorf("node %d holds %d events", i, len(resp.Events))
			}
		}
		return nil
	})

	// Alter what is safe; refuse the rest.
	if _, err := hc.AlterTopic(ctxTimeout(t, 5*time.Second), &heraldpb.AlterTopicRequest{
		Config: &heraldpb.TopicConfig{Name: "orders", SchemaVersions: []uint32{1, 2, 3}}, Fields: []string{"schema_versions"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		return produceErr(t, hc, "orders", func() *heraldpb.Event { e := good(); e.SchemaVersion = 3; return e }())
	})
	_, err := hc.AlterTopic(ctxTimeout(t, 5*time.Second), &heraldpb.AlterTopicRequest{
		Config: &heraldpb.TopicConfig{Name: "orders", Partitions: 9}, Fields: []string{"partitions"}})
	if err := wire.FromStatus(err); !errors.Is(err, wire.ErrInvalidArgument) {
		t.Fatalf("altering partitions: %v", err)
	}

	// Deleting a topic in use is refused; forced, its data goes from every replica.
	_, err = hc.DeleteTopic(ctxTimeout(t, 5*time.Second), &heraldpb.DeleteTopicRequest{Name: "orders"})
	if err := wire.FromStatus(err); !errors.Is(err, wire.ErrTopicInUse) {
		t.Fatalf("deleting a topic in use: %v", err)
	}
	info, err := hc.DescribeTopic(ctxTimeout(t, 5*time.Second), &heraldpb.DescribeTopicRequest{Name: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	gid := info.Topic.Partitions[0].GroupId
	if _, err := hc.DeleteTopic(ctxTimeout(t, 5*time.Second), &heraldpb.DeleteTopicRequest{Name: "orders", Force: true}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error {
		for i, n := range c.nodes {
			if n.replica(gid) != nil {
				return fmt.Errorf("node %d still has the replica open", i)
			}
			if _, err := os.Stat(filepath.Join(c.dirs[i], "raft", fmt.Sprintf("g%d", gid))); !os.IsNotExist(err) {
				return fmt.Errorf("node %d still has the raft directory (%v)", i, err)
			}
			lp, err := n.db.Partition(gid)
			if err != nil {
				return err
			}
			if lp.HighWatermark() != 0 {
				return fmt.Errorf("node %d still has %d records", i, lp.HighWatermark())
			}
		}
		return nil
	})
	if err := produceErr(t, hc, "orders", good()); !errors.Is(err, wire.ErrTopicNotFound) {
		t.Fatalf("produce to a deleted topic: %v", err)
	}
}

func TestTTLExpiredEventsAreNeverReturned(t *testing.T) {
	c := startCluster(t, 3)
	hc := c.rawClient(0)
	createTopicConfig(t, hc, &heraldpb.TopicConfig{Name: "presence", Partitions: 1, ReplicationFactor: 3, AutoTenants: true})
	produceRetry(t, hc, "presence",
		&heraldpb.Event{TenantId: "acme", Payload: []byte("short"), TtlMs: 300},
		&heraldpb.Event{TenantId: "acme", Payload: []byte("forever")})
	eventually(t, 20*time.Second, func() error {
		for i := range c.nodes {
			resp, err := fetchAll(t, c.rawClient(i), "presence", 0)
			if err != nil {
				return err
			}
			if len(resp.Events) != 1 || string(resp.Events[0].Payload) != "forever" {
				return fmt.Errorf("node %d returns %d events", i, len(resp.Events))
			}
			tr, err := c.rawClient(i).Fetch(forwardContext(ctxTimeout(t, 5*time.Second)), &heraldpb.FetchRequest{Topic: "presence",
				TenantId: "acme", Start: &heraldpb.FetchRequest_Sequence{Sequence: 1}})
			if err != nil {
				return err
			}
			if len(tr.Events) != 1 || tr.Events[0].Sequence != 2 || tr.NextSequence != 3 {
				return fmt.Errorf("node %d tenant read: %d events, next %d", i, len(tr.Events), tr.NextSequence)
			}
		}
		return nil
	})
}

func TestRetentionTrimsIdenticallyOnEveryReplica(t *testing.T) {
	c := startCluster(t, 3)
	hc := c.rawClient(0)
	createTopicConfig(t, hc, &heraldpb.TopicConfig{Name: "metrics", Partitions: 1, ReplicationFactor: 3, RetentionEvents: 10, AutoTenants: true})
	for i := 0; i < 50; i++ {
		produceRetry(t, hc, "metrics", &heraldpb.Event{TenantId: fmt.Sprintf("t%d", i%3), Payload: []byte(fmt.Sprint(i))})
	}
	var logs [3][]*heraldpb.Event
	eventually(t, 20*time.Second, func() error {
		for i := range c.nodes {
			resp, err := fetchAll(t, c.rawClient(i), "metrics", 0)
			if err != nil {
				return err
			}
			if resp.LowWatermark != 40 || len(resp.Events) != 10 {
				return fmt.Errorf("node %d: low watermark %d, %d events", i, resp.LowWatermark, len(resp.Events))
			}
			logs[i] = resp.Events
		}
		return nil
	})
	for i := 1; i < 3; i++ {
		for j := range logs[0] {
			a, b := logs[0][j], logs[i][j]
			if a.Offset != b.Offset || a.EventId != b.EventId || a.Sequence != b.Sequence || string(a.Payload) != string(b.Payload) {
				t.Fatalf("replica %d differs at %d: %+v vs %+v", i, j, a, b)
			}
		}
	}
	_, err := c.rawClient(1).Fetch(ctxTimeout(t, 5*time.Second), &heraldpb.FetchRequest{Topic: "metrics", Start: &heraldpb.FetchRequest_Offset{Offset: 3}})
	var oor *wire.OffsetOutOfRangeError
	if err := wire.FromStatus(err); !errors.As(err, &oor) || oor.Low != 40 {
		t.Fatalf("read below the low watermark: %v", err)
	}
}

func TestReplayFromTime(t *testing.T) {
	c := startCluster(t, 3)
	hc := c.rawClient(0)
	createTopicConfig(t, hc, &heraldpb.TopicConfig{Name: "audit", Partitions: 1, ReplicationFactor: 3, AutoTenants: true})
	produceRetry(t, hc, "audit", &heraldpb.Event{TenantId: "acme", Payload: []byte("before")})
	time.Sleep(200 * time.Millisecond) // two produce times far enough apart to split
	mid := time.Now()
	time.Sleep(200 * time.Millisecond)
	produceRetry(t, hc, "audit", &heraldpb.Event{TenantId: "acme", Payload: []byte("after")})
	// Every replica answers the same (followers apply within a commit timeout).
	for i := range c.nodes {
		eventually(t, 10*time.Second, func() error {
			resp, err := c.rawClient(i).Fetch(forwardContext(ctxTimeout(t, 5*time.Second)), &heraldpb.FetchRequest{Topic: "audit",
				Start: &heraldpb.FetchRequest_TimeUnixNano{TimeUnixNano: mid.UnixNano()}})
			if err != nil {
				return err
			}
			if len(resp.Events) != 1 || string(resp.Events[0].Payload) != "after" || resp.Events[0].Offset != 1 {
				return fmt.Errorf("node %d: replay from time: %+v (next %d, high %d)", i, resp.Events, resp.NextOffset, resp.HighWatermark)
			}
			return nil
		})
	}
}

// A replica that was down while the log was compacted catches up through
// InstallSnapshot, and its log afterwards equals the leader's.
func TestReplicaCatchesUpBySnapshotAfterCompaction(t *testing.T) {
	c := startCluster(t, 3)
	hc := c.rawClient(0)
	createTopicConfig(t, hc, &heraldpb.TopicConfig{Name: "big", Partitions: 1, ReplicationFactor: 3, AutoTenants: true})
	lagger := 2
	c.stop(lagger)
	for i := 0; i < 300; i++ {
		produceRetry(t, hc, "big", &heraldpb.Event{TenantId: fmt.Sprintf("t%d", i%5), Payload: []byte(fmt.Sprint(i))})
	}
	// Snapshot and compact on the live replicas: keep almost no trailing log.
	for i, n := range c.nodes {
		if i == lagger {
			continue
		}
		for _, r := range n.replicasSnapshot() {
			rf := r.Raft()
			if err := rf.ReloadConfig(hraft.ReloadableConfig{TrailingLogs: 1, SnapshotInterval: time.Hour, SnapshotThreshold: 1 << 20, HeartbeatTimeout: time.Second, ElectionTimeout: time.Second}); err != nil {
				t.Fatal(err)
			}
			if err := rf.Snapshot().Error(); err != nil {
				t.Fatal(err)
			}
			snap, err := snapshotIndex(rf)
			if err != nil {
				t.Fatal(err)
			}
			if snap <= 2 {
				t.Fatalf("node %d: no snapshot taken (last snapshot index %d)", i, snap)
			}
		}
	}
	c.restart(lagger)
	rc := c.rawClient(lagger)
	eventually(t, 30*time.Second, func() error {
		resp, err := fetchAll(t, rc, "big", 0)
		if err != nil {
			return err
		}
		if len(resp.Events) != 300 {
			return fmt.Errorf("lagging replica has %d events", len(resp.Events))
		}
		return nil
	})
	lead, err := fetchAll(t, hc, "big", 0)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := fetchAll(t, rc, "big", 0)
	for i := range lead.Events {
		a, b := lead.Events[i], got.Events[i]
		if a.Offset != b.Offset || a.EventId != b.EventId || a.Sequence != b.Sequence || a.ProducedAtUnixNano != b.ProducedAtUnixNano {
			t.Fatalf("event %d differs after snapshot install: %+v vs %+v", i, a, b)
		}
	}
	var snapIndex string
	for _, r := range c.nodes[lagger].replicasSnapshot() {
		snapIndex = r.Raft().Stats()["last_snapshot_index"]
	}
	if snapIndex == "" || snapIndex == "0" {
		t.Fatalf("lagging replica caught up without installing a snapshot (last_snapshot_index %q)", snapIndex)
	}
}

// snapshotIndex reads the index of a group's newest snapshot from its stats.
func snapshotIndex(rf *hraft.Raft) (uint64, error) {
	var v uint64
	_, err := fmt.Sscan(rf.Stats()["last_snapshot_index"], &v)
	return v, err
}
