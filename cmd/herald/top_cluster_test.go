package main

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/client"
)

// TestTopOnceAgainstACluster runs `herald top --once` against three real
// in-process nodes while three tenants produce: one frame, every node
// read, the busier tenant first with a positive admitted rate, the tenant
// over its quota shown with its refusals by limit, and the topic's
// partitions named.
func TestTopOnceAgainstACluster(t *testing.T) {
	_, addrs := startFollowCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := client.New(ctx, client.Config{Servers: addrs})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.CreateTopic(ctx, &client.TopicConfig{Name: "feed", Partitions: 2, ReplicationFactor: 3, AutoTenants: true})
	require.NoError(t, err)
	// The capped tenant ignores the cluster's hints (its own client): an
	// SDK in the default mode would wait out the long pause its quota asks
	// for.
	flooder, err := client.New(ctx, client.Config{Servers: addrs, Backpressure: client.BackpressureIgnore})
	require.NoError(t, err)
	defer flooder.Close()
	produceWith := func(c *client.Client, tenant string, n int) error {
		evs := make([]*client.Event, n)
		for i := range evs {
			evs[i] = &client.Event{TenantId: tenant, Payload: []byte("x")}
		}
		_, err := c.Produce(ctx, "feed", evs...)
		return err
	}
	produce := func(tenant string, n int) error { return produceWith(c, tenant, n) }
	require.NoError(t, produce("busy", 1))
	require.NoError(t, produce("quiet", 1))
	_, err = c.CreateTenant(ctx, &client.Tenant{Id: "capped", Quota: &client.TenantQuota{EventsPerSec: 1}})
	require.NoError(t, err)

	// The producers are owned by the test and end before it returns.
	stop := make(chan struct{})
	var producer sync.WaitGroup
	var produceErr, floodErr error
	var floodMu sync.Mutex
	for range 4 { // a few senders: a refusal at the door takes up to a second
		producer.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				// Far over its quota: refused (nothing written) most times;
				// a refusal at the node's door is answered when its block
				// ends, up to a second.
				if err := produceWith(flooder, "capped", 50); err != nil && !errors.Is(err, client.ErrThrottled) {
					floodMu.Lock()
					floodErr = err
					floodMu.Unlock()
					return
				}
			}
		})
	}
	producer.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if err := produce("busy", 20); err != nil {
				produceErr = err
				return
			}
			if err := produce("quiet", 1); err != nil {
				produceErr = err
				return
			}
		}
	})
	res := runCLI(t, "", map[string]string{serverEnv: addrs[0]}, "top", "--once", "--interval", "1s")
	close(stop)
	producer.Wait()
	require.NoError(t, produceErr)
	require.NoError(t, floodErr)
	require.Equal(t, exitOK, res.code, res.stderr)

	t.Logf("herald top --once:\n%s", res.stdout)
	assert.NotContains(t, res.stdout, clearScreen, "--once does not clear the screen")
	assert.Regexp(t, `(?m)^herald top  \d\d:\d\d:\d\d UTC  3 of 3 nodes read, rates over \d+\.\ds$`, res.stdout)
	assert.Regexp(t, `(?m)^TENANT\s+EVENTS/S\s+BYTES/S\s+THROTTLED CALLS/S\s+REFUSED CALLS/S\s+BY LIMIT$`, res.stdout)
	assert.Regexp(t, `(?m)^busy\s+[1-9][\d,.]*\s+[\d.]+ (B|KiB)/s\s+0\.0\s+0\.0\s+-$`, res.stdout)
	busy, quiet := strings.Index(res.stdout, "\nbusy "), strings.Index(res.stdout, "\nquiet ")
	require.Positive(t, quiet, res.stdout)
	assert.Less(t, busy, quiet, "the busier tenant first")
	assert.Regexp(t, `(?m)^capped\s+[\d,.]+\s+[\d.]+ (B|KiB)/s\s+[\d,.]+\s+[1-9][\d,.]*\s+refused: tenant_quota [1-9][\d,.]*/s`, res.stdout)
	assert.Regexp(t, `(?m)^feed/[01]\s+\d+\s+n[123]\s+[1-9][\d,.]*\s+`, res.stdout)
}
