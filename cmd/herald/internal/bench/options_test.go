package bench

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDefaultOptionsAreValid(t *testing.T) {
	for _, sc := range Scenarios {
		opts := DefaultOptions(sc)
		assert.NoError(t, opts.Validate(), "scenario %s", sc)
	}
}

func TestValidateRefusesBadOptions(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Options)
		want   string // in the error
	}{
		{"count zero", func(o *Options) { o.Count = 0 }, "--count 0"},
		{"count negative", func(o *Options) { o.Count = -5 }, "--count -5"},
		{"size zero", func(o *Options) { o.SizeBytes = 0 }, "--size 0"},
		{"size above the default max event size", func(o *Options) { o.SizeBytes = sizeBytesMax + 1 }, "--size"},
		{"no producers", func(o *Options) { o.Producers = 0 }, "--producers 0"},
		{"batch zero", func(o *Options) { o.Batch = 0 }, "--batch 0"},
		{"batch too large", func(o *Options) { o.Batch = batchMax + 1 }, "--batch"},
		{"inflight zero", func(o *Options) { o.Inflight = 0 }, "--inflight 0"},
		{"tenants zero", func(o *Options) { o.Tenants = 0 }, "--tenants 0"},
		{"partitions zero", func(o *Options) { o.Partitions = 0 }, "--partitions 0"},
		{"replication above the local cluster", func(o *Options) { o.Replication = 4 }, "local cluster has 3 nodes"},
		{"negative rate", func(o *Options) { o.Rate = -1 }, "--rate -1"},
		{"rate outside e2e", func(o *Options) { o.Rate = 100 }, "--rate applies to e2e only"},
		{"unknown client mode", func(o *Options) { o.Clients = "pooled" }, `--clients "pooled"`},
		{"zero timeout", func(o *Options) { o.Timeout = 0 }, "--timeout"},
		{"http addrs without servers", func(o *Options) { o.HTTPAddrs = []string{"127.0.0.1:1"} }, "--http-addrs needs --server"},
		{"unknown scenario", func(o *Options) { o.Scenario = "soak" }, `scenario "soak"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := DefaultOptions(ScenarioProduce)
			tt.modify(&opts)
			err := opts.Validate()
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrInvalidOptions), "wraps ErrInvalidOptions: %v", err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestValidateReportsEveryProblemAtOnce(t *testing.T) {
	opts := DefaultOptions(ScenarioProduce)
	opts.Count, opts.SizeBytes, opts.Producers = 0, 0, 0
	err := opts.Validate()
	require.Error(t, err)
	for _, flag := range []string{"--count", "--size", "--producers"} {
		assert.Contains(t, err.Error(), flag)
	}
	assert.Equal(t, 3, strings.Count(err.Error(), ErrInvalidOptions.Error()))
}

func TestValidateAcceptsExternalClusterShapes(t *testing.T) {
	opts := DefaultOptions(ScenarioE2E)
	opts.Servers = []string{"127.0.0.1:7701"}
	opts.HTTPAddrs = []string{"127.0.0.1:7801"}
	opts.Replication = 5 // an external cluster may have more nodes
	opts.Rate = 1000
	opts.Timeout = time.Second
	assert.NoError(t, opts.Validate())
}

func TestRunRefusesInvalidOptionsBeforeStartingAnything(t *testing.T) {
	opts := DefaultOptions(ScenarioProduce)
	opts.Count = 0
	opts.Executable = "/nonexistent/herald" // would fail if a cluster were started
	_, err := Run(t.Context(), opts, nil)
	require.ErrorIs(t, err, ErrInvalidOptions)
}
