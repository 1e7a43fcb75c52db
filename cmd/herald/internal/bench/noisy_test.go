package bench

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/heraldtest"
	"github.com/heraldlog/herald/client/wire"
)

func TestNoisyOptionsValidateReportsEveryProblem(t *testing.T) {
	o := DefaultNoisyOptions()
	require.NoError(t, o.Validate())

	o.QuotaEventsPerSec = 0
	o.SteadyRate = -1
	o.Phase = 10 * time.Millisecond
	o.Flooders = 0
	o.FloodBatch = batchMax + 1
	o.FloodPause = -time.Second
	o.Warmup = -time.Second
	o.Replication = 5
	o.HTTPAddrs = []string{"127.0.0.1:1"}
	err := o.Validate()
	require.ErrorIs(t, err, ErrInvalidOptions)
	for _, flag := range []string{"--quota 0", "--steady-rate -1", "--phase 10ms", "--flooders 0", "--flood-batch 10001", "--flood-pause -1s", "--warmup -1s", "--replication 5", "--http-addrs needs --server"} {
		assert.Contains(t, err.Error(), flag)
	}
}

func TestParseStatusKiB(t *testing.T) {
	status := "Name:\therald\nVmHWM:\t  65432 kB\nVmRSS:\t   1234 kB\nThreads:\t12\n"
	assert.EqualValues(t, 1234, parseStatusKiB(status, "VmRSS"))
	assert.EqualValues(t, 65432, parseStatusKiB(status, "VmHWM"))
	assert.EqualValues(t, -1, parseStatusKiB(status, "VmSwap"))
	assert.EqualValues(t, -1, parseStatusKiB("VmRSS: lots kB\n", "VmRSS"))
}

// TestRunNoisyAgainstFakeCluster runs the scenario against the fake
// cluster, whose node refuses four of every five of A's requests with
// THROTTLED (limit tenant_quota): every event of A is counted once, the
// refusals by their limit, B..E are all acknowledged in both phases, and
// the plot is written as well-formed SVG.
func TestRunNoisyAgainstFakeCluster(t *testing.T) {
	fake := heraldtest.NewCluster(t, 1)
	node := fake.Nodes[0]
	var aRequests atomic.Int64
	node.Handle("Produce", func(ctx context.Context, req any) (any, error) {
		r := req.(*heraldpb.ProduceRequest)
		if strings.HasSuffix(r.GetEvents()[0].GetTenantId(), "-A") && aRequests.Add(1)%5 != 0 {
			return nil, wire.QuotaExceeded(r.GetEvents()[0].GetTenantId(), "events_per_sec", 100)
		}
		return node.Default(ctx, req)
	})
	o := DefaultNoisyOptions()
	o.Servers = fake.Addrs()
	o.Replication = 1
	o.Phase = time.Second
	o.Warmup = 200 * time.Millisecond
	o.SteadyRate = 50
	o.Flooders = 2
	o.FloodBatch = 10
	o.FloodPause = 5 * time.Millisecond
	o.Timeout = 5 * time.Second
	o.SVGPath = filepath.Join(t.TempDir(), "noisy.svg")

	res, err := RunNoisy(t.Context(), o, nil)
	require.NoError(t, err)
	require.Len(t, res.Phases, 2)
	for _, ph := range res.Phases {
		assert.Equal(t, ph.Steady.Sent, ph.Steady.Acked, ph.Name)
		assert.EqualValues(t, 4*50, ph.Steady.Sent, "%s: 4 tenants x 50 events/s x 1 s", ph.Name)
		assert.Len(t, ph.Tenants, 4)
		assert.Positive(t, ph.Steady.Latency.P99)
	}
	assert.Nil(t, res.Phases[0].Flood, "A is off in the first phase")
	f := res.Phases[1].Flood
	require.NotNil(t, f)
	assert.Positive(t, f.Admitted)
	assert.Positive(t, f.Refused)
	assert.Equal(t, f.Attempted, f.Admitted+f.Refused+f.Failed+f.Cut)
	assert.Equal(t, map[string]int64{"tenant_quota": f.Refused}, f.RefusedByLimit)
	assert.EqualValues(t, 2000, f.QuotaEventsPerSec)
	assert.Len(t, res.Seconds, 2)
	assert.Zero(t, res.Seconds[0].AAttempted, "A does not send while it is off")
	assert.Empty(t, res.Nodes, "no RSS without --http-addrs")
	assert.Contains(t, strings.Join(res.Notes, "\n"), "without --http-addrs")

	svg, err := os.ReadFile(o.SVGPath)
	require.NoError(t, err)
	assertWellFormedXML(t, svg)
	assert.Contains(t, string(svg), "A flooding")

	var out bytes.Buffer
	require.NoError(t, res.WriteSummary(&out))
	assert.Regexp(t, `(?m)^A flooding\s+B\.\.E\s+200\s+200\s+0\s`, out.String())
	assert.Contains(t, out.String(), "refused by tenant_quota")
}

func TestThrottleLimitLooksPastOtherErrors(t *testing.T) {
	joined := errors.Join(
		fmt.Errorf("produce to t/0: %w", wire.NoLeader("partition 0")),
		fmt.Errorf("produce to t/1: %w", wire.QuotaExceeded("a", "events_per_sec", 10)),
	)
	assert.Equal(t, "tenant_quota", throttleLimit(joined))
	assert.Equal(t, "partition_queue", throttleLimit(wire.QueueFull(10, 5, 1)))
	assert.Equal(t, "unnamed", throttleLimit(wire.NoLeader("x")))
}

func TestRenderNoisySVGBreaksTheLineOnSecondsWithoutAcks(t *testing.T) {
	res := &NoisyResult{SteadyRate: 200, Phases: []NoisyPhase{{}, {Flood: &NoisyFlood{QuotaEventsPerSec: 100, AdmittedPerSec: 100}}}}
	for s := range 6 {
		sec := NoisySecond{Second: s, SteadyP50: 2, SteadyP99: 5, SteadyAck: 10, AAdmitted: int64(30 * s)}
		if s == 3 {
			sec.SteadyP50, sec.SteadyP99, sec.SteadyAck = -1, -1, 0
		}
		res.Seconds = append(res.Seconds, sec)
	}
	svg := renderNoisySVG(res)
	assertWellFormedXML(t, svg)
	// p50 and p99 each in two pieces around second 3, A's rate in one.
	assert.Equal(t, 5, bytes.Count(svg, []byte("<polyline")))
}

// assertWellFormedXML decodes every token of b.
func assertWellFormedXML(t *testing.T, b []byte) {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(b))
	for {
		_, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return
		}
		require.NoError(t, err)
	}
}
