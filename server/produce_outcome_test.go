package server

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// A request whose parts on two partitions end differently (one committed,
// one refused by the state machine) is never reported as a refusal: its
// outcome is UNKNOWN_OUTCOME, naming what committed. Before, the call
// returned the refused part's error (a clean refusal to any client) while
// the other part's event was stored.
func TestProduceSpanningPartitionsNeverHidesAWrite(t *testing.T) {
	c := startCluster(t, 3)
	hc := c.rawClient(0)
	createTopic(t, hc, "split", 2, 3)
	// Two tenants on different partitions.
	var tenants [2]string
	for k := 0; tenants[0] == "" || tenants[1] == ""; k++ {
		name := fmt.Sprintf("tenant-%d", k)
		if p := wire.PartitionForTenant(name, 2); tenants[p] == "" {
			tenants[p] = name
		}
	}
	createTenant(t, hc, tenants[0])
	createTenant(t, hc, tenants[1])
	init, err := hc.InitProducer(ctxTimeout(t, 10*time.Second), &heraldpb.InitProducerRequest{})
	if err != nil {
		t.Fatal(err)
	}
	id, epoch := init.GetProducerId(), init.GetProducerEpoch()
	// Partition 0: a valid first event of the producer. Partition 1: the
	// producer's first event there claims sequence 5 (UNKNOWN_PRODUCER).
	_, err = hc.Produce(ctxTimeout(t, 10*time.Second), &heraldpb.ProduceRequest{Topic: "split", Events: []*heraldpb.Event{
		{TenantId: tenants[0], ProducerId: id, ProducerEpoch: epoch, ProducerSeq: 1, EventId: "committed", Payload: []byte("a")},
		{TenantId: tenants[1], ProducerId: id, ProducerEpoch: epoch, ProducerSeq: 5, EventId: "refused", Payload: []byte("b")},
	}})
	// The partition-0 part committed (read once this replica has applied it).
	eventually(t, 10*time.Second, func() error {
		resp, ferr := fetchAll(t, hc, "split", 0)
		if ferr != nil {
			return ferr
		}
		if len(resp.Events) != 1 || resp.Events[0].EventId != "committed" {
			return fmt.Errorf("partition 0 holds %d events (produce: %v)", len(resp.Events), err)
		}
		return nil
	})
	if err == nil {
		t.Fatal("a request with a refused part succeeded")
	}
	if !errors.Is(wire.FromStatus(err), wire.ErrUnknownOutcome) {
		t.Fatalf("a request with a committed part was reported as %v (a refusal); want UNKNOWN_OUTCOME", err)
	}
}

// A request with more events than produceEventsMax is refused before
// anything is proposed: its response would not fit a client's default
// receive limit (the call committed 100,000 events and then failed to
// deliver its answer, which the client read as a refusal).
func TestProduceRefusesRequestsWhoseResponseCannotFit(t *testing.T) {
	c := startCluster(t, 3)
	hc := c.rawClient(0)
	createTopic(t, hc, "big", 1, 3)
	createTenant(t, hc, "acme")
	events := make([]*heraldpb.Event, produceEventsMax+1)
	for i := range events {
		events[i] = &heraldpb.Event{TenantId: "acme", Payload: []byte("x")}
	}
	_, err := hc.Produce(ctxTimeout(t, 20*time.Second), &heraldpb.ProduceRequest{Topic: "big", Events: events})
	if !errors.Is(wire.FromStatus(err), wire.ErrInvalidArgument) {
		t.Fatalf("a request of %d events: %v; want INVALID_ARGUMENT", len(events), err)
	}
	resp, err := fetchAll(t, hc, "big", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Events) != 0 {
		t.Fatalf("a refused request wrote %d events", len(resp.Events))
	}
}
