package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/client"
)

// metricsText is one node's /metrics with two tenants' admission series
// (labels in either order, an escaped label value) among other series.
const metricsText = `# HELP herald_admission_admitted_events_total Events admitted.
# TYPE herald_admission_admitted_events_total counter
herald_admission_admitted_events_total{tenant="acme"} 1000
herald_admission_admitted_events_total{tenant="globex"} 7
herald_admission_admitted_bytes_total{tenant="acme"} 64000
herald_admission_throttled_total{limit="tenant_quota",tenant="acme"} 12
herald_admission_refused_total{tenant="acme",limit="tenant_quota"} 30
herald_admission_refused_total{tenant="acme",limit="partition_queue"} 2
herald_admission_refused_total{tenant="glo\"bex",limit="tenant_quota"} 99
herald_admission_tokens{tenant="acme",kind="events"} 5.5
herald_admission_tokens{kind="bytes",tenant="acme"} 100
herald_admission_queue_bytes{partition="7"} 512
herald_produce_requests_total{tenant="acme"} 1 1700000000000
`

func TestParseTenantSample(t *testing.T) {
	s, err := parseTenantSample(strings.NewReader(metricsText), "acme")
	require.NoError(t, err)
	assert.True(t, s.seen)
	assert.Equal(t, 1000.0, s.admittedEvents)
	assert.Equal(t, 64000.0, s.admittedBytes)
	assert.Equal(t, map[string]float64{"tenant_quota": 12}, s.throttled)
	assert.Equal(t, map[string]float64{"tenant_quota": 30, "partition_queue": 2}, s.refused)
	assert.Equal(t, map[string]float64{"events": 5.5, "bytes": 100}, s.tokens)

	s, err = parseTenantSample(strings.NewReader(metricsText), `glo"bex`)
	require.NoError(t, err)
	assert.Equal(t, map[string]float64{"tenant_quota": 99}, s.refused)

	s, err = parseTenantSample(strings.NewReader(metricsText), "initech")
	require.NoError(t, err)
	assert.False(t, s.seen)

	_, err = parseTenantSample(strings.NewReader(`herald_admission_tokens{tenant="acme" 1`+"\n"), "acme")
	assert.Error(t, err)
}

// TestUsageSumsNodes: rates are the counters' growth over the window,
// summed over the nodes; a node whose counters went down (it restarted
// between the two reads) counts from zero.
func TestUsageSumsNodes(t *testing.T) {
	sample := func(events, bytes, throttled, refused float64) tenantSample {
		return tenantSample{admittedEvents: events, admittedBytes: bytes, seen: true,
			throttled: map[string]float64{"tenant_quota": throttled}, refused: map[string]float64{"tenant_quota": refused}, tokens: map[string]float64{}}
	}
	before := []tenantSample{sample(100, 1000, 1, 10), sample(500, 5000, 0, 0)}
	after := []tenantSample{sample(300, 3000, 4, 25), sample(50, 500, 0, 2)} // the second node restarted
	u := usageOf(before, after, 2*time.Second, []string{"n3"})
	assert.True(t, u.Recorded)
	assert.Equal(t, 2, u.Nodes)
	assert.Equal(t, []string{"n3"}, u.NodesFailed)
	assert.InDelta(t, (200+50)/2.0, u.AdmittedEventsPerSec, 1e-9)
	assert.InDelta(t, (2000+500)/2.0, u.AdmittedBytesPerSec, 1e-9)
	assert.Equal(t, uint64(350), u.AdmittedEventsTotal)
	assert.Equal(t, limitCount{Total: 4, InWindow: 3}, u.Throttled["tenant_quota"])
	assert.Equal(t, limitCount{Total: 27, InWindow: 17}, u.Refused["tenant_quota"])

	var out bytes.Buffer
	require.NoError(t, printUsage(&out, u, quotaView{EventsPerSec: 100}))
	assert.Equal(t, "usage over 2s (2 node(s); not read: n3): admitted 125.0 events/s of 100 (125%), 1250.0 bytes/s (unlimited); since the nodes started 350 events, 3500 bytes\n"+
		"throttled: tenant_quota 4 (+3 in the window)\n"+
		"refused: tenant_quota 27 (+17 in the window)\n", out.String())

	out.Reset()
	require.NoError(t, printUsage(&out, usageOf(nil, nil, time.Second, nil), quotaView{}))
	assert.Equal(t, "usage over 1s (0 node(s)): no usage recorded\n", out.String())
}

// TestTenantDescribeUsage runs `tenant describe` against three real nodes:
// it reads every node's /metrics through the HTTP addresses of the cluster
// status and sums the tenant's admission series: the events admitted, and
// a request refused for the tenant's quota. A tenant that produced nothing
// has no usage recorded.
func TestTenantDescribeUsage(t *testing.T) {
	_, addrs := startFollowCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := client.New(ctx, client.Config{Servers: addrs})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.CreateTenant(ctx, &client.Tenant{Id: "acme", Quota: &client.TenantQuota{EventsPerSec: 5, Burst: 5}})
	require.NoError(t, err)
	_, err = c.CreateTenant(ctx, &client.Tenant{Id: "globex"})
	require.NoError(t, err)
	_, err = c.CreateTopic(ctx, &client.TopicConfig{Name: "orders", Partitions: 1, ReplicationFactor: 3})
	require.NoError(t, err)
	const produced = 4
	for i := range produced {
		_, err := c.Produce(ctx, "orders", &client.Event{TenantId: "acme", Payload: fmt.Appendf(nil, "e%d", i)})
		require.NoError(t, err)
	}
	// 50 events at once are far over a burst of 5: refused whole (a
	// fail-fast client returns the refusal rather than resend it once the
	// bucket is full again).
	ff, err := client.New(ctx, client.Config{Servers: addrs, Backpressure: client.BackpressureFailFast})
	require.NoError(t, err)
	defer ff.Close()
	big := make([]*client.Event, 50)
	for i := range big {
		big[i] = &client.Event{TenantId: "acme", Payload: []byte("x")}
	}
	_, err = ff.Produce(ctx, "orders", big...)
	require.ErrorIs(t, err, client.ErrThrottled)
	env := map[string]string{serverEnv: strings.Join(addrs, ",")}

	res := runCLI(t, "", env, "tenant", "describe", "acme", "--usage-window", "200ms", "--json")
	require.Equal(t, exitOK, res.code, res.stderr)
	var v describeView
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &v))
	require.NotNil(t, v.Usage, res.stdout)
	assert.Equal(t, quotaView{EventsPerSec: 5, Burst: 5}, v.Quota)
	assert.Equal(t, 3, v.Usage.Nodes, res.stdout)
	assert.Empty(t, v.Usage.NodesFailed)
	assert.GreaterOrEqual(t, v.Usage.WindowMs, int64(200))
	assert.True(t, v.Usage.Recorded, res.stdout)
	assert.Equal(t, uint64(produced), v.Usage.AdmittedEventsTotal, res.stdout)
	assert.Equal(t, limitCount{Total: 1}, v.Usage.Refused["tenant_quota"], res.stdout)

	res = runCLI(t, "", env, "tenant", "describe", "acme", "--usage-window", "100ms")
	require.Equal(t, exitOK, res.code, res.stderr)
	t.Logf("%s", res.stdout)
	assert.Contains(t, res.stdout, "quota: events/s 5, bytes/s unlimited, burst 5, max inflight bytes unlimited\nusage over ")
	assert.Contains(t, res.stdout, fmt.Sprintf("(3 node(s)): admitted 0.0 events/s of 5 (0%%), 0.0 bytes/s (unlimited); since the nodes started %d events", produced))
	assert.Contains(t, res.stdout, "\nrefused: tenant_quota 1 (+0 in the window)\n")

	res = runCLI(t, "", env, "tenant", "describe", "globex", "--usage-window", "100ms")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Contains(t, res.stdout, "(3 node(s)): no usage recorded\n")

	res = runCLI(t, "", env, "tenant", "describe", "acme", "--usage-window", "0")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.NotContains(t, res.stdout, "usage")
	res = runCLI(t, "", env, "tenant", "describe", "acme", "--usage-window", "2m")
	assert.Equal(t, exitUsage, res.code)
	assert.Contains(t, res.stderr, "--usage-window 2m0s: want 0 (no usage) to 1m0s")
}
