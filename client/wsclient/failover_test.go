package wsclient_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wsclient"
	"github.com/heraldlog/herald/server/proccluster"
)

// startCluster runs three herald processes and returns them with an SDK
// client and the nodes' WebSocket URLs.
func startCluster(t *testing.T, ctx context.Context) (*proccluster.Cluster, *client.Client, []string) {
	t.Helper()
	nodes, err := proccluster.Layout(t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	c, err := proccluster.New(proccluster.Config{Binary: proccluster.TestBinary(t), Nodes: nodes,
		ServeArgs: []string{"--log-level", "warn"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Close()
		if t.Failed() {
			for i := range nodes {
				t.Logf("--- %s\n%s", nodes[i].ID, c.LogTail(i))
			}
		}
	})
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	if err := c.AwaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	var urls []string
	for _, n := range nodes {
		urls = append(urls, "ws://"+n.HTTPAddr+"/v1/ws")
	}
	cl, err := client.New(ctx, client.Config{Servers: c.GRPCAddrs()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return c, cl, urls
}

// The Done-means test of issue 11: a WebSocket subscriber receives 50,000
// events produced concurrently by four tenants, in offset order with no
// gap or repeat, while the node it is connected to is killed (SIGKILL)
// and restarted; it resumes on another node, and what it received is
// exactly a replay of the partition.
func TestSubscriberSurvivesNodeKillUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three herald processes")
	}
	const (
		producers      = 4
		eventsTotal    = 50_000
		batchEvents    = 100
		killAtReceived = 15_000
	)
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, cl, urls := startCluster(t, ctx)
	if _, err := cl.CreateTopic(ctx, &heraldpb.TopicConfig{Name: "orders", Partitions: 1, ReplicationFactor: 3,
		DedupeWindowMs: int64(10 * time.Minute / time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	for p := range producers {
		if _, err := cl.CreateTenant(ctx, &heraldpb.Tenant{Id: fmt.Sprintf("tenant-%d", p)}); err != nil {
			t.Fatal(err)
		}
	}

	ws, err := wsclient.Dial(ctx, wsclient.Config{URLs: urls, Heartbeat: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	sub, err := ws.Subscribe(ctx, wsclient.SubscribeOptions{Topic: "orders", Start: wsclient.StartEarliest})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	// The subscriber: every event, checked as it arrives.
	var (
		received atomic.Int64
		got      = make([]wsclient.Event, 0, eventsTotal)
		subErr   = make(chan error, 1)
	)
	go func() {
		for e, err := range sub.All(ctx) {
			if err != nil {
				subErr <- err
				return
			}
			if want := uint64(len(got)); e.Offset != want {
				subErr <- fmt.Errorf("event %d has offset %d: a gap or a repeat", want, e.Offset)
				return
			}
			got = append(got, e)
			if received.Add(1) == eventsTotal {
				subErr <- nil
				return
			}
		}
	}()

	// Four producers, one tenant each, in batches. A batch cut by the
	// kill has an unknown outcome: it is resent with the same event ids,
	// which the topic's dedupe window makes safe.
	var (
		wg         sync.WaitGroup
		acked      atomic.Int64
		produceErr = make(chan error, producers)
	)
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tenant := fmt.Sprintf("tenant-%d", p)
			for first := 0; first < eventsTotal/producers; first += batchEvents {
				batch := make([]*heraldpb.Event, 0, batchEvents)
				for i := first; i < first+batchEvents; i++ {
					batch = append(batch, &heraldpb.Event{TenantId: tenant, EventId: fmt.Sprintf("%s/%d", tenant, i),
						Payload: fmt.Appendf(nil, `{"producer":%d,"n":%d}`, p, i)})
				}
				var err error
				for attempt := 0; attempt < 100; attempt++ {
					if _, err = cl.Produce(ctx, "orders", batch...); err == nil {
						break
					}
					if ctx.Err() != nil {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
				if err != nil {
					produceErr <- fmt.Errorf("%s: batch at %d: %w", tenant, first, err)
					return
				}
				acked.Add(batchEvents)
			}
		}()
	}

	// Kill the subscriber's node mid-stream, SIGKILL; bring it back once
	// the subscriber has moved and received more.
	await := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			select {
			case err := <-subErr:
				t.Fatalf("the subscriber stopped while waiting for %s: %v", what, err)
			case err := <-produceErr:
				t.Fatalf("a producer failed while waiting for %s: %v", what, err)
			case <-ctx.Done():
				t.Fatalf("timed out waiting for %s (received %d)", what, received.Load())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	killAt := int64(killAtReceived + rng.IntN(5_000))
	await("the first events", func() bool { return received.Load() >= killAt })
	victimURL := sub.URL()
	victim := -1
	for i, u := range urls {
		if u == victimURL {
			victim = i
		}
	}
	if victim < 0 {
		t.Fatalf("the subscriber is connected to %q, not one of %v", victimURL, urls)
	}
	t.Logf("received %d, producers acked %d of %d; killing node %d (%s), the subscriber's",
		received.Load(), acked.Load(), eventsTotal, victim, victimURL)
	killed := time.Now()
	if err := c.Kill(victim); err != nil {
		t.Fatal(err)
	}
	resumedAt := received.Load() + 2_000
	await("the subscriber to resume elsewhere", func() bool {
		return sub.Reconnects() >= 1 && received.Load() >= resumedAt
	})
	t.Logf("resumed on %s after %s; restarting node %d", sub.URL(), time.Since(killed).Round(time.Millisecond), victim)
	if err := c.Start(victim); err != nil {
		t.Fatal(err)
	}
	if err := c.AwaitReady(ctx, victim); err != nil {
		t.Fatal(err)
	}

	wg.Wait()
	close(produceErr)
	for err := range produceErr {
		t.Fatal(err)
	}
	select {
	case err := <-subErr:
		if err != nil {
			t.Fatalf("subscriber: %v", err)
		}
	case <-ctx.Done():
		t.Fatalf("the subscriber received %d of %d events", received.Load(), eventsTotal)
	}
	if sub.URL() == victimURL && sub.Reconnects() < 2 {
		t.Fatalf("the subscriber never left the killed node %s", victimURL)
	}

	// A replay of the partition over gRPC is exactly what the subscriber
	// received.
	r, err := client.NewReader(cl, client.ReaderConfig{Topic: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	var replay []*heraldpb.Event
	for len(replay) < eventsTotal {
		page, err := r.Next(ctx)
		if err != nil {
			t.Fatalf("replay at %v: %v", r.Position(), err)
		}
		replay = append(replay, page.GetEvents()...)
		if len(page.GetEvents()) == 0 && r.AtEnd() {
			break
		}
	}
	if page, err := r.Next(ctx); err != nil || len(page.GetEvents()) != 0 {
		t.Fatalf("the partition holds more than %d events (%d more, %v)", eventsTotal, len(page.GetEvents()), err)
	}
	if len(replay) != len(got) {
		t.Fatalf("replay has %d events, the subscriber %d", len(replay), len(got))
	}
	ids := make(map[string]bool, eventsTotal)
	for i, w := range replay {
		g := got[i]
		if g.Offset != w.GetOffset() || g.Sequence != w.GetSequence() || g.TenantID != w.GetTenantId() ||
			g.EventID != w.GetEventId() || string(g.Payload) != string(w.GetPayload()) {
			t.Fatalf("event %d: subscriber got offset %d seq %d %s %s %q, replay has offset %d seq %d %s %s %q", i,
				g.Offset, g.Sequence, g.TenantID, g.EventID, g.Payload,
				w.GetOffset(), w.GetSequence(), w.GetTenantId(), w.GetEventId(), w.GetPayload())
		}
		if ids[g.EventID] {
			t.Fatalf("event id %s twice in the partition", g.EventID)
		}
		ids[g.EventID] = true
	}
	t.Logf("%d events received in order across %d reconnects, equal to the replay", len(got), sub.Reconnects())
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Next(ctx); !errors.Is(err, wsclient.ErrClosed) {
		t.Fatalf("Next after Close: %v, want ErrClosed", err)
	}
}
