package server

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/heraldlog/herald/client/heraldpb"
)

// Subscriptions at the live edge are served by their tail's hub: each
// tenant-filtered subscription gets exactly its tenant's events, in
// offset order, and the plain ones (sharing one frame per id) get every
// event, while several producers write concurrently; later subscriptions
// attach at the hub's cursor after catching up, with no gap or repeat.
func TestWSHubServesLiveEdgeByTenant(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	c := startClusterConfig(t, 3, func(*Config) {})
	hc := c.rawClient(0)
	createTopicConfig(t, hc, &heraldpb.TopicConfig{Name: "hub", Partitions: 1, ReplicationFactor: 3, AutoTenants: true})
	tenants := []string{"t0", "t1", "t2", "t3", "t4"}

	// Two connections: one with a subscription per tenant, one with two
	// plain subscriptions of the same id on different connections.
	byTenant := wsDial(t, c, 0, nil, 0).read()
	for _, tn := range tenants {
		byTenant.send(map[string]any{"type": "subscribe", "id": tn, "topic": "hub", "start": "latest", "tenant": tn})
		if f := byTenant.next(20*time.Second, byID(tn)); f.Type != wsTypeSubscribed {
			t.Fatalf("subscribe %s: %+v", tn, f)
		}
	}
	plainA := wsDial(t, c, 0, nil, 0).read()
	plainB := wsDial(t, c, 0, nil, 0).read()
	for _, w := range []*wsTestClient{plainA, plainB} {
		w.send(map[string]any{"type": "subscribe", "id": "all", "topic": "hub", "start": "latest"})
		if f := w.next(20*time.Second, byID("all")); f.Type != wsTypeSubscribed {
			t.Fatalf("subscribe all: %+v", f)
		}
	}
	hub := c.nodes[0].metrics.wsHubSubscriptions
	eventually(t, 20*time.Second, func() error {
		if got := testutil.ToFloat64(hub); got != float64(len(tenants)+2) {
			return fmt.Errorf("%v subscriptions on the hub, want %d", got, len(tenants)+2)
		}
		return nil
	})

	// Producers write concurrently, each event of a random tenant.
	const producers, perProducer = 3, 40
	want := map[string][]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	plan := make([][]string, producers)
	for p := range plan {
		for range perProducer {
			plan[p] = append(plan[p], tenants[rng.IntN(len(tenants))])
		}
	}
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, tn := range plan[p] {
				payload := fmt.Sprintf("p%d-%d", p, i)
				produceRetry(t, hc, "hub", &heraldpb.Event{TenantId: tn, Payload: []byte(payload), EventId: payload})
				mu.Lock()
				want[tn] = append(want[tn], payload)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	total := producers * perProducer

	all := plainA.events("all", total)
	checkOffsets(t, all, all[0].Offset)
	if other := plainB.events("all", total); fmt.Sprint(other) != fmt.Sprint(all) {
		t.Fatal("two plain subscriptions got different events")
	}
	for _, tn := range tenants {
		got := byTenant.events(tn, len(want[tn]))
		seen := map[string]bool{}
		last := uint64(0)
		for i, ev := range got {
			if ev.Tenant != tn {
				t.Fatalf("subscription %s got an event of %s", tn, ev.Tenant)
			}
			if i > 0 && ev.Offset <= last {
				t.Fatalf("subscription %s: offset %d after %d", tn, ev.Offset, last)
			}
			last = ev.Offset
			seen[string(ev.Payload)] = true
		}
		for _, p := range want[tn] {
			if !seen[p] {
				t.Fatalf("subscription %s missed %s", tn, p)
			}
		}
	}

	// A subscription from the earliest event catches up on its own, then
	// joins the hub: it sees the whole partition once, and what follows.
	late := wsDial(t, c, 0, nil, 0).read()
	late.send(map[string]any{"type": "subscribe", "id": "late", "topic": "hub", "start": "earliest"})
	evs := late.events("late", total)
	checkOffsets(t, evs, 0)
	eventually(t, 20*time.Second, func() error {
		if got := testutil.ToFloat64(hub); got != float64(len(tenants)+3) {
			return fmt.Errorf("%v subscriptions on the hub, want %d", got, len(tenants)+3)
		}
		return nil
	})
	produceRetry(t, hc, "hub", &heraldpb.Event{TenantId: "t1", Payload: []byte("after")})
	if ev := late.events("late", 1)[0]; ev.Offset != uint64(total) || string(ev.Payload) != "after" {
		t.Fatalf("after joining the hub: %+v", ev)
	}
	if ev := byTenant.events("t1", 1)[0]; string(ev.Payload) != "after" {
		t.Fatalf("t1 after: %+v", ev)
	}

	// Unsubscribing takes a subscription off the hub.
	late.send(map[string]any{"type": "unsubscribe", "id": "late"})
	if f := late.next(20*time.Second, byID("late")); f.Type != wsTypeUnsubscribed || f.NextOffset != uint64(total)+1 {
		t.Fatalf("unsubscribe: %+v", f)
	}
	eventually(t, 20*time.Second, func() error {
		if got := testutil.ToFloat64(hub); got != float64(len(tenants)+2) {
			return fmt.Errorf("%v subscriptions on the hub after unsubscribe, want %d", got, len(tenants)+2)
		}
		return nil
	})
}
