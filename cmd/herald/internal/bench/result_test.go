package bench

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// contractKeys are the JSON keys scripts outside the project rely on
// (issue 5's CLI contract, plus the run's shape).
var contractKeys = []string{
	"scenario", "events", "events_per_sec", "mb_per_sec", "p50_ms", "p99_ms", "p999_ms", "cpu_us_per_event",
	"producers", "size", "sync", "partitions", "duration_s",
}

func sampleResult() *Result {
	r := &Result{
		Scenario: ScenarioProduce, Producers: 4, Size: 128, Batch: 500, Inflight: 4, Tenants: 16,
		Partitions: 3, Replication: 3, Clients: ClientsPerProducer, Cluster: "local", Topic: "bench-x",
	}
	r.setThroughput(20_000, 128, 0.5)
	r.setLatency(Percentiles{P50: 1.23456, P99: 4.5, P999: 9.75, Max: 12, Mean: 1.5}, latencyPerBatch)
	r.setCPU(0.6, "", 0.05)
	return r
}

func TestResultJSONHasTheContractKeysOnOneLine(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, sampleResult().WriteJSON(&out))
	s := out.String()
	assert.True(t, strings.HasSuffix(s, "}\n"))
	assert.Equal(t, 1, strings.Count(s, "\n"), "one line")
	var m map[string]any
	require.NoError(t, json.Unmarshal(out.Bytes(), &m))
	for _, k := range contractKeys {
		assert.Contains(t, m, k)
	}
	assert.Equal(t, "produce", m["scenario"])
	assert.EqualValues(t, 20_000, m["events"])
	assert.EqualValues(t, 40_000, m["events_per_sec"])
	assert.EqualValues(t, 5.12, m["mb_per_sec"]) // 20,000 x 128 B / 0.5 s = 5.12 MB/s
	assert.EqualValues(t, 1.235, m["p50_ms"])
	assert.EqualValues(t, 30, m["cpu_us_per_event"]) // 0.6 s / 20,000 events
	assert.EqualValues(t, 2.5, m["bench_cpu_us_per_event"])
	assert.EqualValues(t, 0.5, m["duration_s"])
	assert.Equal(t, false, m["sync"])
	assert.NotContains(t, m, "cpu_note", "no note when the CPU is known")
}

func TestResultCPUUnknown(t *testing.T) {
	r := sampleResult()
	r.setCPU(cpuUnknown, "--server given without --http-addrs: the nodes' CPU cannot be read", -1)
	assert.EqualValues(t, -1, r.CPUUsPerEvent)
	assert.EqualValues(t, -1, r.CPUSeconds)
	assert.EqualValues(t, -1, r.BenchCPUUsPerEvent)

	var js, human bytes.Buffer
	require.NoError(t, r.WriteJSON(&js))
	assert.Contains(t, js.String(), `"cpu_us_per_event":-1`)
	assert.Contains(t, js.String(), `"cpu_note":"--server given without --http-addrs`)
	require.NoError(t, r.WriteSummary(&human))
	assert.Contains(t, human.String(), "node CPU:   unknown (--server given without --http-addrs")
	assert.NotContains(t, human.String(), "bench CPU")
}

func TestResultSummary(t *testing.T) {
	r := sampleResult()
	r.Notes = []string{"something to know"}
	var out bytes.Buffer
	require.NoError(t, r.WriteSummary(&out))
	want := `herald bench produce: 20,000 events of 128 B, topic bench-x: 3 partitions x3 (local cluster)
  producers:  4 (async, up to 500 events per request, 4 in flight each; per-producer clients), 16 tenants
  throughput: 40000 events/s, 5.12 MB/s of payload over 0.50s
  latency:    p50 1.24ms  p99 4.50ms  p99.9 9.75ms  max 12.00ms  (per batch, send to ack)
  node CPU:   30.00 µs/event (= CPU seconds per million events), 0.60 CPU s in all
  bench CPU:  2.50 µs/event (this process, the load generator)
  note:       something to know
`
	assert.Equal(t, want, out.String())
}

func TestResultSummaryOfOtherScenarios(t *testing.T) {
	r := sampleResult()
	r.Scenario, r.Sync = ScenarioReplay, true
	r.setLatency(Percentiles{P50: 0.5}, latencyPerPage)
	var out bytes.Buffer
	require.NoError(t, r.WriteSummary(&out))
	assert.Contains(t, out.String(), "reading:    one subscriber, partitions in parallel, pages of up to 10,000 events")
	assert.Contains(t, out.String(), "loaded by:  4 (sync, one event per request waiting for its ack; per-producer clients), 16 tenants, untimed")
	assert.Contains(t, out.String(), "p50 0.500ms")
	assert.Contains(t, out.String(), "(per fetch page)")

	r = sampleResult()
	r.Scenario, r.RateTarget, r.PeakEventsPerSec = ScenarioE2E, 1000, 2000
	r.setLatency(Percentiles{P50: 150}, latencyDelivered)
	out.Reset()
	require.NoError(t, r.WriteSummary(&out))
	assert.Contains(t, out.String(), "rate:       1000 events/s paced (half of a quick peak of 2000 events/s)")
	assert.Contains(t, out.String(), "p50 150ms")
	assert.Contains(t, out.String(), "(per event, produced_at to delivered)")
}

func TestThroughputOfZeroDuration(t *testing.T) {
	var r Result
	r.setThroughput(10, 128, 0)
	assert.Equal(t, int64(10), r.Events)
	assert.Zero(t, r.EventsPerSec)
	assert.Zero(t, r.MBPerSec)
}

func TestFormatCount(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 7: "7", 999: "999", 1000: "1,000", 1234567: "1,234,567", -1000: "-1,000"} {
		assert.Equal(t, want, formatCount(n), "%d", n)
	}
}

func TestFormatMs(t *testing.T) {
	assert.Equal(t, "0.042ms", formatMs(0.042))
	assert.Equal(t, "5.50ms", formatMs(5.5))
	assert.Equal(t, "250ms", formatMs(250.4))
}
