package server

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	"github.com/heraldlog/herald/server/proccluster"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// glog-style background goroutines of dependencies that outlive tests.
		goleak.IgnoreTopFunction("github.com/cockroachdb/pebble/v2/internal/cache.(*Cache).releaseLoop"),
		goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
		// Removes the process tests' herald binary, if they built it.
		goleak.Cleanup(proccluster.RemoveBuiltAndExit),
	)
}

func createTopic(t *testing.T, hc heraldpb.HeraldClient, name string, partitions, rf uint32) *heraldpb.TopicInfo {
	t.Helper()
	resp, err := hc.CreateTopic(ctxTimeout(t, 20*time.Second), &heraldpb.CreateTopicRequest{Config: &heraldpb.TopicConfig{
		Name: name, Partitions: partitions, ReplicationFactor: rf,
	}})
	if err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	return resp.Topic
}

// produceRetry produces through one node, retrying only the errors that
// mean "not written" (no leader yet, right after topic creation).
func produceRetry(t *testing.T, hc heraldpb.HeraldClient, topic string, events ...*heraldpb.Event) []*heraldpb.ProduceResult {
	t.Helper()
	resp, err := produceAnswered(t, hc, &heraldpb.ProduceRequest{Topic: topic, Events: events})
	if err != nil {
		t.Fatalf("produce: %v", err)
	}
	return resp.Results
}

// produceAnswered sends req until the cluster answers it: a partition
// without a leader for a moment (an election under load) and a node that
// is not the leader are retried after a pause, as the SDK does, for up to
// 20 s. It returns the answer, its error wire-typed.
func produceAnswered(t *testing.T, hc heraldpb.HeraldClient, req *heraldpb.ProduceRequest) (*heraldpb.ProduceResponse, error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := hc.Produce(ctxTimeout(t, 10*time.Second), req)
		if err == nil {
			return resp, nil
		}
		err = wire.FromStatus(err)
		var nl *wire.NotLeaderError
		if (errors.Is(err, wire.ErrNoLeader) || errors.As(err, &nl)) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		return nil, err
	}
}

func TestProduceAndFetchOnEveryReplica(t *testing.T) {
	c := startCluster(t, 3)
	hc := c.rawClient(0)
	topic := createTopic(t, hc, "orders", 3, 3)
	if len(topic.Partitions) != 3 {
		t.Fatalf("want 3 partitions, got %d", len(topic.Partitions))
	}
	// Leaders are placed on different nodes: the preferred replicas differ.
	first := map[string]bool{}
	for _, p := range topic.Partitions {
		first[p.Replicas[0]] = true
	}
	if len(first) != 3 {
		t.Errorf("preferred leaders not spread: %v", topic.Partitions)
	}

	tenants := []string{"acme", "globex", "initech", "umbrella"}
	for _, tenant := range tenants {
		createTenant(t, hc, tenant)
	}
	perTenant := 25
	want := map[string][]string{} // tenant -> payloads in order
	for i := 0; i < perTenant; i++ {
		for j, tenant := range tenants {
			payload := fmt.Sprintf("%s-%d", tenant, i)
			// Send through different nodes: followers forward to leaders.
			res := produceRetry(t, c.rawClient(j%3), "orders", &heraldpb.Event{TenantId: tenant, Payload: []byte(payload)})
			if len(res) != 1 {
				t.Fatalf("want 1 result, got %d", len(res))
			}
			if got, wantP := res[0].Partition, wire.PartitionForTenant(tenant, 3); got != wantP {
				t.Fatalf("tenant %s went to partition %d, want %d", tenant, got, wantP)
			}
			if res[0].Sequence != uint64(i+1) {
				t.Fatalf("tenant %s event %d got sequence %d", tenant, i, res[0].Sequence)
			}
			want[tenant] = append(want[tenant], payload)
		}
	}

	// Every replica serves the same committed log once it has applied it.
	for node := 0; node < 3; node++ {
		rc := c.rawClient(node)
		for _, tenant := range tenants {
			p := wire.PartitionForTenant(tenant, 3)
			eventually(t, 10*time.Second, func() error {
				resp, err := rc.Fetch(ctxTimeout(t, 5*time.Second), &heraldpb.FetchRequest{
					Topic: "orders", Partition: p, TenantId: tenant,
					Start: &heraldpb.FetchRequest_Sequence{Sequence: 1},
				})
				if err != nil {
					return err
				}
				if len(resp.Events) != perTenant {
					return fmt.Errorf("node %d tenant %s: %d events, want %d", node, tenant, len(resp.Events), perTenant)
				}
				for i, ev := range resp.Events {
					if ev.Sequence != uint64(i+1) || string(ev.Payload) != want[tenant][i] || ev.TenantId != tenant || ev.Partition != p {
						return fmt.Errorf("node %d tenant %s event %d: %+v", node, tenant, i, ev)
					}
					if ev.EventId == "" || ev.ProducedAtUnixNano == 0 {
						return fmt.Errorf("event %d lacks server-assigned fields: %+v", i, ev)
					}
				}
				return nil
			})
		}
	}

	// Partition reads are dense from offset 0.
	for p := uint32(0); p < 3; p++ {
		resp, err := hc.Fetch(ctxTimeout(t, 5*time.Second), &heraldpb.FetchRequest{Topic: "orders", Partition: p,
			Start: &heraldpb.FetchRequest_Position{Position: heraldpb.StartPosition_EARLIEST}, MaxEvents: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for i, ev := range resp.Events {
			if ev.Offset != uint64(i) {
				t.Fatalf("partition %d: event %d has offset %d", p, i, ev.Offset)
			}
		}
		if resp.NextOffset != uint64(len(resp.Events)) || resp.HighWatermark < resp.NextOffset {
			t.Fatalf("partition %d: next offset %d, high watermark %d, %d events", p, resp.NextOffset, resp.HighWatermark, len(resp.Events))
		}
	}

	// Cluster status names a leader and the high watermark of every partition.
	st, err := hc.ClusterStatus(ctxTimeout(t, 5*time.Second), &heraldpb.ClusterStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Nodes) != 3 || st.ControllerLeaderId == "" || len(st.Partitions) != 3 {
		t.Fatalf("cluster status: %+v", st)
	}
	total := uint64(0)
	for _, p := range st.Partitions {
		if p.LeaderId == "" {
			t.Errorf("partition %d has no leader in status", p.Index)
		}
		total += p.HighWatermark
	}
	if total != uint64(len(tenants)*perTenant) {
		t.Errorf("high watermarks add up to %d, want %d", total, len(tenants)*perTenant)
	}
}

func TestBadInputIsRefusedAndNothingWritten(t *testing.T) {
	c := startCluster(t, 3)
	hc := c.rawClient(1)
	createTopic(t, hc, "events", 1, 3)
	createTenant(t, hc, "acme")
	produceRetry(t, hc, "events", &heraldpb.Event{TenantId: "acme", Payload: []byte("ok")})

	big := bytes.Repeat([]byte("x"), maxEventBytesDefault+1)
	cases := []struct {
		name string
		call func() error
		want error
	}{
		{"unknown topic", func() error {
			_, err := hc.Produce(ctxTimeout(t, 5*time.Second), &heraldpb.ProduceRequest{Topic: "nope", Events: []*heraldpb.Event{{TenantId: "a"}}})
			return err
		}, wire.ErrTopicNotFound},
		{"empty tenant", func() error {
			_, err := hc.Produce(ctxTimeout(t, 5*time.Second), &heraldpb.ProduceRequest{Topic: "events", Events: []*heraldpb.Event{{TenantId: "acme"}, {Payload: []byte("x")}}})
			return err
		}, wire.ErrInvalidArgument},
		{"payload too large", func() error {
			_, err := hc.Produce(ctxTimeout(t, 5*time.Second), &heraldpb.ProduceRequest{Topic: "events", Events: []*heraldpb.Event{{TenantId: "acme", Payload: big}}})
			return err
		}, wire.ErrPayloadTooLarge},
		{"no events", func() error {
			_, err := hc.Produce(ctxTimeout(t, 5*time.Second), &heraldpb.ProduceRequest{Topic: "events"})
			return err
		}, wire.ErrInvalidArgument},
		{"invalid topic name", func() error {
			_, err := hc.CreateTopic(ctxTimeout(t, 5*time.Second), &heraldpb.CreateTopicRequest{Config: &heraldpb.TopicConfig{Name: "bad name!"}})
			return err
		}, wire.ErrInvalidArgument},
		{"replication above nodes", func() error {
			_, err := hc.CreateTopic(ctxTimeout(t, 5*time.Second), &heraldpb.CreateTopicRequest{Config: &heraldpb.TopicConfig{Name: "r5", ReplicationFactor: 5}})
			return err
		}, wire.ErrInvalidArgument},
		{"topic exists", func() error {
			_, err := hc.CreateTopic(ctxTimeout(t, 5*time.Second), &heraldpb.CreateTopicRequest{Config: &heraldpb.TopicConfig{Name: "events"}})
			return err
		}, wire.ErrTopicExists},
		{"sequence without tenant", func() error {
			_, err := hc.Fetch(ctxTimeout(t, 5*time.Second), &heraldpb.FetchRequest{Topic: "events", Start: &heraldpb.FetchRequest_Sequence{Sequence: 1}})
			return err
		}, wire.ErrInvalidArgument},
		{"offset beyond the log", func() error {
			_, err := hc.Fetch(ctxTimeout(t, 5*time.Second), &heraldpb.FetchRequest{Topic: "events", Start: &heraldpb.FetchRequest_Offset{Offset: 1000}})
			return err
		}, wire.ErrOffsetOutOfRange},
		{"partition out of range", func() error {
			_, err := hc.Fetch(ctxTimeout(t, 5*time.Second), &heraldpb.FetchRequest{Topic: "events", Partition: 7, Start: &heraldpb.FetchRequest_Offset{Offset: 0}})
			return err
		}, wire.ErrPartitionNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if err == nil {
				t.Fatal("accepted")
			}
			if got := wire.FromStatus(err); !errors.Is(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	// Nothing from the refused requests reached the log.
	resp, err := hc.Fetch(ctxTimeout(t, 5*time.Second), &heraldpb.FetchRequest{Topic: "events",
		Start: &heraldpb.FetchRequest_Position{Position: heraldpb.StartPosition_LATEST}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.HighWatermark != 1 {
		t.Fatalf("high watermark %d after refused requests, want 1", resp.HighWatermark)
	}
}

func TestNodeRestartKeepsLogAndCatchesUp(t *testing.T) {
	c := startCluster(t, 3)
	hc := c.rawClient(0)
	createTopic(t, hc, "audit", 1, 3)
	createTenant(t, hc, "acme")
	for i := 0; i < 20; i++ {
		produceRetry(t, hc, "audit", &heraldpb.Event{TenantId: "acme", Payload: []byte(fmt.Sprint(i))})
	}
	c.stop(2)
	for i := 20; i < 40; i++ {
		produceRetry(t, hc, "audit", &heraldpb.Event{TenantId: "acme", Payload: []byte(fmt.Sprint(i))})
	}
	c.restart(2)
	rc := c.rawClient(2)
	eventually(t, 20*time.Second, func() error {
		resp, err := rc.Fetch(ctxTimeout(t, 5*time.Second), &heraldpb.FetchRequest{Topic: "audit",
			TenantId: "acme", Start: &heraldpb.FetchRequest_Sequence{Sequence: 1}})
		if err != nil {
			return err
		}
		if len(resp.Events) != 40 {
			return fmt.Errorf("restarted node has %d events", len(resp.Events))
		}
		for i, ev := range resp.Events {
			if string(ev.Payload) != fmt.Sprint(i) || ev.Offset != uint64(i) {
				return fmt.Errorf("event %d: %+v", i, ev)
			}
		}
		return nil
	})
}
