package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/server"
	"github.com/heraldlog/herald/server/certs"
)

func TestParseAdminAddrs(t *testing.T) {
	got, err := parseAdminAddrs(" 127.0.0.1:9201, ,127.0.0.1:9202,127.0.0.1:9201")
	require.NoError(t, err)
	assert.Equal(t, []string{"127.0.0.1:9201", "127.0.0.1:9202"}, got)
	got, err = parseAdminAddrs("")
	require.NoError(t, err)
	assert.Empty(t, got)
	_, err = parseAdminAddrs("127.0.0.1:1,nohost")
	assert.Equal(t, exitUsage, exitCode(err))
	assert.ErrorContains(t, err, `--admin "nohost"`)
}

// hiddenExposition is a public /metrics of a cluster that requires
// credentials: node-wide series and the marker, no tenant series.
const hiddenExposition = `# TYPE herald_admission_partition_admitted_events_total counter
herald_admission_partition_admitted_events_total{partition="7"} 12
# TYPE herald_metrics_tenant_series_hidden gauge
herald_metrics_tenant_series_hidden 1
`

// The marker of a public /metrics that hides tenant series is read by both
// parsers and turned into the hint to use --admin.
func TestTenantSeriesHiddenHint(t *testing.T) {
	s := mustSample(t, hiddenExposition)
	assert.True(t, s.tenantsHidden)
	assert.False(t, mustSample(t, exposition(map[string]float64{"acme": 1}, nil, nil, nil, nil)).tenantsHidden)
	var out bytes.Buffer
	renderTop(&out, computeFrame(map[string]topSample{"n1": s}, map[string]topSample{"n1": s}, 1), topNodes{samples: map[string]topSample{"n1": s}, total: 1}, 10)
	assert.Contains(t, out.String(), "\n  "+tenantSeriesHiddenHint+"\n")

	ts, err := parseTenantSample(strings.NewReader(hiddenExposition), "acme")
	require.NoError(t, err)
	assert.True(t, ts.hidden)
	assert.False(t, ts.seen)
	u := usageOf([]tenantSample{ts}, []tenantSample{ts}, time.Second, nil)
	assert.True(t, u.TenantSeriesHidden)
	out.Reset()
	require.NoError(t, printUsage(&out, u, quotaView{}))
	assert.Equal(t, "usage over 1s (1 node(s)): "+tenantSeriesHiddenHint+"\n", out.String())
}

// testCredentials makes a signing key's public keys file, a cluster
// secret file and an admin token of the key, for nodes that require
// credentials.
func testCredentials(t *testing.T) (keysFile, secretFile, adminToken string) {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, certs.EnsureSecret(filepath.Join(dir, "cluster.secret")))
	pubFile, token, err := ensureDevAuth(filepath.Join(dir, "auth"))
	require.NoError(t, err)
	return pubFile, filepath.Join(dir, "cluster.secret"), token
}

// TestUsageAndTopThroughTheAdminListeners: against real nodes that require
// credentials (a key, the cluster secret, an admin token),
// `tenant describe` and `top` read from the nodes' HTTP addresses find no
// tenant series and say to use --admin; with --admin naming the admin
// listeners they read the tenant's usage.
func TestUsageAndTopThroughTheAdminListeners(t *testing.T) {
	keys, secret, token := testCredentials(t)
	var admin []string
	nodes, addrs := startFollowClusterConfig(t, 3, func(cfg *server.Config) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		cfg.AdminListener, cfg.AdminAddr = l, l.Addr().String()
		cfg.Auth.KeysFile, cfg.ClusterSecretFile = keys, secret
		admin = append(admin, l.Addr().String())
	})
	for i, n := range nodes {
		require.Equal(t, admin[i], n.AdminAddr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := client.New(ctx, client.Config{Servers: addrs, Token: token})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.CreateTenant(ctx, &client.Tenant{Id: "acme"})
	require.NoError(t, err)
	_, err = c.CreateTopic(ctx, &client.TopicConfig{Name: "orders", Partitions: 1, ReplicationFactor: 3})
	require.NoError(t, err)
	const produced = 3
	for range produced {
		_, err := c.Produce(ctx, "orders", &client.Event{TenantId: "acme", Payload: []byte("x")})
		require.NoError(t, err)
	}
	env := map[string]string{serverEnv: strings.Join(addrs, ","), tokenEnv: token}
	adminFlag := strings.Join(admin, ",")

	res := runCLI(t, "", env, "tenant", "describe", "acme", "--usage-window", "100ms")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Contains(t, res.stdout, tenantSeriesHiddenHint, res.stdout)

	res = runCLI(t, "", env, "tenant", "describe", "acme", "--usage-window", "100ms", "--json", "--admin", adminFlag)
	require.Equal(t, exitOK, res.code, res.stderr)
	var v describeView
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &v))
	require.NotNil(t, v.Usage, res.stdout)
	assert.Equal(t, 3, v.Usage.Nodes, res.stdout)
	assert.Empty(t, v.Usage.NodesFailed)
	assert.True(t, v.Usage.Recorded, res.stdout)
	assert.False(t, v.Usage.TenantSeriesHidden)
	assert.Equal(t, uint64(produced), v.Usage.AdmittedEventsTotal, res.stdout)

	res = runCLI(t, "", env, "top", "--once", "--interval", "200ms")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Contains(t, res.stdout, tenantSeriesHiddenHint, res.stdout)
	assert.NotRegexp(t, `(?m)^acme\s`, res.stdout)

	res = runCLI(t, "", env, "top", "--once", "--interval", "200ms", "--admin", adminFlag)
	require.Equal(t, exitOK, res.code, res.stderr)
	t.Logf("herald top --once --admin:\n%s", res.stdout)
	assert.NotContains(t, res.stdout, tenantSeriesHiddenHint)
	assert.Regexp(t, `(?m)^herald top  \d\d:\d\d:\d\d UTC  3 of 3 nodes read,`, res.stdout)
	assert.Regexp(t, `(?m)^acme\s`, res.stdout, "the tenant's row, from the admin listeners")

	res = runCLI(t, "", env, "top", "--once", "--admin", "nohost")
	assert.Equal(t, exitUsage, res.code, res.stdout)
}
