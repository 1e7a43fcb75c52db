package server

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// requireGroupError checks that err is the wire error want with gRPC code.
func requireGroupError(t *testing.T, err error, code codes.Code, want error) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v (%s)", want, code)
	}
	if got := status.Code(err); got != code {
		t.Fatalf("code %s, want %s: %v", got, code, err)
	}
	if !errors.Is(wire.FromStatus(err), want) {
		t.Fatalf("error %v does not match %v", err, want)
	}
}

// createAutoTopic creates a topic that accepts any tenant.
func createAutoTopic(t *testing.T, hc heraldpb.HeraldClient, name string, partitions, rf uint32) *heraldpb.TopicInfo {
	t.Helper()
	resp, err := hc.CreateTopic(ctxTimeout(t, 20*time.Second), &heraldpb.CreateTopicRequest{Config: &heraldpb.TopicConfig{
		Name: name, Partitions: partitions, ReplicationFactor: rf, AutoTenants: true}})
	if err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	return resp.GetTopic()
}

// lagByPartition returns each partition's lag in events.
func lagByPartition(info *heraldpb.ConsumerGroupInfo) map[uint32]uint64 {
	out := map[uint32]uint64{}
	for _, p := range info.GetPartitions() {
		out[p.GetPartition()] = p.GetLagEvents()
	}
	return out
}

// produceSpread produces n events over ten tenants and returns how many
// landed on each partition.
func produceSpread(t *testing.T, hc heraldpb.HeraldClient, topic, prefix string, n int) map[uint32]uint64 {
	t.Helper()
	events := make([]*heraldpb.Event, n)
	for i := range events {
		events[i] = &heraldpb.Event{TenantId: fmt.Sprintf("t%d", i%10), Payload: fmt.Appendf(nil, "%s%d", prefix, i)}
	}
	counts := map[uint32]uint64{}
	for _, r := range produceRetry(t, hc, topic, events...) {
		counts[r.GetPartition()]++
	}
	return counts
}

func equalLag(t *testing.T, what string, info *heraldpb.ConsumerGroupInfo, want map[uint32]uint64, partitions uint32) {
	t.Helper()
	got := lagByPartition(info)
	var total uint64
	for p := range partitions {
		if got[p] != want[p] {
			t.Fatalf("%s: partition %d lag %d, want %d (all: %v, want %v)", what, p, got[p], want[p], got, want)
		}
		total += want[p]
	}
	if info.GetLagEvents() != total {
		t.Fatalf("%s: total lag %d, want %d", what, info.GetLagEvents(), total)
	}
}

// The consumer group administration end to end on a three-node cluster,
// through the public API: create (idempotent for the same config), lag per
// partition as events are produced, reset to latest, earliest and a time,
// list, the errors of each call, delete.
func TestGroupAdministration(t *testing.T) {
	c := startCluster(t, 3)
	hc := c.rawClient(0)
	createAutoTopic(t, hc, "orders", 3, 3)
	produceRetry(t, hc, "orders", &heraldpb.Event{TenantId: "warmup"}) // every partition has a leader
	warm := produceSpread(t, hc, "orders", "warm", 10)

	created, err := hc.CreateGroup(ctxTimeout(t, 20*time.Second), &heraldpb.CreateGroupRequest{
		Topic: "orders", Group: "billing", Config: &heraldpb.ConsumerGroupConfig{AckWaitMs: 5000, MaxDeliveries: 3},
		Start: &heraldpb.GroupStart{At: &heraldpb.GroupStart_Position{Position: heraldpb.StartPosition_LATEST}}})
	if err != nil {
		t.Fatalf("create group: %v", err)
	}
	info := created.GetGroup()
	if len(info.GetPartitions()) != 3 || info.GetLagEvents() != 0 {
		t.Fatalf("created at latest: %d partitions, lag %d; want 3, 0", len(info.GetPartitions()), info.GetLagEvents())
	}
	if cfg := info.GetConfig(); cfg.GetAckWaitMs() != 5000 || cfg.GetMaxDeliveries() != 3 || cfg.GetMaxPending() != groupMaxPendingDefault {
		t.Fatalf("config %v, want ack wait 5000, max deliveries 3, max pending the default", cfg)
	}
	for _, p := range info.GetPartitions() {
		if !p.GetPresent() || p.GetFloor() != p.GetHighWatermark() || p.GetCursor() != p.GetFloor() {
			t.Fatalf("partition %d at creation: %v", p.GetPartition(), p)
		}
	}

	// Events produced after the create are the lag, per partition.
	first := produceSpread(t, hc, "orders", "a", 30)
	mid := time.Now()
	second := produceSpread(t, hc, "orders", "b", 20)
	both := map[uint32]uint64{}
	for p := range uint32(3) {
		both[p] = first[p] + second[p]
	}
	for i := range c.nodes { // any node answers alike
		d, err := c.rawClient(i).DescribeGroup(ctxTimeout(t, 20*time.Second), &heraldpb.DescribeGroupRequest{Topic: "orders", Group: "billing"})
		if err != nil {
			t.Fatalf("describe via node %d: %v", i, err)
		}
		equalLag(t, fmt.Sprintf("describe via node %d", i), d.GetGroup(), both, 3)
		for _, p := range d.GetGroup().GetPartitions() {
			if p.GetLagEvents() > 0 && p.GetLagMs() < 0 {
				t.Fatalf("partition %d lag time %d ms", p.GetPartition(), p.GetLagMs())
			}
			if p.GetLeaderId() == "" {
				t.Fatalf("partition %d: no leader named", p.GetPartition())
			}
		}
	}
	list, err := hc.ListGroups(ctxTimeout(t, 20*time.Second), &heraldpb.ListGroupsRequest{Topic: "orders"})
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	// Each partition's leader exports its lag.
	metricLag, reported := map[uint32]uint64{}, map[uint32]int{}
	for _, n := range c.nodes {
		for p, v := range groupGauges(t, n, "herald_group_lag_events", "orders", "billing") {
			metricLag[p] += uint64(v)
			reported[p]++
		}
	}
	for p := range uint32(3) {
		if reported[p] != 1 || metricLag[p] != both[p] {
			t.Fatalf("herald_group_lag_events of partition %d: %d reported by %d nodes, want %d by its leader", p, metricLag[p], reported[p], both[p])
		}
	}
	if len(list.GetGroups()) != 1 || list.GetGroups()[0].GetName() != "billing" || list.GetGroups()[0].GetLagEvents() != 50 {
		t.Fatalf("list: %v, want billing with lag 50", list.GetGroups())
	}

	reset := func(to *heraldpb.GroupStart) *heraldpb.ConsumerGroupInfo {
		t.Helper()
		resp, err := c.rawClient(1).ResetGroup(ctxTimeout(t, 20*time.Second), &heraldpb.ResetGroupRequest{Topic: "orders", Group: "billing", To: to})
		if err != nil {
			t.Fatalf("reset to %v: %v", to, err)
		}
		return resp.GetGroup()
	}
	equalLag(t, "reset to latest", reset(&heraldpb.GroupStart{At: &heraldpb.GroupStart_Position{Position: heraldpb.StartPosition_LATEST}}), nil, 3)
	all := map[uint32]uint64{}
	for p := range uint32(3) {
		all[p] = both[p] + warm[p]
	}
	all[partitionOfTenant(t, hc, "orders", "warmup")]++
	equalLag(t, "reset to earliest", reset(&heraldpb.GroupStart{At: &heraldpb.GroupStart_Position{Position: heraldpb.StartPosition_EARLIEST}}), all, 3)
	equalLag(t, "reset to a time", reset(&heraldpb.GroupStart{At: &heraldpb.GroupStart_TimeUnixNano{TimeUnixNano: mid.UnixNano()}}), second, 3)
	equalLag(t, "reset to an offset past the end (clamped)", reset(&heraldpb.GroupStart{At: &heraldpb.GroupStart_Offset{Offset: 1 << 40}}), nil, 3)

	// Create again: the same config is a success, another is AlreadyExists.
	again, err := c.rawClient(2).CreateGroup(ctxTimeout(t, 20*time.Second), &heraldpb.CreateGroupRequest{
		Topic: "orders", Group: "billing", Config: &heraldpb.ConsumerGroupConfig{AckWaitMs: 5000, MaxDeliveries: 3, MaxPending: groupMaxPendingDefault}})
	if err != nil {
		t.Fatalf("create again with the same config: %v", err)
	}
	equalLag(t, "create again keeps the position", again.GetGroup(), nil, 3)
	_, err = hc.CreateGroup(ctxTimeout(t, 20*time.Second), &heraldpb.CreateGroupRequest{
		Topic: "orders", Group: "billing", Config: &heraldpb.ConsumerGroupConfig{AckWaitMs: 6000}})
	requireGroupError(t, err, codes.AlreadyExists, wire.ErrGroupExists)

	// Errors.
	_, err = hc.CreateGroup(ctxTimeout(t, 10*time.Second), &heraldpb.CreateGroupRequest{Topic: "nope", Group: "g"})
	requireGroupError(t, err, codes.NotFound, wire.ErrTopicNotFound)
	_, err = hc.DescribeGroup(ctxTimeout(t, 10*time.Second), &heraldpb.DescribeGroupRequest{Topic: "orders", Group: "nope"})
	requireGroupError(t, err, codes.NotFound, wire.ErrGroupNotFound)
	_, err = hc.ResetGroup(ctxTimeout(t, 10*time.Second), &heraldpb.ResetGroupRequest{Topic: "orders", Group: "nope"})
	requireGroupError(t, err, codes.NotFound, wire.ErrGroupNotFound)
	_, err = hc.DeleteGroup(ctxTimeout(t, 10*time.Second), &heraldpb.DeleteGroupRequest{Topic: "orders", Group: "nope"})
	requireGroupError(t, err, codes.NotFound, wire.ErrGroupNotFound)
	for name, req := range map[string]*heraldpb.CreateGroupRequest{
		"bad name":         {Topic: "orders", Group: "no spaces"},
		"no name":          {Topic: "orders"},
		"negative ack":     {Topic: "orders", Group: "g", Config: &heraldpb.ConsumerGroupConfig{AckWaitMs: -1}},
		"ack over a day":   {Topic: "orders", Group: "g", Config: &heraldpb.ConsumerGroupConfig{AckWaitMs: 25 * 3600 * 1000}},
		"max pending":      {Topic: "orders", Group: "g", Config: &heraldpb.ConsumerGroupConfig{MaxPending: 1 << 20}},
		"unknown position": {Topic: "orders", Group: "g", Start: &heraldpb.GroupStart{At: &heraldpb.GroupStart_Position{Position: 42}}},
	} {
		_, err := hc.CreateGroup(ctxTimeout(t, 10*time.Second), req)
		if status.Code(err) != codes.InvalidArgument || !errors.Is(wire.FromStatus(err), wire.ErrInvalidArgument) {
			t.Fatalf("%s: %v, want InvalidArgument", name, err)
		}
	}

	// Delete, then it is gone everywhere.
	if _, err := c.rawClient(1).DeleteGroup(ctxTimeout(t, 20*time.Second), &heraldpb.DeleteGroupRequest{Topic: "orders", Group: "billing"}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	_, err = hc.DescribeGroup(ctxTimeout(t, 10*time.Second), &heraldpb.DescribeGroupRequest{Topic: "orders", Group: "billing"})
	requireGroupError(t, err, codes.NotFound, wire.ErrGroupNotFound)
	list, err = hc.ListGroups(ctxTimeout(t, 20*time.Second), &heraldpb.ListGroupsRequest{Topic: "orders"})
	if err != nil || len(list.GetGroups()) != 0 {
		t.Fatalf("list after delete: %v, %v", list.GetGroups(), err)
	}
}

// groupGauges returns the values of a group gauge that node n exports,
// by partition.
func groupGauges(t *testing.T, n *Node, metric, topic, group string) map[uint32]float64 {
	t.Helper()
	families, err := n.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint32]float64{}
	for _, f := range families {
		if f.GetName() != metric {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["topic"] != topic || labels["group"] != group {
				continue
			}
			p, err := strconv.ParseUint(labels["partition"], 10, 32)
			if err != nil {
				t.Fatal(err)
			}
			out[uint32(p)] = m.GetGauge().GetValue()
		}
	}
	return out
}

// partitionOfTenant returns the partition a tenant's events go to, as a
// fetch of the tenant's first event tells.
func partitionOfTenant(t *testing.T, hc heraldpb.HeraldClient, topic, tenant string) uint32 {
	t.Helper()
	for p := range uint32(3) {
		resp, err := hc.Fetch(ctxTimeout(t, 10*time.Second), &heraldpb.FetchRequest{Topic: topic, Partition: p, TenantId: tenant,
			Start: &heraldpb.FetchRequest_Sequence{Sequence: 1}, MaxEvents: 1})
		if err == nil && len(resp.GetEvents()) > 0 {
			return p
		}
	}
	t.Fatalf("no partition holds tenant %s", tenant)
	return 0
}

// A group command sent to a node without the partition's leadership
// reaches the leader: through a follower (it knows the leader) and
// through a node without a replica (it asks the replicas in turn).
func TestGroupCommandsReachTheLeader(t *testing.T) {
	c := startCluster(t, 3)
	hc := c.rawClient(0)
	for _, rf := range []uint32{1, 3} {
		topic := fmt.Sprintf("rf%d", rf)
		info := createAutoTopic(t, hc, topic, 1, rf)
		produceRetry(t, hc, topic, &heraldpb.Event{TenantId: "acme"}, &heraldpb.Event{TenantId: "acme"})
		var leader string
		eventually(t, 20*time.Second, func() error {
			for _, n := range c.nodes {
				if r := n.replica(info.GetPartitions()[0].GetGroupId()); r != nil && r.IsLeader() {
					leader = n.cfg.NodeID
					return nil
				}
			}
			return errors.New("no leader yet")
		})
		for i, n := range c.nodes {
			if n.cfg.NodeID == leader {
				continue
			}
			group := fmt.Sprintf("via-%s", n.cfg.NodeID)
			resp, err := c.rawClient(i).CreateGroup(ctxTimeout(t, 20*time.Second), &heraldpb.CreateGroupRequest{Topic: topic, Group: group})
			if err != nil {
				t.Fatalf("rf %d: create through %s (leader %s): %v", rf, n.cfg.NodeID, leader, err)
			}
			p := resp.GetGroup().GetPartitions()[0]
			if p.GetLeaderId() != leader || p.GetLagEvents() != 2 {
				t.Fatalf("rf %d: create through %s: answered by %q with lag %d; want %s, 2", rf, n.cfg.NodeID, p.GetLeaderId(), p.GetLagEvents(), leader)
			}
		}
	}
}

// A topic's dead-letter topic must be another topic that exists, when
// created and when altered; a topic that is one cannot be deleted.
func TestDeadLetterTopicContract(t *testing.T) {
	c := startCluster(t, 3)
	hc := c.rawClient(1)
	create := func(name, dlt string) (*heraldpb.CreateTopicResponse, error) {
		return hc.CreateTopic(ctxTimeout(t, 20*time.Second), &heraldpb.CreateTopicRequest{Config: &heraldpb.TopicConfig{
			Name: name, Partitions: 1, ReplicationFactor: 3, DeadLetterTopic: dlt}})
	}
	_, err := create("orders", "missing")
	requireGroupError(t, err, codes.InvalidArgument, wire.ErrInvalidArgument)
	if !strings.Contains(err.Error(), `dead-letter topic "missing"`) {
		t.Fatalf("error %v does not name the dead-letter topic", err)
	}
	_, err = create("orders", "orders")
	requireGroupError(t, err, codes.InvalidArgument, wire.ErrInvalidArgument)

	if _, err := create("orders-dlq", ""); err != nil {
		t.Fatal(err)
	}
	resp, err := create("orders", "orders-dlq")
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetTopic().GetConfig().GetDeadLetterTopic(); got != "orders-dlq" {
		t.Fatalf("created with dead-letter topic %q", got)
	}
	d, err := c.rawClient(2).DescribeTopic(ctxTimeout(t, 10*time.Second), &heraldpb.DescribeTopicRequest{Name: "orders"})
	if err != nil || d.GetTopic().GetConfig().GetDeadLetterTopic() != "orders-dlq" {
		t.Fatalf("describe: %v, %v", d, err)
	}

	alter := func(dlt string) error {
		_, err := hc.AlterTopic(ctxTimeout(t, 20*time.Second), &heraldpb.AlterTopicRequest{
			Config: &heraldpb.TopicConfig{Name: "orders", DeadLetterTopic: dlt}, Fields: []string{"dead_letter_topic"}})
		return err
	}
	requireGroupError(t, alter("missing"), codes.InvalidArgument, wire.ErrInvalidArgument)
	requireGroupError(t, alter("orders"), codes.InvalidArgument, wire.ErrInvalidArgument)

	_, err = hc.DeleteTopic(ctxTimeout(t, 20*time.Second), &heraldpb.DeleteTopicRequest{Name: "orders-dlq", Force: true})
	requireGroupError(t, err, codes.InvalidArgument, wire.ErrInvalidArgument)
	if err := alter(""); err != nil {
		t.Fatalf("clear the dead-letter topic: %v", err)
	}
	if _, err := hc.DeleteTopic(ctxTimeout(t, 20*time.Second), &heraldpb.DeleteTopicRequest{Name: "orders-dlq", Force: true}); err != nil {
		t.Fatalf("delete the former dead-letter topic: %v", err)
	}
}

// A group that exists on some partitions only (a create that failed half
// way) is described with the others not present and reset with an unknown
// outcome; a create with the same config completes it, one with another
// config is an unknown outcome naming the conflict (the other partitions
// were created); a delete removes what there is.
func TestGroupCreateCompletesAPartialOne(t *testing.T) {
	c := startCluster(t, 3)
	hc := c.rawClient(0)
	info := createAutoTopic(t, hc, "orders", 3, 3)
	produceRetry(t, hc, "orders", &heraldpb.Event{TenantId: "warmup"})
	cfg := &heraldpb.ConsumerGroupConfig{AckWaitMs: 1000, MaxPending: 10}

	// The first part of a create: partition 1 only, through the internal
	// RPC on its leader.
	p1 := info.GetPartitions()[1].GetGroupId()
	createOnPartition1 := func(group string) {
		t.Helper()
		eventually(t, 20*time.Second, func() error {
			for i, n := range c.nodes {
				if r := n.replica(p1); r != nil && r.IsLeader() {
					conn, err := grpc.NewClient(c.cfgs[i].GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
					if err != nil {
						return err
					}
					defer conn.Close()
					_, err = heraldpb.NewNodeInternalClient(conn).PartitionGroup(ctxTimeout(t, 10*time.Second), &heraldpb.PartitionGroupRequest{
						GroupId: p1, Group: group, Topic: "orders", Partition: 1,
						Command: &heraldpb.PartitionGroupRequest_Create{Create: &heraldpb.PartitionGroupCreate{Config: cfg}}})
					return err
				}
			}
			return errors.New("partition 1 has no leader yet")
		})
	}
	present := func(group string) map[uint32]bool {
		t.Helper()
		d, err := hc.DescribeGroup(ctxTimeout(t, 20*time.Second), &heraldpb.DescribeGroupRequest{Topic: "orders", Group: group})
		if err != nil {
			t.Fatalf("describe %s: %v", group, err)
		}
		out := map[uint32]bool{}
		for _, p := range d.GetGroup().GetPartitions() {
			out[p.GetPartition()] = p.GetPresent()
		}
		return out
	}

	createOnPartition1("half")
	if got := present("half"); !got[1] || got[0] || got[2] {
		t.Fatalf("present %v; want partition 1 only", got)
	}
	_, err := hc.ResetGroup(ctxTimeout(t, 20*time.Second), &heraldpb.ResetGroupRequest{Topic: "orders", Group: "half"})
	if !errors.Is(wire.FromStatus(err), wire.ErrUnknownOutcome) {
		t.Fatalf("reset of a half-created group: %v; want an unknown outcome (partition 1 was reset, the others refused)", err)
	}
	if _, err := hc.CreateGroup(ctxTimeout(t, 20*time.Second), &heraldpb.CreateGroupRequest{Topic: "orders", Group: "half", Config: cfg}); err != nil {
		t.Fatalf("create with the same config: %v", err)
	}
	if got := present("half"); !got[0] || !got[1] || !got[2] {
		t.Fatalf("present %v after the create completed it; want every partition", got)
	}

	createOnPartition1("other")
	_, err = hc.CreateGroup(ctxTimeout(t, 20*time.Second), &heraldpb.CreateGroupRequest{Topic: "orders", Group: "other",
		Config: &heraldpb.ConsumerGroupConfig{AckWaitMs: 2000, MaxPending: 10}})
	if !errors.Is(wire.FromStatus(err), wire.ErrUnknownOutcome) || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("create with another config: %v; want an unknown outcome (two partitions created) naming the conflict", err)
	}
	if _, err := hc.DeleteGroup(ctxTimeout(t, 20*time.Second), &heraldpb.DeleteGroupRequest{Topic: "orders", Group: "other"}); err != nil {
		t.Fatal(err)
	}
	_, err = hc.DescribeGroup(ctxTimeout(t, 10*time.Second), &heraldpb.DescribeGroupRequest{Topic: "orders", Group: "other"})
	requireGroupError(t, err, codes.NotFound, wire.ErrGroupNotFound)

	// A delete of a group on one partition: done; then it is on none.
	createOnPartition1("third")
	if _, err := hc.DeleteGroup(ctxTimeout(t, 20*time.Second), &heraldpb.DeleteGroupRequest{Topic: "orders", Group: "third"}); err != nil {
		t.Fatalf("delete of a group on one partition: %v", err)
	}
	_, err = hc.DeleteGroup(ctxTimeout(t, 20*time.Second), &heraldpb.DeleteGroupRequest{Topic: "orders", Group: "third"})
	requireGroupError(t, err, codes.NotFound, wire.ErrGroupNotFound)
}

// A group command issued right after the partition's leader stops is
// retried by the answering node (the old leader unreachable, no leader
// yet) until the new leader answers, within the call's deadline.
func TestGroupCommandWaitsForANewLeader(t *testing.T) {
	c := startCluster(t, 3)
	info := createAutoTopic(t, c.rawClient(0), "orders", 1, 3)
	produceRetry(t, c.rawClient(0), "orders", &heraldpb.Event{TenantId: "acme"})
	gid := info.GetPartitions()[0].GetGroupId()
	leader := -1
	eventually(t, 20*time.Second, func() error {
		for i, n := range c.nodes {
			if r := n.replica(gid); r != nil && r.IsLeader() {
				leader = i
				return nil
			}
		}
		return errors.New("no leader yet")
	})
	c.stop(leader)
	other := (leader + 1) % 3
	resp, err := c.rawClient(other).CreateGroup(ctxTimeout(t, 30*time.Second), &heraldpb.CreateGroupRequest{Topic: "orders", Group: "billing"})
	if err != nil {
		t.Fatalf("create while the leader is gone: %v", err)
	}
	p := resp.GetGroup().GetPartitions()[0]
	if p.GetLeaderId() == c.cfgs[leader].NodeID || p.GetLagEvents() != 1 {
		t.Fatalf("answered by %s with lag %d; want a new leader, lag 1", p.GetLeaderId(), p.GetLagEvents())
	}
}
