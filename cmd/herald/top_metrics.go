package main

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The partitions' admission series `herald top` reads beside the tenants'
// (metricAdmittedEvents and the others of tenant_usage.go; the names are
// fixed by issue 13).
const (
	metricQueueBytes              = "herald_admission_queue_bytes"
	metricPartitionAdmittedEvents = "herald_admission_partition_admitted_events_total"
)

// topCounters are the counters top turns into rates.
var topCounters = []string{metricAdmittedEvents, metricAdmittedBytes, metricThrottled, metricRefused, metricPartitionAdmittedEvents}

// topSeries names one admission series of one node: the metric and the
// labels top groups by (the others are ignored).
type topSeries struct {
	metric, tenant, limit, partition string
}

// topSample is one scrape of one node's admission metrics: counters (for
// rates) and the queue-bytes gauges by partition.
type topSample struct {
	counters   map[topSeries]float64
	queueBytes map[string]float64
	// tenantsHidden says the node's /metrics hides its tenant series (its
	// public port, with credentials required).
	tenantsHidden bool
}

// parseTopSample reads the admission series from a Prometheus text
// exposition; other metrics are skipped. A metric of the wrong type is an
// error (the exposition is not what top understands).
func parseTopSample(r io.Reader) (topSample, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return topSample{}, fmt.Errorf("parsing /metrics: %w", err)
	}
	s := topSample{counters: map[topSeries]float64{}, queueBytes: map[string]float64{}, tenantsHidden: tenantSeriesHidden(families)}
	for _, name := range topCounters {
		mf := families[name]
		if mf == nil {
			continue
		}
		if mf.GetType() != dto.MetricType_COUNTER {
			return topSample{}, fmt.Errorf("%s is a %s, want a counter", name, mf.GetType())
		}
		for _, m := range mf.GetMetric() {
			key := topSeries{metric: name, tenant: label(m, "tenant"), limit: label(m, "limit"), partition: label(m, "partition")}
			s.counters[key] += m.GetCounter().GetValue()
		}
	}
	if mf := families[metricQueueBytes]; mf != nil {
		if mf.GetType() != dto.MetricType_GAUGE {
			return topSample{}, fmt.Errorf("%s is a %s, want a gauge", metricQueueBytes, mf.GetType())
		}
		for _, m := range mf.GetMetric() {
			s.queueBytes[label(m, "partition")] += m.GetGauge().GetValue()
		}
	}
	return s, nil
}

// label returns a metric's label value ("" when absent).
func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// empty says whether the node exposes no admission series at all.
func (s topSample) empty() bool { return len(s.counters) == 0 && len(s.queueBytes) == 0 }

// tenantRow is one tenant's rates across the cluster: admitted events
// and bytes, and produce calls throttled (admitted with a throttle hint)
// and refused, in all and by limit.
type tenantRow struct {
	Tenant          string             `json:"tenant"`
	EventsPerSec    float64            `json:"admitted_events_per_sec"`
	BytesPerSec     float64            `json:"admitted_bytes_per_sec"`
	ThrottledPerSec float64            `json:"throttled_per_sec"`
	RefusedPerSec   float64            `json:"refused_per_sec"`
	Throttled       map[string]float64 `json:"throttled_per_sec_by_limit,omitempty"`
	Refused         map[string]float64 `json:"refused_per_sec_by_limit,omitempty"`
}

// partitionRow is one partition's (Raft group's) figures across the
// cluster.
type partitionRow struct {
	Partition    string  `json:"partition"` // the Raft group id, as labelled
	Name         string  `json:"name,omitempty"`
	Leader       string  `json:"leader,omitempty"`
	EventsPerSec float64 `json:"admitted_events_per_sec"`
	QueueBytes   float64 `json:"queue_bytes"`
}

// topFrame is one view: every tenant and partition, busiest first.
type topFrame struct {
	Seconds    float64        `json:"seconds"`
	Tenants    []tenantRow    `json:"tenants"`
	Partitions []partitionRow `json:"partitions"`
}

// computeFrame turns two scrapes of each node (keyed by node) taken
// seconds apart into rates summed over the nodes. A node missing from
// either scrape is left out; a counter lower than before (the node
// restarted) counts from zero, as Prometheus's rate does. Queue bytes are
// the latest scrape's. Rows are sorted busiest first: tenants by admitted
// events/s, then refused/s, then name; partitions by admitted events/s,
// then queue bytes, then id.
func computeFrame(prev, cur map[string]topSample, seconds float64) topFrame {
	f := topFrame{Seconds: seconds}
	tenants := map[string]*tenantRow{}
	tenant := func(name string) *tenantRow {
		t := tenants[name]
		if t == nil {
			t = &tenantRow{Tenant: name, Throttled: map[string]float64{}, Refused: map[string]float64{}}
			tenants[name] = t
		}
		return t
	}
	partitions := map[string]*partitionRow{}
	partition := func(id string) *partitionRow {
		p := partitions[id]
		if p == nil {
			p = &partitionRow{Partition: id}
			partitions[id] = p
		}
		return p
	}
	for node, now := range cur {
		before, ok := prev[node]
		if !ok || seconds <= 0 {
			continue
		}
		for key, v := range now.counters {
			delta := v - before.counters[key]
			if delta < 0 {
				delta = v // a restart: the counter began again at 0
			}
			rate := delta / seconds
			switch key.metric {
			case metricAdmittedEvents:
				tenant(key.tenant).EventsPerSec += rate
			case metricAdmittedBytes:
				tenant(key.tenant).BytesPerSec += rate
			case metricThrottled:
				t := tenant(key.tenant)
				t.ThrottledPerSec += rate
				t.Throttled[key.limit] += rate
			case metricRefused:
				t := tenant(key.tenant)
				t.RefusedPerSec += rate
				t.Refused[key.limit] += rate
			case metricPartitionAdmittedEvents:
				partition(key.partition).EventsPerSec += rate
			}
		}
		for id, v := range now.queueBytes {
			partition(id).QueueBytes += v
		}
	}
	for _, t := range tenants {
		for _, m := range []map[string]float64{t.Throttled, t.Refused} {
			maps.DeleteFunc(m, func(_ string, v float64) bool { return v == 0 })
		}
		f.Tenants = append(f.Tenants, *t)
	}
	slices.SortFunc(f.Tenants, func(a, b tenantRow) int {
		return cmp.Or(cmp.Compare(b.EventsPerSec, a.EventsPerSec), cmp.Compare(b.RefusedPerSec, a.RefusedPerSec), strings.Compare(a.Tenant, b.Tenant))
	})
	for _, p := range partitions {
		f.Partitions = append(f.Partitions, *p)
	}
	slices.SortFunc(f.Partitions, func(a, b partitionRow) int {
		return cmp.Or(cmp.Compare(b.EventsPerSec, a.EventsPerSec), cmp.Compare(b.QueueBytes, a.QueueBytes), strings.Compare(a.Partition, b.Partition))
	})
	return f
}

// byLimit renders per-limit rates, largest first: "tenant_quota 120/s,
// deadline 2/s"; "" when there are none.
func byLimit(rates map[string]float64) string {
	limits := slices.Collect(maps.Keys(rates))
	slices.SortFunc(limits, func(a, b string) int { return cmp.Or(cmp.Compare(rates[b], rates[a]), strings.Compare(a, b)) })
	parts := make([]string, len(limits))
	for i, l := range limits {
		name := l
		if name == "" {
			name = "unnamed"
		}
		parts[i] = fmt.Sprintf("%s %s/s", name, formatTopRate(rates[l]))
	}
	return strings.Join(parts, ", ")
}
