package client

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	cfg := Config{
		Servers:        []string{"no-port", "127.0.0.1:"},
		DialTimeout:    -time.Second,
		RequestTimeout: -time.Second,
		MaxRetries:     maxRetriesMax + 1,
		BackoffMin:     2 * time.Second,
		BackoffMax:     time.Second,
		// Backpressure modes, throttle retries and pending bytes.
		Backpressure:       Backpressure(7),
		MaxThrottleRetries: maxRetriesMax + 1,
		MaxPendingBytes:    -1,
	}
	err := cfg.Validate()
	require.Error(t, err)
	for _, want := range []string{`"no-port"`, `"127.0.0.1:"`, "dial timeout", "request timeout", "max retries", "backoff min 2s is above backoff max 1s",
		"unknown backpressure mode Backpressure(7)", "max throttle retries", "max pending bytes -1 is negative"} {
		assert.Contains(t, err.Error(), want)
	}
	assert.ErrorContains(t, (&Config{}).Validate(), "at least one server")
}

func TestConfigDefaults(t *testing.T) {
	cfg := Config{Servers: []string{"127.0.0.1:7701"}}
	require.NoError(t, cfg.Validate())
	d := cfg.withDefaults()
	assert.Equal(t, DefaultDialTimeout, d.DialTimeout)
	assert.Equal(t, DefaultRequestTimeout, d.RequestTimeout)
	assert.Equal(t, DefaultMaxRetries, d.MaxRetries)
	assert.Equal(t, DefaultBackoffMin, d.BackoffMin)
	assert.Equal(t, DefaultBackoffMax, d.BackoffMax)
	assert.NotNil(t, d.Logger)
	assert.Equal(t, DefaultMaxThrottleRetries, d.MaxThrottleRetries)
	assert.Equal(t, BackpressureBlock, d.Backpressure)
	assert.Zero(t, d.MaxPendingBytes, "no bound by default")

	noRetries := Config{Servers: []string{"h:1"}, MaxRetries: -1}.withDefaults()
	assert.Equal(t, 0, noRetries.MaxRetries)
	noThrottleRetries := Config{Servers: []string{"h:1"}, MaxThrottleRetries: -1}.withDefaults()
	assert.Equal(t, 0, noThrottleRetries.MaxThrottleRetries)
	// A BackoffMin above the default max is fine when BackoffMax is raised too.
	assert.NoError(t, (&Config{Servers: []string{"h:1"}, BackoffMin: 2 * time.Second, BackoffMax: 5 * time.Second}).Validate())
	assert.Error(t, (&Config{Servers: []string{"h:1"}, BackoffMin: DefaultBackoffMax + time.Second}).Validate())
}
