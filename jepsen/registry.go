package jepsen

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldlog/herald/client"
)

// DefaultRegistryTenants is the --registry-tenants default: enough
// tenants that the registry takes a while to replay after a restart of
// the whole cluster (a long registry once made a clean restart delete
// live partitions).
const DefaultRegistryTenants = 1500

// registryWorkers is how many tenants setupRegistry creates at once.
const registryWorkers = 16

// setupRegistry creates n tenants ("reg-<k>") through the cluster, in
// parallel, retrying retryable errors; an existing tenant counts as
// created.
func setupRegistry(ctx context.Context, c *Cluster, n int) error {
	if n <= 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, registryWorkers)
	for w := range registryWorkers {
		wg.Add(1)
		go func() { // owned by setupRegistry
			defer wg.Done()
			cl, err := c.newClient(ctx)
			for err != nil { // the cluster is still starting
				if !sleepCtx(ctx, 250*time.Millisecond) {
					errs[w] = err
					return
				}
				cl, err = c.newClient(ctx)
			}
			defer cl.Close()
			for {
				k := int(next.Add(1)) - 1
				if k >= n {
					return
				}
				id := fmt.Sprintf("reg-%d", k)
				for {
					_, err := cl.CreateTenant(ctx, &client.Tenant{Id: id})
					if err == nil || errors.Is(err, client.ErrTenantExists) {
						break
					}
					if ctx.Err() != nil {
						errs[w] = fmt.Errorf("jepsen: creating tenant %s: %w", id, err)
						return
					}
					time.Sleep(100 * time.Millisecond) // unknown outcome, unavailable ...: retry
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// churnTopics creates and deletes short-lived single-partition topics
// ("churn-<k>") beside the live topic until ctx ends, so the registry
// changes while the faults run. It returns how many topics it created and
// deleted.
func churnTopics(ctx context.Context, c *Cluster, replicas int) (created, deleted int) {
	cl, err := c.newClient(ctx)
	if err != nil {
		return 0, 0
	}
	defer cl.Close()
	for k := 0; ctx.Err() == nil; k++ {
		name := fmt.Sprintf("churn-%d", k)
		octx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := cl.CreateTopic(octx, &client.TopicConfig{Name: name, Partitions: 1, ReplicationFactor: uint32(replicas), AutoTenants: true})
		cancel()
		if err == nil {
			created++
		}
		if !sleepCtx(ctx, 300*time.Millisecond) {
			break
		}
		for try := 0; try < 5 && ctx.Err() == nil; try++ {
			dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = cl.DeleteTopic(dctx, name, true)
			cancel()
			if err == nil || errors.Is(err, client.ErrTopicNotFound) {
				deleted++
				break
			}
			sleepCtx(ctx, 200*time.Millisecond)
		}
		sleepCtx(ctx, 200*time.Millisecond)
	}
	return created, deleted
}

// sleepCtx sleeps d or until ctx ends; false when ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	return sleepUntil(ctx, time.Now().Add(d))
}
