package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// exposition renders admission counters of one node in the Prometheus text
// format: admitted events and bytes per tenant, refused per tenant and
// limit, partition admitted events and queue bytes.
func exposition(admitted map[string]float64, bytes map[string]float64, refused map[[2]string]float64, partitionEvents, queue map[string]float64) string {
	var b strings.Builder
	b.WriteString("# HELP go_goroutines Number of goroutines.\n# TYPE go_goroutines gauge\ngo_goroutines 42\n")
	b.WriteString("# TYPE " + metricAdmittedEvents + " counter\n")
	for t, v := range admitted {
		fmt.Fprintf(&b, "%s{tenant=%q} %g\n", metricAdmittedEvents, t, v)
	}
	b.WriteString("# TYPE " + metricAdmittedBytes + " counter\n")
	for t, v := range bytes {
		fmt.Fprintf(&b, "%s{tenant=%q} %g\n", metricAdmittedBytes, t, v)
	}
	b.WriteString("# TYPE " + metricRefused + " counter\n")
	for k, v := range refused {
		fmt.Fprintf(&b, "%s{limit=%q,tenant=%q} %g\n", metricRefused, k[1], k[0], v)
	}
	b.WriteString("# TYPE " + metricPartitionAdmittedEvents + " counter\n")
	for p, v := range partitionEvents {
		fmt.Fprintf(&b, "%s{partition=%q} %g\n", metricPartitionAdmittedEvents, p, v)
	}
	b.WriteString("# TYPE " + metricQueueBytes + " gauge\n")
	for p, v := range queue {
		fmt.Fprintf(&b, "%s{partition=%q} %g\n", metricQueueBytes, p, v)
	}
	return b.String()
}

func mustSample(t *testing.T, text string) topSample {
	t.Helper()
	s, err := parseTopSample(strings.NewReader(text))
	require.NoError(t, err)
	return s
}

// TestComputeFrameSumsRatesOverNodes: two scrapes of three nodes two
// seconds apart become per-tenant and per-partition rates summed over the
// nodes; a node whose counters went down (it restarted) counts from zero;
// a node absent from the first scrape is left out; rows come busiest
// first and limits without refusals are not listed.
func TestComputeFrameSumsRatesOverNodes(t *testing.T) {
	prev := map[string]topSample{
		"n1": mustSample(t, exposition(
			map[string]float64{"acme": 1000, "globex": 100}, map[string]float64{"acme": 128_000, "globex": 12_800},
			map[[2]string]float64{{"acme", "tenant_quota"}: 50, {"acme", "deadline"}: 7},
			map[string]float64{"4": 1100}, map[string]float64{"4": 0})),
		"n2": mustSample(t, exposition(
			map[string]float64{"acme": 5000}, map[string]float64{"acme": 640_000}, nil,
			map[string]float64{"5": 5000}, nil)),
	}
	cur := map[string]topSample{
		"n1": mustSample(t, exposition(
			map[string]float64{"acme": 3000, "globex": 140}, map[string]float64{"acme": 384_000, "globex": 17_920},
			map[[2]string]float64{{"acme", "tenant_quota"}: 450, {"acme", "deadline"}: 7},
			map[string]float64{"4": 3140}, map[string]float64{"4": 4096})),
		// n2 restarted: its counters began again.
		"n2": mustSample(t, exposition(
			map[string]float64{"acme": 400}, map[string]float64{"acme": 51_200}, nil,
			map[string]float64{"5": 400}, map[string]float64{"5": 100})),
		// n3 was not read the first time: no rate yet.
		"n3": mustSample(t, exposition(map[string]float64{"initech": 1e9}, nil, nil, map[string]float64{"6": 1e9}, nil)),
	}
	f := computeFrame(prev, cur, 2)

	require.Len(t, f.Tenants, 2)
	assert.Equal(t, tenantRow{
		Tenant: "acme", EventsPerSec: (2000 + 400) / 2.0, BytesPerSec: (256_000 + 51_200) / 2.0,
		RefusedPerSec: 200, Refused: map[string]float64{"tenant_quota": 200}, Throttled: map[string]float64{},
	}, f.Tenants[0])
	assert.Equal(t, "globex", f.Tenants[1].Tenant)
	assert.InDelta(t, 20, f.Tenants[1].EventsPerSec, 1e-9)
	assert.InDelta(t, 2560, f.Tenants[1].BytesPerSec, 1e-9)

	require.Len(t, f.Partitions, 2)
	assert.Equal(t, partitionRow{Partition: "4", EventsPerSec: 1020, QueueBytes: 4096}, f.Partitions[0])
	assert.Equal(t, partitionRow{Partition: "5", EventsPerSec: 200, QueueBytes: 100}, f.Partitions[1])
	assert.Equal(t, "tenant_quota 200/s", byLimit(f.Tenants[0].Refused))
}

func TestParseTopSampleRefusesAMetricOfTheWrongType(t *testing.T) {
	_, err := parseTopSample(strings.NewReader("# TYPE " + metricRefused + " gauge\n" + metricRefused + "{tenant=\"a\",limit=\"x\"} 1\n"))
	require.ErrorContains(t, err, "want a counter")
	_, err = parseTopSample(strings.NewReader("not metrics {{{\n"))
	require.Error(t, err)
	s := mustSample(t, "# TYPE go_goroutines gauge\ngo_goroutines 3\n")
	assert.True(t, s.empty(), "a node without admission metrics")
}

func TestTopRefusesBadFlags(t *testing.T) {
	dead := deadAddr(t)
	for _, args := range [][]string{{"top", "--interval", "1ms"}, {"top", "--limit", "0"}} {
		res := runCLI(t, "", map[string]string{serverEnv: dead}, args...)
		assert.Equal(t, exitUsage, res.code, res.stderr)
		assert.NotContains(t, res.stderr, "no node answered")
	}
}
