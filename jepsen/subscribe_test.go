package jepsen

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/server/proccluster"
)

// TestSubscribersUnderFaults runs subscribers (two a partition: one from
// EARLIEST, one joining later at an acknowledged offset) against three
// real nodes for 15 s of faults (seed 4: pause:leader, kill:one) and
// requires them to deliver, to reconnect, to reach the end of the log
// once the cluster has healed, and every checker, the subscriptions one
// included, to pass.
func TestSubscribersUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster for about 25 s")
	}
	const seed = 4
	bin := proccluster.TestBinary(t)
	var progress bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := Run(ctx, Options{
		Binary: bin, OutDir: t.TempDir(), Nodes: 3, Duration: 15 * time.Second, Seed: seed,
		Nemeses: []string{NemesisKill, NemesisPause, NemesisPartition}, Subscribers: 2, Progress: &progress,
	})
	t.Logf("seed %d\n%s", seed, progress.String())
	require.NoError(t, err)
	var verdicts bytes.Buffer
	WriteVerdicts(&verdicts, res.Verdicts)
	t.Logf("%s%s", verdicts.String(), res.Summary)
	require.True(t, res.OK(), "failing: %v", res.Summary.Failing)
	require.Positive(t, res.Summary.Faults, "schedule %v", res.Schedule)
	for _, v := range res.Verdicts {
		if v.Name == CheckSubscriptions {
			require.Equal(t, StatusPass, v.Status, "%+v", v)
			require.Contains(t, v.Note, "6 of them caught up with the converged log", "every subscriber reaches the end once healed")
		}
	}
	require.Positive(t, res.Summary.SubscribedEvents)
	require.Positive(t, res.Summary.SubscribeReconnects)
	// Every acknowledged event of the live topic reached the subscribers
	// that passed its offset; at least the EARLIEST ones saw most of them.
	require.Greater(t, res.Summary.SubscribedEvents, res.Summary.Acknowledged/2)
	// Content was compared: the final logs and the subscriptions carry
	// digests.
	digests := map[string]bool{}
	for _, op := range res.History {
		if (op.F == FFinalRead || op.F == FSubscribe) && len(op.Events) > 0 && op.Events[0].Digest != 0 {
			digests[op.F] = true
		}
	}
	require.Equal(t, map[string]bool{FFinalRead: true, FSubscribe: true}, digests)
}
