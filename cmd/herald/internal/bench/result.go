package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
)

// What a Result's latency measures.
const (
	latencyPerEvent  = "event"            // one sync send: produce call to ack
	latencyPerBatch  = "batch"            // one async send of Batch events: call to ack
	latencyPerPage   = "page"             // one Fetch page during replay
	latencyDelivered = "produce_to_fetch" // produced_at (leader clock) to the reader's receipt
)

// cpuUnknown is the CPU figure when it could not be measured.
const cpuUnknown = -1

// Result is the outcome of one run. Its JSON keys are a contract (scripts
// outside the project read them): add keys, never rename or remove one.
type Result struct {
	Scenario Scenario `json:"scenario"`
	// Events is the number of events acknowledged (produce), read
	// (replay) or delivered (e2e) in the timed phase.
	Events       int64   `json:"events"`
	EventsPerSec float64 `json:"events_per_sec"`
	// MBPerSec counts payload bytes only, MB = 10^6 bytes.
	MBPerSec float64 `json:"mb_per_sec"`
	P50Ms    float64 `json:"p50_ms"`
	P99Ms    float64 `json:"p99_ms"`
	P999Ms   float64 `json:"p999_ms"`
	MaxMs    float64 `json:"max_ms"`
	MeanMs   float64 `json:"mean_ms"`
	// LatencyOf says what one latency observation is: "event", "batch",
	// "page" or "produce_to_fetch".
	LatencyOf string `json:"latency_of"`
	// CPUUsPerEvent is the node processes' CPU (all nodes together) per
	// event, in microseconds; numerically it is also CPU seconds per
	// million events. -1 when unknown (CPUNote says why).
	CPUUsPerEvent float64 `json:"cpu_us_per_event"`
	// CPUSeconds is the node processes' CPU over the timed phase; -1 when
	// unknown.
	CPUSeconds float64 `json:"cpu_seconds"`
	CPUNote    string  `json:"cpu_note,omitempty"`
	// BenchCPUUsPerEvent is this (load generating) process's own CPU per
	// event; -1 when unknown.
	BenchCPUUsPerEvent float64 `json:"bench_cpu_us_per_event"`

	Producers   int        `json:"producers"`
	Size        int        `json:"size"`
	Sync        bool       `json:"sync"`
	Batch       int        `json:"batch"`
	Inflight    int        `json:"inflight"`
	Tenants     int        `json:"tenants"`
	Partitions  int        `json:"partitions"`
	Replication int        `json:"replication"`
	Clients     ClientMode `json:"clients"`
	DurationS   float64    `json:"duration_s"`
	// Cluster is "local" (started by bench) or "external" (--server).
	Cluster string `json:"cluster"`
	Topic   string `json:"topic"`
	// RateTarget is e2e's produce rate (events/s); PeakEventsPerSec the
	// quick peak it was derived from, when it was.
	RateTarget       float64 `json:"rate_target,omitempty"`
	PeakEventsPerSec float64 `json:"peak_events_per_sec,omitempty"`
	// Notes are caveats about this run, one sentence each.
	Notes []string `json:"notes,omitempty"`
}

// setThroughput fills the rates from events, payload size and seconds.
func (r *Result) setThroughput(events int64, sizeBytes int, seconds float64) {
	r.Events = events
	r.DurationS = round(seconds, 3)
	if seconds <= 0 {
		return
	}
	r.EventsPerSec = round(float64(events)/seconds, 1)
	r.MBPerSec = round(float64(events)*float64(sizeBytes)/1e6/seconds, 3)
}

// setLatency copies p into the latency fields.
func (r *Result) setLatency(p Percentiles, of string) {
	r.P50Ms, r.P99Ms, r.P999Ms = round(p.P50, 3), round(p.P99, 3), round(p.P999, 3)
	r.MaxMs, r.MeanMs = round(p.Max, 3), round(p.Mean, 3)
	r.LatencyOf = of
}

// setCPU fills the CPU fields from the node CPU seconds (negative:
// unknown, note says why) and this process's own.
func (r *Result) setCPU(nodeSeconds float64, note string, benchSeconds float64) {
	r.CPUSeconds, r.CPUUsPerEvent, r.CPUNote = cpuUnknown, cpuUnknown, note
	if nodeSeconds >= 0 {
		r.CPUSeconds = round(nodeSeconds, 3)
		if r.Events > 0 {
			r.CPUUsPerEvent = round(nodeSeconds*1e6/float64(r.Events), 2)
		}
	}
	r.BenchCPUUsPerEvent = cpuUnknown
	if benchSeconds >= 0 && r.Events > 0 {
		r.BenchCPUUsPerEvent = round(benchSeconds*1e6/float64(r.Events), 2)
	}
}

// WriteJSON writes r as one JSON object on one line.
func (r *Result) WriteJSON(w io.Writer) error { return writeJSONLine(w, r) }

// writeJSONLine writes v as one JSON object on one line (HTML characters
// unescaped): the last line of every bench's --json output.
func writeJSONLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// WriteSummary writes r for people, a few aligned lines.
func (r *Result) WriteSummary(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "herald bench %s: %s events of %d B, topic %s: %d partitions x%d (%s cluster)\n",
		r.Scenario, formatCount(r.Events), r.Size, r.Topic, r.Partitions, r.Replication, r.Cluster)
	sending := fmt.Sprintf("async, up to %d events per request, %d in flight each", r.Batch, r.Inflight)
	if r.Sync {
		sending = "sync, one event per request waiting for its ack"
	}
	producers := fmt.Sprintf("%d (%s; %s clients), %d tenants", r.Producers, sending, r.Clients, r.Tenants)
	if r.Scenario == ScenarioReplay {
		fmt.Fprintf(&b, "  reading:    one subscriber, partitions in parallel, pages of up to %s events\n", formatCount(fetchEventsMax))
		fmt.Fprintf(&b, "  loaded by:  %s, untimed\n", producers)
	} else {
		fmt.Fprintf(&b, "  producers:  %s\n", producers)
	}
	if r.RateTarget > 0 {
		if r.PeakEventsPerSec > 0 {
			fmt.Fprintf(&b, "  rate:       %.0f events/s paced (half of a quick peak of %.0f events/s)\n", r.RateTarget, r.PeakEventsPerSec)
		} else {
			fmt.Fprintf(&b, "  rate:       %.0f events/s paced (--rate)\n", r.RateTarget)
		}
	}
	fmt.Fprintf(&b, "  throughput: %.0f events/s, %.2f MB/s of payload over %.2fs\n", r.EventsPerSec, r.MBPerSec, r.DurationS)
	fmt.Fprintf(&b, "  latency:    p50 %s  p99 %s  p99.9 %s  max %s  (per %s)\n",
		formatMs(r.P50Ms), formatMs(r.P99Ms), formatMs(r.P999Ms), formatMs(r.MaxMs), latencyLabel(r.LatencyOf))
	if r.CPUUsPerEvent >= 0 {
		fmt.Fprintf(&b, "  node CPU:   %.2f µs/event (= CPU seconds per million events), %.2f CPU s in all\n", r.CPUUsPerEvent, r.CPUSeconds)
	} else {
		fmt.Fprintf(&b, "  node CPU:   unknown (%s)\n", r.CPUNote)
	}
	if r.BenchCPUUsPerEvent >= 0 {
		fmt.Fprintf(&b, "  bench CPU:  %.2f µs/event (this process, the load generator)\n", r.BenchCPUUsPerEvent)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "  note:       %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// latencyLabel says in words what one observation is.
func latencyLabel(of string) string {
	switch of {
	case latencyPerEvent:
		return "event, send to ack"
	case latencyPerBatch:
		return "batch, send to ack"
	case latencyPerPage:
		return "fetch page"
	case latencyDelivered:
		return "event, produced_at to delivered"
	default:
		return of
	}
}

// formatMs renders milliseconds with precision that suits the size.
func formatMs(ms float64) string {
	switch {
	case ms < 1:
		return fmt.Sprintf("%.3fms", ms)
	case ms < 100:
		return fmt.Sprintf("%.2fms", ms)
	default:
		return fmt.Sprintf("%.0fms", ms)
	}
}

// formatCount renders n with thousands separators: 1234567 → "1,234,567".
func formatCount(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// round rounds x to digits decimals (for stable, readable JSON).
func round(x float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(x*p) / p
}
