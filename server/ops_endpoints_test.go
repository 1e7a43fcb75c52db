package server

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/server/auth"
)

// withAdmin gives each node an admin listener on a free loopback port.
func withAdmin(t *testing.T) func(*Config) {
	return func(cfg *Config) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		cfg.AdminAddr, cfg.AdminListener = l.Addr().String(), l
	}
}

// withAuth turns client credentials on (a real key, and the cluster
// secret auth needs) and returns an admin token of that key.
func withAuth(t *testing.T) (func(*Config), string) {
	keys := newAuthTestKeys(t)
	return keys.configure, keys.token("*", []string{auth.ActionAdmin})
}

// httpGetStatus GETs http://addr+path and returns the status and body.
func httpGetStatus(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxTimeout(t, 10*time.Second), http.MethodGet, "http://"+addr+path, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// produceAsTenant creates a one-partition topic and produces events of
// tenant, so that the admission controller has series labelled with it.
func produceAsTenant(t *testing.T, addrs []string, token, topic, tenant string) {
	t.Helper()
	ctx := ctxTimeout(t, 30*time.Second)
	c, err := client.New(ctx, client.Config{Servers: addrs, Token: token})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.CreateTenant(ctx, &client.Tenant{Id: tenant})
	require.NoError(t, err)
	_, err = c.CreateTopic(ctx, &client.TopicConfig{Name: topic, Partitions: 1, ReplicationFactor: 1})
	require.NoError(t, err)
	_, err = c.Produce(ctx, topic, &client.Event{TenantId: tenant, Payload: []byte("x")})
	require.NoError(t, err)
}

// tenantSeries returns the lines of a /metrics body that carry a tenant
// label.
func tenantSeries(body string) []string {
	var out []string
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, "#") && strings.Contains(line, `tenant="`) {
			out = append(out, line)
		}
	}
	return out
}

// TestPprofOnlyOnTheAdminListener: the public HTTP port serves no pprof
// endpoint (404); the admin listener serves them, with /metrics, /healthz
// and /readyz. Without an admin listener there is none.
func TestPprofOnlyOnTheAdminListener(t *testing.T) {
	c := startClusterConfig(t, 1, withAdmin(t))
	n := c.nodes[0]
	require.NotEmpty(t, n.AdminAddr())
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/goroutine?debug=1",
		"/debug/pprof/profile?seconds=1", "/debug/pprof/trace?seconds=1", "/debug/pprof/cmdline", "/debug/pprof/symbol"} {
		code, _ := httpGetStatus(t, n.HTTPAddr(), path)
		assert.Equal(t, http.StatusNotFound, code, "public %s", path)
	}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline", "/metrics", "/healthz"} {
		code, body := httpGetStatus(t, n.AdminAddr(), path)
		assert.Equal(t, http.StatusOK, code, "admin %s: %s", path, body)
	}
	eventually(t, 20*time.Second, func() error {
		if code, body := httpGetStatus(t, n.AdminAddr(), "/readyz"); code != http.StatusOK {
			return &statusError{code: code, body: body}
		}
		return nil
	})

	plain := startClusterConfig(t, 1, nil)
	assert.Empty(t, plain.nodes[0].AdminAddr())
}

// statusError is an HTTP answer that was not the one awaited.
type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string { return http.StatusText(e.code) + ": " + e.body }

// TestPublicMetricsHideTenantSeriesWithAuth: with client credentials
// required, the public /metrics carries no series with a tenant label (and
// says it hides them); the admin /metrics carries them. Without
// credentials the public /metrics carries them, as before.
func TestPublicMetricsHideTenantSeriesWithAuth(t *testing.T) {
	t.Run("auth", func(t *testing.T) {
		admin := withAdmin(t)
		withCredentials, token := withAuth(t)
		c := startClusterConfig(t, 1, func(cfg *Config) { admin(cfg); withCredentials(cfg) })
		produceAsTenant(t, c.addrs(), token, "orders", "acme")
		n := c.nodes[0]
		code, body := httpGetStatus(t, n.AdminAddr(), "/metrics")
		require.Equal(t, http.StatusOK, code)
		assert.Contains(t, body, `herald_admission_admitted_events_total{tenant="acme"} 1`)
		assert.NotContains(t, body, MetricTenantSeriesHidden)

		code, body = httpGetStatus(t, n.HTTPAddr(), "/metrics")
		require.Equal(t, http.StatusOK, code)
		assert.Empty(t, tenantSeries(body))
		assert.NotContains(t, body, "acme")
		assert.Contains(t, body, MetricTenantSeriesHidden+" 1")
		// The rest is still there: node-wide series without a tenant.
		assert.Contains(t, body, "herald_admission_partition_admitted_events_total")
		assert.Contains(t, body, "go_goroutines")
	})
	t.Run("no auth", func(t *testing.T) {
		c := startClusterConfig(t, 1, nil)
		produceAsTenant(t, c.addrs(), "", "orders", "acme")
		code, body := httpGetStatus(t, c.nodes[0].HTTPAddr(), "/metrics")
		require.Equal(t, http.StatusOK, code)
		assert.Contains(t, body, `herald_admission_admitted_events_total{tenant="acme"} 1`)
		assert.NotContains(t, body, MetricTenantSeriesHidden)
	})
}

// TestGRPCHealthFollowsReadiness: the standard health service on a real
// node answers SERVING for "" and herald.v1.Herald once the node is ready,
// and a watcher sees NOT_SERVING when the node closes. An unknown service
// is NOT_FOUND.
func TestGRPCHealthFollowsReadiness(t *testing.T) {
	c := startClusterConfig(t, 1, nil)
	conn, err := grpc.NewClient(c.addrs()[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	for _, service := range []string{"", "herald.v1.Herald"} {
		eventually(t, 20*time.Second, func() error {
			resp, err := hc.Check(ctxTimeout(t, 5*time.Second), &healthpb.HealthCheckRequest{Service: service})
			if err != nil {
				return err
			}
			if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				return &statusError{code: http.StatusServiceUnavailable, body: resp.GetStatus().String()}
			}
			return nil
		})
	}
	_, err = hc.Check(ctxTimeout(t, 5*time.Second), &healthpb.HealthCheckRequest{Service: "no.such.Service"})
	require.Error(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	watch, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{Service: "herald.v1.Herald"})
	require.NoError(t, err)
	first, err := watch.Recv()
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, first.GetStatus())
	closed := make(chan struct{})
	go func() { // owned by the test: ends when the node has closed
		defer close(closed)
		c.stop(0)
	}()
	next, err := watch.Recv()
	require.NoError(t, err)
	assert.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, next.GetStatus())
	<-closed
}

// TestHealthStartsNotServing: before the health loop first runs, every
// reported service is NOT_SERVING (grpc's own default for "" would be
// SERVING).
func TestHealthStartsNotServing(t *testing.T) {
	h := newHealthServer()
	for _, s := range healthServices {
		resp, err := h.Check(context.Background(), &healthpb.HealthCheckRequest{Service: s})
		require.NoError(t, err)
		assert.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, resp.GetStatus(), "service %q", s)
	}
}

// isLoopback decides the admin listener's warning: only loopback
// addresses are quiet; every interface (unspecified) is not loopback.
func TestIsLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want bool
	}{
		{&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 7901}, true},
		{&net.TCPAddr{IP: net.ParseIP("127.5.0.1"), Port: 7901}, true},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 7901}, true},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 7901}, false},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 7901}, false},
		{&net.TCPAddr{IP: net.ParseIP("10.0.0.1"), Port: 7901}, false},
		{&net.UnixAddr{Name: "localhost:7901", Net: "unix"}, true},
		{&net.UnixAddr{Name: "admin.sock", Net: "unix"}, false},
	} {
		assert.Equal(t, tc.want, isLoopback(tc.addr), "%s", tc.addr)
	}
}
