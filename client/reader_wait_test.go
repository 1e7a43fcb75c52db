package client

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestWaitWithinKeepsTheLongPollInsideTheAttempt(t *testing.T) {
	cases := []struct{ wait, timeout, want time.Duration }{
		{wait: 5 * time.Second, timeout: 10 * time.Second, want: 5 * time.Second},
		{wait: 0, timeout: 10 * time.Second, want: 0},
		{wait: 10 * time.Second, timeout: 10 * time.Second, want: 9 * time.Second},
		{wait: 30 * time.Second, timeout: 3 * time.Second, want: 2 * time.Second},
		{wait: 5 * time.Second, timeout: time.Second, want: 500 * time.Millisecond},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, waitWithin(tc.wait, tc.timeout), "wait %s, timeout %s", tc.wait, tc.timeout)
	}
}
