package server

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// After `topic alter` is acknowledged, produce through any node applies
// the new contract, never the old one (issue 17): an event the new
// contract allows is accepted and an event only the old one allowed is
// refused, with nothing of it written, through every node at once (the
// stale event first: a node that has not applied the alter yet takes it
// as valid and its partition's fence refuses it). Each
// round alters the allowed schema version through one node and produces
// through all three right after the acknowledgement, while the followers'
// registries may still trail the controller leader's.
func TestProduceAfterAlterAppliesTheNewContract(t *testing.T) {
	c := startCluster(t, 3)
	clients := []heraldpb.HeraldClient{c.rawClient(0), c.rawClient(1), c.rawClient(2)}
	createTopicConfig(t, clients[0], &heraldpb.TopicConfig{Name: "contract", Partitions: 3, ReplicationFactor: 3,
		Schema: "order", SchemaVersions: []uint32{1}, AutoTenants: true})
	for j := range clients { // every partition has a leader before the rounds
		produceRetry(t, clients[j], "contract", &heraldpb.Event{TenantId: fmt.Sprintf("t%d", j), Schema: "order", SchemaVersion: 1, Payload: []byte("warm")})
	}
	const rounds = 15
	for r := range rounds {
		v := uint32(r + 2)
		_, err := clients[r%3].AlterTopic(ctxTimeout(t, 20*time.Second), &heraldpb.AlterTopicRequest{
			Config: &heraldpb.TopicConfig{Name: "contract", SchemaVersions: []uint32{v}}, Fields: []string{"schema_versions"}})
		if err != nil {
			t.Fatalf("round %d: alter through node %d: %v", r, r%3, err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 2*len(clients)*3)
		for j, hc := range clients {
			for k := range 3 { // tenants over the partitions
				wg.Add(1)
				go func() {
					defer wg.Done()
					tenant := fmt.Sprintf("t%d", 3*j+k)
					_, err := produceAnswered(t, hc, &heraldpb.ProduceRequest{Topic: "contract", Events: []*heraldpb.Event{
						{TenantId: tenant, Schema: "order", SchemaVersion: v - 1, Payload: []byte(fmt.Sprintf("stale-%d-%d-%d", r, j, k))}}})
					// An unknown outcome is no answer; the scan at the end
					// checks that nothing stale was written.
					if !errors.Is(err, wire.ErrSchemaVersionNotAllowed) && !errors.Is(err, wire.ErrUnknownOutcome) {
						errs <- fmt.Errorf("round %d: node %d answered %v to version %d, which the acknowledged alter removed", r, j, err, v-1)
					}
					_, err = produceAnswered(t, hc, &heraldpb.ProduceRequest{Topic: "contract", Events: []*heraldpb.Event{
						{TenantId: tenant, Schema: "order", SchemaVersion: v, Payload: []byte(fmt.Sprintf("new-%d-%d-%d", r, j, k))}}})
					if err != nil && !errors.Is(err, wire.ErrUnknownOutcome) {
						errs <- fmt.Errorf("round %d: node %d refused version %d, which the acknowledged alter allows: %v", r, j, v, err)
					}
				}()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if t.Failed() {
			return
		}
	}
	rechecks := 0.0
	for _, n := range c.nodes {
		var m dto.Metric
		if err := n.metrics.contractRechecks.Write(&m); err != nil {
			t.Fatal(err)
		}
		rechecks += m.GetCounter().GetValue()
	}
	t.Logf("%d calls refused by a partition's contract fence, checked again and resent or refused", int(rechecks))
	// Nothing refused was written: no "stale-" payload on any replica.
	for j, hc := range clients {
		for p := uint32(0); p < 3; p++ {
			resp, err := hc.Fetch(forwardContext(ctxTimeout(t, 10*time.Second)), &heraldpb.FetchRequest{Topic: "contract", Partition: p,
				Start: &heraldpb.FetchRequest_Offset{Offset: 0}, MaxEvents: 10_000})
			if err != nil {
				t.Fatalf("fetch partition %d from node %d: %v", p, j, err)
			}
			for _, ev := range resp.GetEvents() {
				if strings.HasPrefix(string(ev.GetPayload()), "stale-") {
					t.Errorf("node %d partition %d offset %d holds a refused event %q", j, p, ev.GetOffset(), ev.GetPayload())
				}
			}
		}
	}
}
