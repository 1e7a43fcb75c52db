package server

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// Registry writes acknowledged through any node are seen by a registry
// read through every node that begins after them: created tenants and
// topics are all listed, and a deleted topic is not found, every time.
// Before reads caught up with the controller leader (a read index), each
// node answered from its own replica, which trails the leader: a list
// right after 1,500 creates missed the last one, and a describe right after
// a delete still showed the topic.
func TestRegistryReadsSeeAcknowledgedWrites(t *testing.T) {
	c := startCluster(t, 3)
	clients := make([]heraldpb.HeraldClient, len(c.nodes))
	for i := range c.nodes {
		clients[i] = c.rawClient(i)
	}
	const rounds, tenantsPerRound = 5, 30
	for r := range rounds {
		// Creates through every node at once.
		var wg sync.WaitGroup
		errs := make(chan error, len(clients)*tenantsPerRound+len(clients))
		for i, hc := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := i; k < tenantsPerRound; k += len(clients) {
					id := fmt.Sprintf("r%d-t%02d", r, k)
					if _, err := hc.CreateTenant(ctxTimeout(t, 10*time.Second), &heraldpb.CreateTenantRequest{Tenant: &heraldpb.Tenant{Id: id}}); err != nil {
						errs <- fmt.Errorf("create tenant %s via node %d: %w", id, i, err)
					}
				}
				name := fmt.Sprintf("r%d-topic%d", r, i)
				if _, err := hc.CreateTopic(ctxTimeout(t, 20*time.Second), &heraldpb.CreateTopicRequest{Config: &heraldpb.TopicConfig{
					Name: name, Partitions: 1, ReplicationFactor: 1}}); err != nil {
					errs <- fmt.Errorf("create topic %s via node %d: %w", name, i, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		// Then lists through every node at once.
		errs = make(chan error, 2*len(clients))
		for i, hc := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tenants, err := hc.ListTenants(ctxTimeout(t, 10*time.Second), &heraldpb.ListTenantsRequest{})
				if err != nil {
					errs <- err
					return
				}
				have := map[string]bool{}
				for _, tn := range tenants.GetTenants() {
					have[tn.GetId()] = true
				}
				for k := range tenantsPerRound {
					if id := fmt.Sprintf("r%d-t%02d", r, k); !have[id] {
						errs <- fmt.Errorf("round %d: node %d lists %d tenants, missing acknowledged %s", r, i, len(have), id)
						return
					}
				}
				topics, err := hc.ListTopics(ctxTimeout(t, 10*time.Second), &heraldpb.ListTopicsRequest{})
				if err != nil {
					errs <- err
					return
				}
				names := map[string]bool{}
				for _, tp := range topics.GetTopics() {
					names[tp.GetConfig().GetName()] = true
				}
				for k := range clients {
					if name := fmt.Sprintf("r%d-topic%d", r, k); !names[name] {
						errs <- fmt.Errorf("round %d: node %d does not list acknowledged topic %s", r, i, name)
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		// Delete one topic through one node, then describe it through every
		// node at once: not found everywhere.
		victim := fmt.Sprintf("r%d-topic%d", r, r%len(clients))
		if _, err := clients[(r+1)%len(clients)].DeleteTopic(ctxTimeout(t, 10*time.Second), &heraldpb.DeleteTopicRequest{Name: victim, Force: true}); err != nil {
			t.Fatal(err)
		}
		errs = make(chan error, len(clients))
		for i, hc := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := hc.DescribeTopic(ctxTimeout(t, 10*time.Second), &heraldpb.DescribeTopicRequest{Name: victim})
				if !errors.Is(wire.FromStatus(err), wire.ErrTopicNotFound) {
					errs <- fmt.Errorf("round %d: describe %s through node %d after its delete was acknowledged: %v", r, victim, i, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
	// A stale read is served from the node's own copy, without the round
	// trip; it still answers.
	for i, hc := range clients {
		if _, err := hc.ListTopics(ctxTimeout(t, 10*time.Second), &heraldpb.ListTopicsRequest{Stale: true}); err != nil {
			t.Errorf("stale list through node %d: %v", i, err)
		}
	}
}
