package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseProcStatTicks(t *testing.T) {
	// Field 2 holds spaces and a ')': fields are counted from the last ')'.
	stat := "1234 (herald (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 12 0 1000 0 0\n"
	ticks, err := parseProcStatTicks(stat)
	require.NoError(t, err)
	assert.Equal(t, uint64(325), ticks)

	for _, bad := range []string{"", "1234 herald S 1", "1 (a) S 1 2", "1 (a) S 1 1 1 0 -1 0 0 0 0 0 x 75"} {
		_, err := parseProcStatTicks(bad)
		assert.Error(t, err, "%q", bad)
	}
}

func TestProcCPUOfThisProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	m := procCPU{pids: []int{os.Getpid()}}
	before, err := m.cpuSeconds(t.Context())
	require.NoError(t, err)
	deadline := time.Now().Add(5 * time.Second)
	after := before
	for after <= before && time.Now().Before(deadline) { // burn CPU until a tick shows
		for i := 0; i < 1_000_000; i++ {
			_ = fmt.Sprint(i)
		}
		after, err = m.cpuSeconds(t.Context())
		require.NoError(t, err)
	}
	assert.Greater(t, after, before)

	_, err = procCPU{pids: []int{-1}}.cpuSeconds(t.Context())
	assert.Error(t, err)
}

func TestParseProcessCPU(t *testing.T) {
	text := `# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total_other 99
process_cpu_seconds_total 12.5
process_max_fds 1024
`
	v, err := parseProcessCPU(strings.NewReader(text))
	require.NoError(t, err)
	assert.Equal(t, 12.5, v)

	v, err = parseProcessCPU(strings.NewReader(`process_cpu_seconds_total{instance="a"} 3e-2` + "\n"))
	require.NoError(t, err)
	assert.Equal(t, 0.03, v)

	_, err = parseProcessCPU(strings.NewReader("go_goroutines 12\n"))
	assert.ErrorContains(t, err, "no process_cpu_seconds_total")
}

// fakeMetrics serves a process_cpu_seconds_total that grows by step on
// every scrape.
func fakeMetrics(t *testing.T, start, step float64) *httptest.Server {
	var scrapes atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		n := scrapes.Add(1) - 1
		fmt.Fprintf(w, "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %g\n", start+float64(n)*step)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestCPUWindowOverMetrics(t *testing.T) {
	a, b := fakeMetrics(t, 10, 0.5), fakeMetrics(t, 100, 1.5)
	w := cpuWindow{meter: metricsCPU{
		httpAddrs: []string{strings.TrimPrefix(a.URL, "http://"), strings.TrimPrefix(b.URL, "http://")},
		client:    a.Client(),
	}}
	w.begin(t.Context())
	node, note, self := w.end(t.Context())
	assert.InDelta(t, 2.0, node, 1e-9, "both nodes' growth")
	assert.Empty(t, note)
	if runtime.GOOS == "linux" {
		assert.GreaterOrEqual(t, self, 0.0)
	}
}

func TestCPUWindowUnknown(t *testing.T) {
	w := cpuWindow{note: "no way to know"}
	w.begin(t.Context())
	node, note, _ := w.end(t.Context())
	assert.Equal(t, float64(cpuUnknown), node)
	assert.Equal(t, "no way to know", note)

	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	w = cpuWindow{meter: metricsCPU{httpAddrs: []string{strings.TrimPrefix(srv.URL, "http://")}, client: srv.Client()}}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	w.begin(ctx)
	node, note, _ = w.end(ctx)
	assert.Equal(t, float64(cpuUnknown), node)
	assert.Contains(t, note, "404")
}
