package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldtest"
	"github.com/heraldlog/herald/server/proccluster"
)

// fakeOptions runs scenario against the in-process fake cluster, whose
// leaders never move to their preferred replica (so the wait for that is
// cut short).
func fakeOptions(fake *heraldtest.Cluster, scenario Scenario) Options {
	opts := DefaultOptions(scenario)
	opts.Servers = fake.Addrs()
	opts.Count = 3_000
	opts.Batch = 100
	opts.Producers = 2
	opts.SizeBytes = 32
	opts.Timeout = 5 * time.Second
	opts.preferredWait = time.Millisecond
	return opts
}

// topicEvents returns every event the fake holds in its one bench topic,
// per partition.
func topicEvents(t *testing.T, fake *heraldtest.Cluster, topic string, partitions int) [][]*client.Event {
	t.Helper()
	out := make([][]*client.Event, partitions)
	for p := range out {
		out[p] = fake.Events(topic, uint32(p))
	}
	return out
}

func TestRunProduceAgainstFakeCluster(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sync    bool
		clients ClientMode
	}{
		{"async per-producer clients", false, ClientsPerProducer},
		{"async shared client", false, ClientsShared},
		{"sync", true, ClientsPerProducer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := heraldtest.NewCluster(t, 3)
			opts := fakeOptions(fake, ScenarioProduce)
			opts.Sync, opts.Clients = tc.sync, tc.clients
			if tc.sync {
				opts.Count = 300
			}
			res, err := Run(t.Context(), opts, nil)
			require.NoError(t, err)

			assert.Equal(t, ScenarioProduce, res.Scenario)
			assert.Equal(t, opts.Count, res.Events)
			assert.Equal(t, "external", res.Cluster)
			assert.True(t, strings.HasPrefix(res.Topic, "bench-"), res.Topic)
			assert.Greater(t, res.EventsPerSec, 0.0)
			assert.Greater(t, res.P50Ms, 0.0)
			assert.LessOrEqual(t, res.P50Ms, res.P99Ms)
			assert.LessOrEqual(t, res.P99Ms, res.P999Ms)
			assert.Equal(t, float64(cpuUnknown), res.CPUUsPerEvent, "no --http-addrs")
			assert.Contains(t, res.CPUNote, "--http-addrs")
			if tc.sync {
				assert.Equal(t, latencyPerEvent, res.LatencyOf)
				assert.Equal(t, 1, res.Batch)
			} else {
				assert.Equal(t, latencyPerBatch, res.LatencyOf)
			}

			cfg := fake.TopicConfig(res.Topic)
			assert.Nil(t, cfg, "the topic is deleted from an external cluster afterwards")
		})
	}
}

func TestRunProduceSpreadsOverPartitions(t *testing.T) {
	fake := heraldtest.NewCluster(t, 3)
	opts := fakeOptions(fake, ScenarioProduce)
	keepTopics(fake)
	res, err := Run(t.Context(), opts, nil)
	require.NoError(t, err)
	var total int
	for p, events := range topicEvents(t, fake, res.Topic, opts.Partitions) {
		assert.NotEmpty(t, events, "partition %d gets events", p)
		for _, e := range events {
			assert.Len(t, e.GetPayload(), opts.SizeBytes)
			assert.Equal(t, uint32(p), client.PartitionForTenant(e.GetTenantId(), uint32(opts.Partitions)))
		}
		total += len(events)
	}
	assert.Equal(t, int(opts.Count), total)
	assert.True(t, fake.TopicConfig(res.Topic).GetAutoTenants(), "the bench topic accepts any tenant")
}

func TestRunReplayAgainstFakeCluster(t *testing.T) {
	fake := heraldtest.NewCluster(t, 3)
	opts := fakeOptions(fake, ScenarioReplay)
	res, err := Run(t.Context(), opts, nil)
	require.NoError(t, err)
	assert.Equal(t, opts.Count, res.Events, "every produced event read back")
	assert.Equal(t, latencyPerPage, res.LatencyOf)
	assert.Greater(t, res.MBPerSec, 0.0)
	assert.NotContains(t, strings.Join(res.Notes, "\n"), "the topic holds", "the topic holds exactly what was produced")
	assert.Contains(t, strings.Join(res.Notes, "\n"), "not on their preferred node", "the fake never moves a leader")
}

func TestRunE2EAgainstFakeCluster(t *testing.T) {
	fake := heraldtest.NewCluster(t, 3)
	opts := fakeOptions(fake, ScenarioE2E)
	opts.Count = 500
	opts.Rate = 5_000 // 0.1 s of production
	var progress lockedBuffer
	res, err := Run(t.Context(), opts, &progress)
	require.NoError(t, err)
	assert.Equal(t, opts.Count, res.Events, "every event delivered")
	assert.Equal(t, latencyDelivered, res.LatencyOf)
	assert.Equal(t, 5000.0, res.RateTarget)
	assert.Zero(t, res.PeakEventsPerSec, "--rate given: no peak measured")
	assert.NotEmpty(t, res.Notes)
	assert.Contains(t, strings.Join(res.Notes, "\n"), "Subscribe streams")
	assert.Contains(t, progress.String(), "topic "+res.Topic+" created")
}

func TestRunE2EMeasuresPeakWithoutRate(t *testing.T) {
	fake := heraldtest.NewCluster(t, 3)
	opts := fakeOptions(fake, ScenarioE2E)
	opts.Count = 200
	res, err := Run(t.Context(), opts, nil)
	require.NoError(t, err)
	assert.Greater(t, res.PeakEventsPerSec, 0.0)
	assert.InDelta(t, res.PeakEventsPerSec/2, res.RateTarget, 0.1)
	assert.Equal(t, opts.Count, res.Events)
}

func TestRunReadsNodeCPUFromMetrics(t *testing.T) {
	fake := heraldtest.NewCluster(t, 3)
	opts := fakeOptions(fake, ScenarioProduce)
	opts.Count = 1_000
	m := fakeMetrics(t, 5, 0.25)
	opts.HTTPAddrs = []string{strings.TrimPrefix(m.URL, "http://")}
	res, err := Run(t.Context(), opts, nil)
	require.NoError(t, err)
	assert.Equal(t, 0.25, res.CPUSeconds)
	assert.Equal(t, 250.0, res.CPUUsPerEvent) // 0.25 s / 1,000 events
	assert.Empty(t, res.CPUNote)
}

func TestRunFailsOnProduceErrors(t *testing.T) {
	fake := heraldtest.NewCluster(t, 3)
	for _, n := range fake.Nodes {
		n.Handle("Produce", func(context.Context, any) (any, error) { return nil, client.PayloadTooLarge(10, 1) })
	}
	_, err := Run(t.Context(), fakeOptions(fake, ScenarioProduce), nil)
	require.ErrorIs(t, err, client.ErrPayloadTooLarge)
	assert.ErrorContains(t, err, "bench: produce of events")
}

// keepTopics makes the fake refuse DeleteTopic, so that a test can look
// at the bench topic after the run.
func keepTopics(fake *heraldtest.Cluster) {
	for _, n := range fake.Nodes {
		n.Handle("DeleteTopic", func(context.Context, any) (any, error) {
			return nil, client.InvalidArgument("name", "kept by the test")
		})
	}
}

func TestRunUnreachableCluster(t *testing.T) {
	opts := DefaultOptions(ScenarioProduce)
	opts.Servers = []string{proccluster.TestFreeAddr(t)}
	opts.Timeout = 500 * time.Millisecond
	_, err := Run(t.Context(), opts, nil)
	require.ErrorIs(t, err, client.ErrUnavailable)
}
