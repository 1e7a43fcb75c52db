package client

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestBackoffCeilingDoublesUpToMax(t *testing.T) {
	b := newBackoff(20*time.Millisecond, time.Second)
	want := []time.Duration{20, 40, 80, 160, 320, 640, 1000, 1000}
	for retry, w := range want {
		assert.Equal(t, w*time.Millisecond, b.ceiling(retry), "retry %d", retry)
	}
	assert.Equal(t, time.Second, b.ceiling(1000), "no overflow on many retries")
}

func TestBackoffDelayIsFullJitterUnderTheCeiling(t *testing.T) {
	var asked []int64
	b := newBackoff(10*time.Millisecond, 100*time.Millisecond)
	b.int64N = func(n int64) int64 { asked = append(asked, n); return n - 1 }
	for retry := range 6 {
		d := b.delay(retry)
		assert.Less(t, d, b.ceiling(retry))
		assert.GreaterOrEqual(t, d, time.Duration(0))
	}
	assert.Equal(t, []int64{10e6, 20e6, 40e6, 80e6, 100e6, 100e6}, asked, "draws span [0, ceiling)")

	zero := newBackoff(0, 0)
	assert.Equal(t, time.Duration(0), zero.delay(3))
}

func TestBackoffAfterHintAddsBoundedJitter(t *testing.T) {
	var asked []int64
	b := newBackoff(10*time.Millisecond, 100*time.Millisecond)
	b.int64N = func(n int64) int64 { asked = append(asked, n); return n - 1 }
	d := b.afterHint(200*time.Millisecond, true, 0)
	assert.Equal(t, 200*time.Millisecond+60*time.Millisecond-1, d, "the hint plus up to a quarter of it and min")
	assert.Equal(t, []int64{int64(60 * time.Millisecond)}, asked)

	assert.Less(t, b.afterHint(0, true, 5), 10*time.Millisecond, "a zero hint is jitter under min")
	assert.Less(t, b.afterHint(1000*time.Hour, true, 0), pauseMax+pauseMax/4+10*time.Millisecond, "a hint is capped")
	assert.Less(t, b.afterHint(0, false, 2), b.ceiling(2), "no hint: plain backoff")
}
