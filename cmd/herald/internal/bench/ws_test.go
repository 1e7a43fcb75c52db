package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/server/proccluster"
)

// A small WebSocket run against a real local cluster: every connection
// subscribes, every broadcast event reaches every connection and every
// own-stream event its one connection, and the node's memory is measured.
func TestRunWSSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three herald processes")
	}
	o := DefaultWSOptions()
	o.Connections, o.Partitions = 40, 4
	o.BroadcastRate, o.BroadcastDuration = 20, time.Second
	o.OwnRate, o.OwnDuration = 400, time.Second
	var progress bytes.Buffer
	res, err := RunWS(t.Context(), proccluster.TestBinary(t), o, &progress)
	require.NoError(t, err, progress.String())
	assert.EqualValues(t, 40, res.Connected)
	require.Len(t, res.Phases, 2)
	for _, p := range res.Phases {
		assert.Positive(t, p.Published, p.Name)
		assert.Equal(t, p.Expected, p.Delivered, "%s: every expected delivery", p.Name)
		assert.EqualValues(t, p.Delivered, p.Latency.Count, p.Name)
	}
	assert.Equal(t, res.Phases[0].Published*40, res.Phases[0].Expected, "a broadcast reaches every connection")
	assert.Zero(t, res.UnexpectedFrames)
	assert.Positive(t, res.LiveKiB)
	var out bytes.Buffer
	require.NoError(t, res.WriteSummary(&out))
	assert.True(t, strings.Contains(out.String(), "broadcast:"), out.String())

	bad := DefaultWSOptions()
	bad.Connections = 0
	assert.ErrorIs(t, bad.Validate(), ErrInvalidOptions)
}
