package bench

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestPercentilesOfKnownDistribution(t *testing.T) {
	l := newLatency()
	for i := 1; i <= 1000; i++ {
		l.record(time.Duration(i) * time.Millisecond)
	}
	p := l.percentiles()
	assert.Equal(t, int64(1000), p.Count)
	// Three significant digits: each value within 0.1% of the exact one.
	assert.InEpsilon(t, 500.0, p.P50, 0.002)
	assert.InEpsilon(t, 990.0, p.P99, 0.002)
	assert.InEpsilon(t, 999.0, p.P999, 0.002)
	assert.InEpsilon(t, 1000.0, p.Max, 0.002)
	assert.InEpsilon(t, 500.5, p.Mean, 0.002)
}

func TestPercentilesOfNothingAreZero(t *testing.T) {
	assert.Equal(t, Percentiles{}, newLatency().percentiles())
}

func TestLatencyClampsOutOfRangeValues(t *testing.T) {
	l := newLatency()
	l.record(-3 * time.Millisecond) // reader clock behind the stamp
	l.record(0)
	l.record(time.Hour) // past the top
	assert.Equal(t, int64(3), l.count())
	assert.Equal(t, int64(1), l.clamped)
	p := l.percentiles()
	assert.InDelta(t, 0.001, p.P50, 0.0001, "the small values count as 1 µs")
	assert.InEpsilon(t, float64(latencyMicrosMax)/1000, p.Max, 0.002)
}

func TestLatencyMerge(t *testing.T) {
	a, b := newLatency(), newLatency()
	a.recordN(time.Millisecond, 99)
	b.recordN(time.Second, 1)
	b.record(time.Hour)
	a.merge(b)
	assert.Equal(t, int64(101), a.count())
	assert.Equal(t, int64(1), a.clamped)
	p := a.percentiles()
	assert.InEpsilon(t, 1.0, p.P50, 0.002)
	assert.InEpsilon(t, 1000.0, p.P99, 0.002)
}
