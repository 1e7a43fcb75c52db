package server

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/partition"
)

// Zero batching fields keep the partition defaults; set ones replace them.
func TestBatcherOptionsFromConfig(t *testing.T) {
	def := partition.DefaultBatcherOptions()
	require.Equal(t, def, (&Config{}).batcherOptions())

	got := (&Config{Batching: BatchTuning{Linger: 2 * time.Millisecond, InflightMax: 1}}).batcherOptions()
	want := def
	want.Linger, want.InflightMax = 2*time.Millisecond, 1
	require.Equal(t, want, got)
	require.NoError(t, got.Validate())
}
