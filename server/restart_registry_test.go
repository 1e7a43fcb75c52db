package server

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
)

// createTenantsParallel registers count tenants through hc, several calls
// at a time, to give the controller a long log.
func createTenantsParallel(t *testing.T, hc heraldpb.HeraldClient, prefix string, count int) {
	t.Helper()
	const workers = 8
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < count; i += workers {
				id := fmt.Sprintf("%s-%05d", prefix, i)
				if _, err := hc.CreateTenant(ctxTimeout(t, 20*time.Second), &heraldpb.CreateTenantRequest{Tenant: &heraldpb.Tenant{Id: id}}); err != nil {
					errs <- fmt.Errorf("create tenant %s: %w", id, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// A clean restart of every node of a cluster whose registry is long must
// keep every partition and every acknowledged event. Before deletion became
// tombstone-only, each node's reconciler saw a half-replayed registry as
// authoritative (hashicorp/raft's AppliedIndex counts entries queued to the
// FSM), deleted the topic's replica as "deleted", bootstrapped it empty and
// served 0 of the 10 events.
func TestCleanRestartWithLongRegistryKeepsPartitions(t *testing.T) {
	if testing.Short() {
		t.Skip("long registry")
	}
	c := startCluster(t, 3)
	hc := c.rawClient(0)
	createTenantsParallel(t, hc, "bulk", 1200)
	createTopic(t, hc, "live", 1, 3)
	createTenant(t, hc, "acme")
	for i := range 5 {
		produceRetry(t, hc, "live", &heraldpb.Event{TenantId: "acme", Payload: []byte(fmt.Sprint(i))})
	}
	c.stop(2)
	for i := 5; i < 10; i++ {
		produceRetry(t, hc, "live", &heraldpb.Event{TenantId: "acme", Payload: []byte(fmt.Sprint(i))})
	}
	c.stop(0)
	c.stop(1)
	for i := range 3 {
		c.restart(i)
	}
	c.waitControllerLeader()
	for i := range 3 {
		rc := c.rawClient(i)
		eventually(t, 30*time.Second, func() error {
			resp, err := fetchAll(t, rc, "live", 0)
			if err != nil {
				return err
			}
			if len(resp.Events) != 10 {
				return fmt.Errorf("node %d serves %d of 10 acknowledged events", i, len(resp.Events))
			}
			for k, ev := range resp.Events {
				if ev.Offset != uint64(k) || string(ev.Payload) != fmt.Sprint(k) {
					return fmt.Errorf("node %d event %d: offset %d payload %q", i, k, ev.Offset, ev.Payload)
				}
			}
			return nil
		})
	}
}
