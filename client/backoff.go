package client

import (
	"math/rand/v2"
	"time"
)

// backoff computes retry delays: exponential from min, capped at max, with
// full jitter (a uniform draw in [0, cap)), which spreads the retries of
// many clients after a shared failure such as a leader election.
//
// A backoff is immutable and safe for concurrent use.
type backoff struct {
	min, max time.Duration
	// int64N draws uniformly in [0, n); rand.Int64N unless a test replaces it.
	int64N func(n int64) int64
}

func newBackoff(minimum, maximum time.Duration) backoff {
	return backoff{min: minimum, max: maximum, int64N: rand.Int64N}
}

// ceiling is the upper bound of the delay before retry number retry (from 0).
func (b backoff) ceiling(retry int) time.Duration {
	d := b.min
	for i := 0; i < retry && d < b.max; i++ {
		d *= 2
	}
	return min(d, b.max)
}

// delay draws the delay before retry number retry (from 0).
func (b backoff) delay(retry int) time.Duration {
	c := b.ceiling(retry)
	if c <= 0 {
		return 0
	}
	return time.Duration(b.int64N(int64(c)))
}

// afterHint draws the delay before resending a request refused with a
// retry hint (ErrThrottled): the hint, capped at pauseMax, plus a jitter
// in [0, hint/4 + min), so that the producers one refusal stopped do not
// all come back at the same instant. Without a hint (ok false) it is the
// plain backoff of retry.
func (b backoff) afterHint(hint time.Duration, ok bool, retry int) time.Duration {
	if !ok {
		return b.delay(retry)
	}
	hint = min(max(hint, 0), pauseMax)
	spread := hint/4 + b.min
	if spread <= 0 {
		return hint
	}
	return hint + time.Duration(b.int64N(int64(spread)))
}
