package server

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	"github.com/heraldlog/herald/partition"
	"github.com/heraldlog/herald/server/controller"
)

// The guard's arithmetic: nothing below the slow lag, a throttle growing
// linearly to lagThrottleMax at the pause lag (at twice the slow lag
// without one), a pause from the pause lag on.
func TestGroupPressure(t *testing.T) {
	both := controller.ProtectedGroup{Group: "g", SlowLag: 100, PauseLag: 200}
	slowOnly := controller.ProtectedGroup{Group: "g", SlowLag: 100}
	pauseOnly := controller.ProtectedGroup{Group: "g", PauseLag: 200}
	cases := []struct {
		name     string
		group    controller.ProtectedGroup
		lag      uint64
		throttle time.Duration
		level    lagLevel
	}{
		{"caught up", both, 0, 0, lagNone},
		{"below slow", both, 99, 0, lagNone},
		{"at slow: the least hint", both, 100, lagThrottleMin, lagSlowed},
		{"a quarter of the way", both, 125, 250 * time.Millisecond, lagSlowed},
		{"half way", both, 150, 500 * time.Millisecond, lagSlowed},
		{"just below pause", both, 199, 990 * time.Millisecond, lagSlowed},
		{"at pause", both, 200, 0, lagPaused},
		{"far past pause", both, 1 << 62, 0, lagPaused},
		{"slow only, below", slowOnly, 99, 0, lagNone},
		{"slow only, half way to twice", slowOnly, 150, 500 * time.Millisecond, lagSlowed},
		{"slow only, at twice", slowOnly, 200, lagThrottleMax, lagSlowed},
		{"slow only, never paused", slowOnly, 1 << 62, lagThrottleMax, lagSlowed},
		{"pause only, below", pauseOnly, 199, 0, lagNone},
		{"pause only, at pause", pauseOnly, 200, 0, lagPaused},
		{"huge lags do not overflow", controller.ProtectedGroup{SlowLag: 1 << 62, PauseLag: 1<<63 + 1<<62}, 1 << 63, 500 * time.Millisecond, lagSlowed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			throttle, level := groupPressure(tc.group, tc.lag)
			if throttle != tc.throttle || level != tc.level {
				t.Fatalf("lag %d: throttle %v level %d, want %v level %d", tc.lag, throttle, level, tc.throttle, tc.level)
			}
		})
	}
}

// The partition's pressure is its worst group's: any pause beats every
// throttle; of two pauses, the group furthest past its pause lag; groups
// that do not exist count for nothing.
func TestWorstPressure(t *testing.T) {
	a := controller.ProtectedGroup{Group: "a", SlowLag: 100, PauseLag: 200}
	b := controller.ProtectedGroup{Group: "b", SlowLag: 10, PauseLag: 20}
	c := controller.ProtectedGroup{Group: "c", PauseLag: 50}

	p, levels := worstPressure("t", []protectedLag{{group: a, lag: 150, ok: true}, {group: b, lag: 5, ok: true}})
	if p.Pause || p.Throttle != 500*time.Millisecond || p.Group != "a" || p.Topic != "t" || p.Lag != 150 || levels[0] != lagSlowed || levels[1] != lagNone {
		t.Fatalf("one slowed: %+v %v", p, levels)
	}
	p, levels = worstPressure("t", []protectedLag{{group: a, lag: 190, ok: true}, {group: b, lag: 25, ok: true}, {group: c, lag: 60, ok: true}})
	want := partition.LagPressure{Pause: true, Topic: "t", Group: "c", Lag: 60, PauseLag: 50}
	if p != want || levels[0] != lagSlowed || levels[1] != lagPaused || levels[2] != lagPaused {
		t.Fatalf("two paused: %+v %v, want %+v", p, levels, want)
	}
	p, levels = worstPressure("t", []protectedLag{{group: a, lag: 0, ok: false}, {group: b, lag: 15, ok: true}})
	if p.Pause || p.Group != "b" || p.Throttle != 500*time.Millisecond || levels[0] != lagNone {
		t.Fatalf("a missing group: %+v %v", p, levels)
	}
	if p, _ := worstPressure("t", nil); p != (partition.LagPressure{}) {
		t.Fatalf("no groups: %+v", p)
	}
}

// Bad protected groups are refused with INVALID_ARGUMENT naming the field
// and every problem.
func TestValidateProtectedGroups(t *testing.T) {
	g := func(name string, slow, pause uint64) *heraldpb.ProtectedGroup {
		return &heraldpb.ProtectedGroup{Group: name, SlowLag: slow, PauseLag: pause}
	}
	nine := make([]*heraldpb.ProtectedGroup, protectedGroupsMax+1)
	for i := range nine {
		nine[i] = g(fmt.Sprintf("g%d", i), 1, 2)
	}
	cases := []struct {
		name   string
		groups []*heraldpb.ProtectedGroup
		want   string // "" when valid
	}{
		{"none", nil, ""},
		{"slow and pause", []*heraldpb.ProtectedGroup{g("billing", 100, 200)}, ""},
		{"slow only", []*heraldpb.ProtectedGroup{g("billing", 100, 0)}, ""},
		{"pause only", []*heraldpb.ProtectedGroup{g("billing", 0, 200)}, ""},
		{"the most", nine[:protectedGroupsMax], ""},
		{"too many", nine, "at most 8"},
		{"bad name", []*heraldpb.ProtectedGroup{g("no spaces", 1, 2)}, "invalid consumer group name"},
		{"empty name", []*heraldpb.ProtectedGroup{g("", 1, 2)}, "invalid consumer group name"},
		{"twice", []*heraldpb.ProtectedGroup{g("billing", 1, 2), g("billing", 3, 4)}, "named twice"},
		{"no lag", []*heraldpb.ProtectedGroup{g("billing", 0, 0)}, "needs a slow lag, a pause lag or both"},
		{"pause equal to slow", []*heraldpb.ProtectedGroup{g("billing", 100, 100)}, "pause lag 100 must be above slow lag 100"},
		{"pause below slow", []*heraldpb.ProtectedGroup{g("billing", 100, 50)}, "pause lag 50 must be above slow lag 100"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := validateContract(&heraldpb.TopicConfig{Name: "t", ProtectedGroups: tc.groups})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var we *wire.Error
			if !errors.Is(err, wire.ErrInvalidArgument) || !errors.As(err, &we) || we.Metadata[wire.MetadataField] != "protected_groups" || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want INVALID_ARGUMENT on protected_groups containing %q", err, tc.want)
			}
		})
	}
	// Every problem is reported at once.
	err := validateContract(&heraldpb.TopicConfig{Name: "t", ProtectedGroups: []*heraldpb.ProtectedGroup{g("a", 0, 0), g("b", 5, 1)}})
	if !strings.Contains(fmt.Sprint(err), `"a" needs`) || !strings.Contains(fmt.Sprint(err), `"b": pause lag 1`) {
		t.Fatalf("not every problem reported: %v", err)
	}
}

// lagGaugeValue returns herald_admission_lag_pressure{topic,group} on n,
// and whether it is exported.
func lagGaugeValue(t *testing.T, n *Node, topic, group string) (float64, bool) {
	t.Helper()
	families, err := n.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "herald_admission_lag_pressure" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["topic"] == topic && labels["group"] == group {
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

// leaderPressure returns the lag guard's current answer on the
// partition's leader, and the leader's node.
func (f *consumeFixture) leaderPressure(t *testing.T) (partition.LagPressure, *Node) {
	t.Helper()
	n := f.c.nodes[f.leader(t)]
	n.lag.mu.Lock()
	c := n.lag.mu.cells[f.gid]
	n.lag.mu.Unlock()
	if c == nil {
		t.Fatalf("no lag guard for group %d on the leader", f.gid)
	}
	return c.pressure(), n
}

// alterProtected sets the topic's protected groups through the API.
func (f *consumeFixture) alterProtected(t *testing.T, groups ...*heraldpb.ProtectedGroup) {
	t.Helper()
	// Altering again is harmless: an unknown outcome (the controller's
	// leadership moving while the cluster settles) is retried.
	eventually(t, 20*time.Second, func() error {
		resp, err := f.hc.AlterTopic(ctxTimeout(t, 10*time.Second), &heraldpb.AlterTopicRequest{
			Config: &heraldpb.TopicConfig{Name: f.topic, ProtectedGroups: groups}, Fields: []string{"protected_groups"}})
		if err := wire.FromStatus(err); err != nil {
			if errors.Is(err, wire.ErrInvalidArgument) {
				t.Fatalf("alter protected groups: %v", err)
			}
			return err
		}
		if got := resp.GetTopic().GetConfig().GetProtectedGroups(); len(got) != len(groups) {
			t.Fatalf("altered topic protects %v", got)
		}
		return nil
	})
}

// A protected consumer group on a three-node cluster (issue 13): with the
// group 300 events behind (slow 100, pause 200) the leader's guard pauses
// the topic's producers and a produce is refused THROTTLED (consumer_lag)
// with nothing written; raising the pause lag by an alter resumes them,
// restoring it pauses them again; the group consuming and acknowledging
// to lag 150 turns the pause into a throttle of half lagThrottleMax (a
// produce is admitted with throttle_ms), and to lag 0 into nothing (a
// produce is admitted). Bad protected groups are refused on create and
// alter.
func TestProtectedGroupPacesProducers(t *testing.T) {
	// A short ack wait and no dead-lettering: what a stream lost to a
	// leadership move is soon delivered again to the next one.
	f := newConsumeFixture(t, 0, &heraldpb.ConsumerGroupConfig{AckWaitMs: 2000}, "")

	// Refused before anything is proposed (retried only while the
	// controller's leadership settles).
	refused := func(what string, call func() error) {
		t.Helper()
		eventually(t, 20*time.Second, func() error {
			err := wire.FromStatus(call())
			switch {
			case errors.Is(err, wire.ErrInvalidArgument):
				return nil
			case err == nil:
				t.Fatalf("%s accepted", what)
			}
			return err
		})
	}
	refused("create with pause below slow", func() error {
		_, err := f.hc.CreateTopic(ctxTimeout(t, 10*time.Second), &heraldpb.CreateTopicRequest{Config: &heraldpb.TopicConfig{
			Name: "bad", Partitions: 1, ReplicationFactor: 3, ProtectedGroups: []*heraldpb.ProtectedGroup{{Group: "g", SlowLag: 200, PauseLag: 100}}}})
		return err
	})
	refused("alter with a bad group name", func() error {
		_, err := f.hc.AlterTopic(ctxTimeout(t, 10*time.Second), &heraldpb.AlterTopicRequest{
			Config: &heraldpb.TopicConfig{Name: f.topic, ProtectedGroups: []*heraldpb.ProtectedGroup{{Group: "a b", PauseLag: 1}}}, Fields: []string{"protected_groups"}})
		return err
	})

	f.alterProtected(t, &heraldpb.ProtectedGroup{Group: f.group, SlowLag: 100, PauseLag: 200}, &heraldpb.ProtectedGroup{Group: "not-yet-created", PauseLag: 1})
	batch := make([]*heraldpb.Event, 300)
	for i := range batch {
		batch[i] = &heraldpb.Event{TenantId: "acme", Payload: []byte(strconv.Itoa(i))}
	}
	produceRetry(t, f.hc, f.topic, batch...)

	// 300 behind: paused; the group that does not exist protects nothing.
	eventually(t, 10*time.Second, func() error {
		p, n := f.leaderPressure(t)
		want := partition.LagPressure{Pause: true, Topic: f.topic, Group: f.group, Lag: 300, PauseLag: 200}
		if p != want {
			return fmt.Errorf("pressure %+v, want %+v", p, want)
		}
		if v, ok := lagGaugeValue(t, n, f.topic, f.group); v != float64(lagPaused) || !ok {
			return fmt.Errorf("lag pressure gauge %v (exported %v), want 2", v, ok)
		}
		if v, _ := lagGaugeValue(t, n, f.topic, "not-yet-created"); v != float64(lagNone) {
			return fmt.Errorf("gauge of a group that does not exist: %v", v)
		}
		return nil
	})
	assertProduceRefusedForLag(t, f)

	// A raised pause lag applies without a restart.
	f.alterProtected(t, &heraldpb.ProtectedGroup{Group: f.group, PauseLag: 1000})
	eventually(t, 10*time.Second, func() error {
		if p, _ := f.leaderPressure(t); p != (partition.LagPressure{}) {
			return fmt.Errorf("pressure %+v after raising the pause lag, want none", p)
		}
		return nil
	})
	f.alterProtected(t, &heraldpb.ProtectedGroup{Group: f.group, SlowLag: 100, PauseLag: 200})
	eventually(t, 10*time.Second, func() error {
		if p, _ := f.leaderPressure(t); !p.Pause {
			return fmt.Errorf("pressure %+v after restoring the pause lag, want a pause", p)
		}
		return nil
	})

	// The group consumes and acknowledges the first 150: slowed.
	ackThrough := f.consumer(t)
	ackThrough(150)
	eventually(t, 10*time.Second, func() error {
		p, n := f.leaderPressure(t)
		if p.Pause || p.Throttle != lagThrottleMax/2 || p.Lag != 150 {
			return fmt.Errorf("pressure %+v at lag 150, want a throttle of %v", p, lagThrottleMax/2)
		}
		if v, _ := lagGaugeValue(t, n, f.topic, f.group); v != float64(lagSlowed) {
			return fmt.Errorf("lag pressure gauge %v, want 1", v)
		}
		return nil
	})
	assertProduceThrottled(t, f)

	// Caught up: nothing; the topic's producers are accepted again.
	ackThrough(f.c.nodes[f.leader(t)].replica(f.gid).HighWatermark())
	eventually(t, 10*time.Second, func() error {
		p, n := f.leaderPressure(t)
		if p != (partition.LagPressure{}) {
			return fmt.Errorf("pressure %+v caught up, want none", p)
		}
		if v, _ := lagGaugeValue(t, n, f.topic, f.group); v != float64(lagNone) {
			return fmt.Errorf("lag pressure gauge %v, want 0", v)
		}
		return nil
	})
	produceRetry(t, f.hc, f.topic, &heraldpb.Event{TenantId: "acme", Payload: []byte("after")})
}

// assertProduceRefusedForLag checks, end to end, that a produce to the
// paused topic is refused THROTTLED (limit consumer_lag) naming the group,
// and that nothing of it was written.
func assertProduceRefusedForLag(t *testing.T, f *consumeFixture) {
	t.Helper()
	before := f.c.nodes[f.leader(t)].replica(f.gid).HighWatermark()
	err := produceErr(t, f.hc, f.topic, &heraldpb.Event{TenantId: "acme", Payload: []byte("refused")})
	var we *wire.Error
	if !errors.Is(err, wire.ErrThrottled) || !errors.As(err, &we) {
		t.Fatalf("produce while paused: %v, want THROTTLED", err)
	}
	if we.Metadata[wire.MetadataLimit] != wire.LimitConsumerLag || we.Metadata[wire.MetadataGroup] != f.group || we.Metadata[wire.MetadataTopic] != f.topic {
		t.Fatalf("refusal metadata %v", we.Metadata)
	}
	if d, limit, ok := wire.RetryAfter(err); !ok || d <= 0 || limit != wire.LimitConsumerLag {
		t.Fatalf("refusal's retry-after %v %q %v: %v", d, limit, ok, err)
	}
	if after := f.c.nodes[f.leader(t)].replica(f.gid).HighWatermark(); after != before {
		t.Fatalf("a refused produce was written: high watermark %d -> %d", before, after)
	}
}

// assertProduceThrottled checks, end to end, that a produce to the slowed
// topic is admitted with a throttle hint.
func assertProduceThrottled(t *testing.T, f *consumeFixture) {
	t.Helper()
	resp, err := produceAnswered(t, f.hc, &heraldpb.ProduceRequest{Topic: f.topic, Events: []*heraldpb.Event{{TenantId: "acme", Payload: []byte("slowed")}}})
	if err != nil {
		t.Fatalf("produce while slowed: %v", err)
	}
	if resp.GetThrottleMs() <= 0 {
		t.Fatalf("produce while slowed: throttle_ms %d, want a hint", resp.GetThrottleMs())
	}
}

// consumer returns a function that consumes the group's partition as
// member m1 (generation 1) and acknowledges cumulatively up to an offset
// (exclusive), returning once the acknowledgement is applied. A stream
// ended by a leadership move is opened again on the new leader.
func (f *consumeFixture) consumer(t *testing.T) func(through uint64) {
	var stream heraldpb.Herald_GroupConsumeClient
	var id, waitFor uint64
	return func(through uint64) {
		t.Helper()
		waitFor = 0 // ids start at 1
		eventually(t, 30*time.Second, func() error {
			if stream == nil {
				s, err := f.start(t, f.c.rawClient(f.leader(t)), 1, "m1", 50)
				if err != nil {
					return err
				}
				stream = s
			}
			for {
				resp, err := stream.Recv()
				if err != nil {
					stream = nil
					return err
				}
				if r := resp.GetAckResult(); r != nil {
					if r.GetRefused() || r.GetUnknownOutcome() {
						return fmt.Errorf("ack %d: %v", r.GetId(), r)
					}
					if r.GetId() == waitFor {
						return nil
					}
					continue
				}
				end := uint64(0)
				for _, ev := range resp.GetBatch().GetEvents() {
					end = max(end, ev.GetOffset()+1)
				}
				id++
				if end >= through {
					waitFor = id
				}
				if err := stream.Send(&heraldpb.GroupConsumeRequest{Msg: &heraldpb.GroupConsumeRequest_Ack{Ack: &heraldpb.GroupConsumeAck{
					Id: id, Before: min(end, through)}}}); err != nil {
					stream = nil
					return err
				}
			}
		})
	}
}

// One tick refreshes at most lagGuardPartitionsPerTickMax guards, taking
// them round-robin by group id, so that every guard is refreshed within
// a few ticks; the guard of a tombstoned group without a replica is
// forgotten.
func TestLagGuardTicksAreBounded(t *testing.T) {
	fsm, err := controller.NewFSM(controller.Config{AlterContract: alterContract})
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{controllerFSM: fsm}
	n.mu.replicas = map[uint64]*partition.Replica{}
	g := newLagGuards(n)
	total := lagGuardPartitionsPerTickMax + lagGuardPartitionsPerTickMax/2
	for gid := uint64(1); gid <= uint64(total); gid++ {
		g.mu.cells[gid] = &lagCell{}
	}
	gidOf := make(map[*lagCell]uint64, total)
	for gid, c := range g.mu.cells {
		gidOf[c] = gid
	}
	// Group 1 belongs to a topic created and deleted (its tombstone); it
	// has no replica here.
	for i, cmd := range []controller.Command{
		&controller.CreateTopic{Name: "gone", Partitions: 1, ReplicationFactor: 1, Nodes: []string{"n1"}},
		&controller.DeleteTopic{Name: "gone"},
	} {
		data, err := controller.Encode(cmd)
		if err != nil {
			t.Fatal(err)
		}
		if res := fsm.Apply(&hraft.Log{Index: uint64(i + 1), Type: hraft.LogCommand, Data: data}); res != nil {
			if err, ok := res.(error); ok {
				t.Fatal(err)
			}
		}
	}
	if !fsm.Tombstoned(1) {
		t.Fatal("group 1 not tombstoned")
	}
	g.mu.cells[uint64(total+1)] = &lagCell{} // in place of group 1
	gidOf[g.mu.cells[uint64(total+1)]] = uint64(total + 1)
	seen := make(map[uint64]int)
	for tick := 0; tick < 2; tick++ {
		cells := g.cellsFrom()
		if len(cells) != lagGuardPartitionsPerTickMax {
			t.Fatalf("tick %d refreshed %d guards, want %d", tick, len(cells), lagGuardPartitionsPerTickMax)
		}
		for _, c := range cells {
			seen[gidOf[c]]++
		}
	}
	// Two ticks cover 2 × max guards of 1.5 × max: each at least once,
	// the first half of the ids twice (the second tick wrapped around).
	if _, kept := g.mu.cells[1]; kept || seen[1] != 0 {
		t.Fatalf("the guard of a tombstoned group was kept (refreshed %d times)", seen[1])
	}
	for gid := uint64(2); gid <= uint64(total+1); gid++ {
		want := 1
		if gid <= uint64(lagGuardPartitionsPerTickMax/2+1) {
			want = 2
		}
		if seen[gid] != want {
			t.Fatalf("group %d refreshed %d times in two ticks, want %d", gid, seen[gid], want)
		}
	}
}
