package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldpb"
)

// idempotentEvents returns n events of tenant numbered first.. under the
// producer (id, epoch).
func idempotentEvents(tenant, id string, epoch, first uint64, n int) []*heraldpb.Event {
	events := make([]*heraldpb.Event, n)
	for i := range events {
		seq := first + uint64(i)
		events[i] = &heraldpb.Event{TenantId: tenant, EventId: fmt.Sprintf("%s-%d-%d", id, epoch, seq),
			Payload: []byte(fmt.Sprintf("event %d", seq)), ProducerId: id, ProducerEpoch: epoch, ProducerSeq: seq}
	}
	return events
}

// A resend of a committed request larger than the producer window (1,024
// sequences) is answered as a duplicate with every event's original
// position, and nothing is appended twice (issue 9, defect 4).
func TestResendOfALargeIdempotentRequestIsADuplicateWithOriginalPositions(t *testing.T) {
	c := startCluster(t, 1)
	hc := c.rawClient(0)
	createTopicConfig(t, hc, &heraldpb.TopicConfig{Name: "orders", Partitions: 1, ReplicationFactor: 1, AutoTenants: true})
	init, err := hc.InitProducer(ctxTimeout(t, 10*time.Second), &heraldpb.InitProducerRequest{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000
	id, epoch := init.GetProducerId(), init.GetProducerEpoch()
	first := produceRetry(t, hc, "orders", idempotentEvents("acme", id, epoch, 1, n)...)
	again := produceRetry(t, hc, "orders", idempotentEvents("acme", id, epoch, 1, n)...)
	if len(again) != n {
		t.Fatalf("resend: %d results for %d events", len(again), n)
	}
	for i, r := range again {
		if !r.GetDuplicate() || r.GetOffset() != first[i].GetOffset() || r.GetSequence() != first[i].GetSequence() {
			t.Fatalf("resent event %d: got duplicate=%v offset %d sequence %d, want the original offset %d sequence %d",
				i, r.GetDuplicate(), r.GetOffset(), r.GetSequence(), first[i].GetOffset(), first[i].GetSequence())
		}
	}
	// A sub-range of the committed request is a duplicate too.
	part := produceRetry(t, hc, "orders", idempotentEvents("acme", id, epoch, 10, 5)...)
	for i, r := range part {
		if !r.GetDuplicate() || r.GetOffset() != first[9+i].GetOffset() {
			t.Fatalf("sub-range event %d: got duplicate=%v offset %d, want offset %d", i, r.GetDuplicate(), r.GetOffset(), first[9+i].GetOffset())
		}
	}
	next := produceRetry(t, hc, "orders", &heraldpb.Event{TenantId: "acme", Payload: []byte("after")})
	if next[0].GetOffset() != n {
		t.Fatalf("the next event went to offset %d: the log holds %d events, want %d (each once)", next[0].GetOffset(), next[0].GetOffset(), n)
	}
}

// The SDK's Producer resends a large request whose reply was lost after
// it was committed (the connection broke on the way back): every event is
// stored once and the resend's answer names the original positions
// (issue 9, defect 4).
func TestProducerResendOfALargeRequestAfterALostReplyStoresItOnce(t *testing.T) {
	c := startCluster(t, 1)
	createTopicConfig(t, c.rawClient(0), &heraldpb.TopicConfig{Name: "orders", Partitions: 1, ReplicationFactor: 1, AutoTenants: true})
	var lost atomic.Bool
	loseFirstReply := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		if err == nil && strings.HasSuffix(method, "/Produce") && lost.CompareAndSwap(false, true) {
			return status.Error(codes.Unavailable, "connection reset after the commit")
		}
		return err
	}
	cl, err := client.New(ctxTimeout(t, 10*time.Second), client.Config{Servers: c.addrs(),
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(loseFirstReply)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	ctx := ctxTimeout(t, 30*time.Second)
	p, err := cl.NewProducer(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000
	events := make([]*client.Event, n)
	for i := range events {
		events[i] = &client.Event{TenantId: "acme", Payload: []byte(fmt.Sprintf("event %d", i))}
	}
	var results []*client.ProduceResult
	deadline := time.Now().Add(20 * time.Second)
	for {
		results, err = p.Send(ctx, events...)
		if err == nil || !errors.Is(err, client.ErrNoLeader) || time.Now().After(deadline) {
			break
		}
		lost.Store(false) // not yet sent: lose the reply of the first real one
	}
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	if !lost.Load() {
		t.Fatal("no reply was lost")
	}
	for i, r := range results {
		if !r.GetDuplicate() || r.GetOffset() != uint64(i) || r.GetSequence() != uint64(i+1) {
			t.Fatalf("event %d: duplicate=%v offset %d sequence %d, want the original offset %d sequence %d",
				i, r.GetDuplicate(), r.GetOffset(), r.GetSequence(), i, i+1)
		}
	}
	next, err := p.Send(ctx, &client.Event{TenantId: "acme", Payload: []byte("after")})
	if err != nil {
		t.Fatal(err)
	}
	if next[0].GetOffset() != n || next[0].GetDuplicate() {
		t.Fatalf("the next event: offset %d duplicate=%v, want offset %d: each event stored once", next[0].GetOffset(), next[0].GetDuplicate(), n)
	}
}

// produceRefused produces through hc and returns the error, failing the
// test when the request is accepted.
func produceRefused(t *testing.T, hc heraldpb.HeraldClient, topic string, events ...*heraldpb.Event) error {
	t.Helper()
	resp, err := hc.Produce(ctxTimeout(t, 10*time.Second), &heraldpb.ProduceRequest{Topic: topic, Events: events})
	if err == nil {
		t.Fatalf("produce was accepted: %v", resp.GetResults())
	}
	return client.FromStatus(err)
}

// Another client cannot take over a producer (issue 9, defect 6): ids are
// unguessable, an unknown producer must start at 1, a forged or old epoch
// is fenced, and the victim's next events are stored, not dropped as
// duplicates. A new InitProducer for the id fences its zombie.
func TestProducerCannotBeHijackedAndZombiesAreFenced(t *testing.T) {
	c := startCluster(t, 1)
	hc := c.rawClient(0)
	createTopicConfig(t, hc, &heraldpb.TopicConfig{Name: "orders", Partitions: 1, ReplicationFactor: 1, AutoTenants: true})
	init, err := hc.InitProducer(ctxTimeout(t, 10*time.Second), &heraldpb.InitProducerRequest{})
	if err != nil {
		t.Fatal(err)
	}
	id, epoch := init.GetProducerId(), init.GetProducerEpoch()
	if len(id) < 32 || id == "p1" {
		t.Fatalf("producer id %q is guessable", id)
	}
	produceRetry(t, hc, "orders", idempotentEvents("acme", id, epoch, 1, 3)...)

	// A hijacker guessing ids: a sequence from a producer the partition
	// does not know is refused, not taken as a start.
	for _, guess := range []string{"p1", "p2", id + "x"} {
		err := produceRefused(t, hc, "orders", idempotentEvents("acme", guess, epoch, 4, 2)...)
		if !errors.Is(err, client.ErrUnknownProducer) {
			t.Fatalf("guessed id %q: got %v, want UNKNOWN_PRODUCER", guess, err)
		}
	}
	// A hijacker forging the victim's id without its epoch, with the
	// victim's next (colliding) or a later sequence, or a resend: fenced.
	for _, forged := range [][]*heraldpb.Event{
		idempotentEvents("acme", id, 0, 4, 1),
		idempotentEvents("acme", id, epoch-1, 4, 1),
		idempotentEvents("acme", id, 0, 9, 1),
		idempotentEvents("acme", id, 0, 1, 3),
	} {
		if err := produceRefused(t, hc, "orders", forged...); !errors.Is(err, client.ErrProducerFenced) {
			t.Fatalf("forged epoch %d sequence %d: got %v, want PRODUCER_FENCED", forged[0].ProducerEpoch, forged[0].ProducerSeq, err)
		}
	}
	// A gap under the right epoch is out of order, and nothing of a
	// refused request is appended.
	if err := produceRefused(t, hc, "orders", idempotentEvents("acme", id, epoch, 5, 2)...); !errors.Is(err, client.ErrOutOfOrderSequence) {
		t.Fatalf("gap: got %v, want OUT_OF_ORDER_SEQUENCE", err)
	}
	victim := produceRetry(t, hc, "orders", idempotentEvents("acme", id, epoch, 4, 2)...)
	for i, r := range victim {
		if r.GetDuplicate() || r.GetOffset() != uint64(3+i) {
			t.Fatalf("victim's event %d: duplicate=%v offset %d, want stored at offset %d", 4+i, r.GetDuplicate(), r.GetOffset(), 3+i)
		}
	}

	// A new InitProducer for the id fences the old holder (the zombie).
	again, err := hc.InitProducer(ctxTimeout(t, 10*time.Second), &heraldpb.InitProducerRequest{ProducerId: id})
	if err != nil {
		t.Fatal(err)
	}
	if again.GetProducerId() != id || again.GetProducerEpoch() <= epoch {
		t.Fatalf("re-init: id %q epoch %d, want %q with an epoch above %d", again.GetProducerId(), again.GetProducerEpoch(), id, epoch)
	}
	fresh := produceRetry(t, hc, "orders", idempotentEvents("acme", id, again.GetProducerEpoch(), 1, 1)...)
	if fresh[0].GetDuplicate() || fresh[0].GetOffset() != 5 {
		t.Fatalf("new epoch's first event: duplicate=%v offset %d, want stored at 5", fresh[0].GetDuplicate(), fresh[0].GetOffset())
	}
	if err := produceRefused(t, hc, "orders", idempotentEvents("acme", id, epoch, 6, 1)...); !errors.Is(err, client.ErrProducerFenced) {
		t.Fatalf("zombie: got %v, want PRODUCER_FENCED", err)
	}
}
