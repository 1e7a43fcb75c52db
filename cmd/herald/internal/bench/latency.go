package bench

import (
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Range of the latency histograms, in microseconds: 1 µs to 5 minutes with
// three significant digits. A value past the top is recorded as the top
// (and counted in latency.clamped) rather than dropped.
const (
	latencyMicrosMin         = 1
	latencyMicrosMax         = int64(5 * time.Minute / time.Microsecond)
	latencySignificantDigits = 3
)

// latency is an HDR histogram of durations. It is not safe for concurrent
// use: each goroutine records into its own and the owner merges them once
// the goroutines are done.
type latency struct {
	h       *hdrhistogram.Histogram
	clamped int64 // values above latencyMicrosMax, recorded as the max
}

func newLatency() *latency {
	return &latency{h: hdrhistogram.New(latencyMicrosMin, latencyMicrosMax, latencySignificantDigits)}
}

// record adds one duration. Negative durations (clock skew between the
// stamp and the reader) count as the minimum.
func (l *latency) record(d time.Duration) {
	l.recordN(d, 1)
}

// recordN adds n observations of d.
func (l *latency) recordN(d time.Duration, n int64) {
	us := d.Microseconds()
	switch {
	case us < latencyMicrosMin:
		us = latencyMicrosMin
	case us > latencyMicrosMax:
		us = latencyMicrosMax
		l.clamped += n
	}
	_ = l.h.RecordValues(us, n) // in range by construction
}

// merge adds every observation of other to l.
func (l *latency) merge(other *latency) {
	l.h.Merge(other.h)
	l.clamped += other.clamped
}

// count returns the number of observations.
func (l *latency) count() int64 { return l.h.TotalCount() }

// Percentiles are a latency distribution's summary in milliseconds. With
// no observation every field is 0.
type Percentiles struct {
	P50, P99, P999, Max, Mean float64
	Count                     int64
}

// percentiles summarises l.
func (l *latency) percentiles() Percentiles {
	if l.count() == 0 {
		return Percentiles{}
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Percentiles{
		P50:   ms(l.h.ValueAtPercentile(50)),
		P99:   ms(l.h.ValueAtPercentile(99)),
		P999:  ms(l.h.ValueAtPercentile(99.9)),
		Max:   ms(l.h.Max()),
		Mean:  l.h.Mean() / 1000,
		Count: l.count(),
	}
}
