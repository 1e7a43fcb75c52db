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
	}
	err := cfg.Validate()
	require.Error(t, err)
	for _, want := range []string{`"no-port"`, `"127.0.0.1:"`, "dial timeout", "request timeout", "max retries", "backoff min 2s is above backoff max 1s"} {
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

	noRetries := Config{Servers: []string{"h:1"}, MaxRetries: -1}.withDefaults()
	assert.Equal(t, 0, noRetries.MaxRetries)
	// A BackoffMin above the default max is fine when BackoffMax is raised too.
	assert.NoError(t, (&Config{Servers: []string{"h:1"}, BackoffMin: 2 * time.Second, BackoffMax: 5 * time.Second}).Validate())
	assert.Error(t, (&Config{Servers: []string{"h:1"}, BackoffMin: DefaultBackoffMax + time.Second}).Validate())
}
