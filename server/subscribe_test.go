package server

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// recvSub receives the next message of a subscription, failing the test
// after d.
func recvSub(t *testing.T, s heraldpb.Herald_SubscribeClient, d time.Duration) (*heraldpb.SubscribeResponse, error) {
	t.Helper()
	type result struct {
		resp *heraldpb.SubscribeResponse
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		resp, err := s.Recv()
		ch <- result{resp, err}
	}()
	select {
	case r := <-ch:
		return r.resp, wire.FromStatus(r.err)
	case <-time.After(d):
		t.Fatalf("no subscription message in %v", d)
		return nil, nil
	}
}

func subscribe(t *testing.T, hc heraldpb.HeraldClient, start *heraldpb.SubscribeStart) heraldpb.Herald_SubscribeClient {
	t.Helper()
	s, err := hc.Subscribe(ctxTimeout(t, 60*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&heraldpb.SubscribeRequest{Msg: &heraldpb.SubscribeRequest_Start{Start: start}}); err != nil {
		t.Fatal(err)
	}
	return s
}

// Every replica serves a subscription; credit bounds what is sent, and an
// idle stream heartbeats the high watermark; resuming from next_offset on
// another node gives exactly the next event; filters keep only what they
// name.
func TestSubscribeCreditHeartbeatResumeAndFilters(t *testing.T) {
	c := startCluster(t, 3)
	hc := c.rawClient(0)
	info := createTopicConfig(t, hc, &heraldpb.TopicConfig{Name: "subs", Partitions: 1, ReplicationFactor: 3, AutoTenants: true})
	for i := range 30 {
		tenant := fmt.Sprintf("t%d", i%3)
		produceRetry(t, hc, "subs", &heraldpb.Event{TenantId: tenant, Key: []byte(fmt.Sprint(i % 2)),
			Headers: map[string]string{"kind": fmt.Sprint(i % 5)}, Payload: []byte(fmt.Sprint(i))})
	}
	epoch := info.GetPartitions()[0].GetGroupId()

	// Credit of 10: exactly 10 events, then heartbeats carrying the HW.
	s := subscribe(t, c.rawClient(1), &heraldpb.SubscribeStart{Topic: "subs",
		Start: &heraldpb.SubscribeStart_Position{Position: heraldpb.StartPosition_EARLIEST}, CreditEvents: 10, HeartbeatMs: 100})
	var got []*heraldpb.Event
	var last *heraldpb.SubscribeResponse
	for len(got) < 10 {
		resp, err := recvSub(t, s, 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetHeartbeat() {
			continue // the replica may not have applied everything yet
		}
		if resp.GetEpoch() != epoch {
			t.Fatalf("epoch %d, want %d", resp.GetEpoch(), epoch)
		}
		got = append(got, resp.GetEvents()...)
		last = resp
	}
	if len(got) != 10 || last.GetNextOffset() != 10 {
		t.Fatalf("got %d events, next offset %d; want 10, 10", len(got), last.GetNextOffset())
	}
	for i, ev := range got {
		if ev.GetOffset() != uint64(i) || string(ev.GetPayload()) != fmt.Sprint(i) {
			t.Fatalf("event %d: offset %d payload %q", i, ev.GetOffset(), ev.GetPayload())
		}
	}
	for range 3 {
		resp, err := recvSub(t, s, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !resp.GetHeartbeat() || len(resp.GetEvents()) != 0 || resp.GetNextOffset() != 10 {
			t.Fatalf("past the credit, want heartbeats at next offset 10, got %v", resp)
		}
		if resp.GetHighWatermark() < 10 {
			t.Fatalf("heartbeat high watermark %d", resp.GetHighWatermark())
		}
	}
	// More credit: the rest.
	if err := s.Send(&heraldpb.SubscribeRequest{Msg: &heraldpb.SubscribeRequest_Credit{Credit: &heraldpb.SubscribeCredit{Events: 100}}}); err != nil {
		t.Fatal(err)
	}
	for len(got) < 30 {
		resp, err := recvSub(t, s, 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, resp.GetEvents()...)
	}
	for i, ev := range got {
		if ev.GetOffset() != uint64(i) {
			t.Fatalf("event %d has offset %d", i, ev.GetOffset())
		}
	}

	// Resume on another node from offset 17 with the epoch: exactly 17...
	r := subscribe(t, c.rawClient(2), &heraldpb.SubscribeStart{Topic: "subs",
		Start: &heraldpb.SubscribeStart_Offset{Offset: 17}, Epoch: epoch})
	var resumed []*heraldpb.Event
	for len(resumed) < 13 {
		resp, err := recvSub(t, r, 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		resumed = append(resumed, resp.GetEvents()...)
	}
	for i, ev := range resumed {
		if ev.GetOffset() != uint64(17+i) || string(ev.GetPayload()) != string(got[17+i].GetPayload()) {
			t.Fatalf("resumed event %d: offset %d, want %d", i, ev.GetOffset(), 17+i)
		}
	}

	// Filters: tenant t1, key "1", header kind=3: i%3==1, i%2==1, i%5==3 -> i in {13}.
	f := subscribe(t, c.rawClient(0), &heraldpb.SubscribeStart{Topic: "subs", TenantId: "t1", Key: []byte("1"),
		Headers: map[string]string{"kind": "3"},
		Start:   &heraldpb.SubscribeStart_Position{Position: heraldpb.StartPosition_EARLIEST}, HeartbeatMs: 100})
	var filtered []*heraldpb.Event
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := recvSub(t, f, 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		filtered = append(filtered, resp.GetEvents()...)
		if resp.GetNextOffset() == 30 {
			break
		}
	}
	if len(filtered) != 1 || filtered[0].GetOffset() != 13 {
		t.Fatalf("filtered: %v", filtered)
	}
}

func TestSubscribeRefusesBadStartsWithTypedErrors(t *testing.T) {
	c := startCluster(t, 3)
	hc := c.rawClient(0)
	info := createTopicConfig(t, hc, &heraldpb.TopicConfig{Name: "subs", Partitions: 1, ReplicationFactor: 3, AutoTenants: true})
	produceRetry(t, hc, "subs", &heraldpb.Event{TenantId: "a", Payload: []byte("x")})
	epoch := info.GetPartitions()[0].GetGroupId()

	cases := []struct {
		name  string
		start *heraldpb.SubscribeStart
		want  error
	}{
		{"unknown topic", &heraldpb.SubscribeStart{Topic: "nope", Start: &heraldpb.SubscribeStart_Offset{}}, wire.ErrTopicNotFound},
		{"unknown partition", &heraldpb.SubscribeStart{Topic: "subs", Partition: 4, Start: &heraldpb.SubscribeStart_Offset{}}, wire.ErrPartitionNotFound},
		{"no start", &heraldpb.SubscribeStart{Topic: "subs"}, wire.ErrInvalidArgument},
		{"sequence without tenant", &heraldpb.SubscribeStart{Topic: "subs", Start: &heraldpb.SubscribeStart_Sequence{Sequence: 1}}, wire.ErrInvalidArgument},
		{"far above the high watermark", &heraldpb.SubscribeStart{Topic: "subs", Start: &heraldpb.SubscribeStart_Offset{Offset: 1 << 40}}, wire.ErrOffsetOutOfRange},
		{"another epoch", &heraldpb.SubscribeStart{Topic: "subs", Epoch: epoch + 1000, Start: &heraldpb.SubscribeStart_Offset{}}, wire.ErrEpochChanged},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := subscribe(t, c.rawClient(1), tc.start)
			_, err := recvSub(t, s, 20*time.Second)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}

	// A first message that is not start.
	s, err := c.rawClient(1).Subscribe(ctxTimeout(t, 20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&heraldpb.SubscribeRequest{Msg: &heraldpb.SubscribeRequest_Credit{Credit: &heraldpb.SubscribeCredit{Events: 1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := recvSub(t, s, 20*time.Second); !errors.Is(err, wire.ErrInvalidArgument) {
		t.Fatalf("credit first: got %v", err)
	}
}
