package jepsen

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// retainedHistory is a clean volume history of both topics: a live one,
// and volumeHistory's ops again (their ids prefixed "r") moved to the
// retained topic, every final log cut at its node's low watermark (the
// nodes' differ, as when retention trims between two final reads), and a
// read of an acknowledged offset that retention had removed, answered out
// of range below the low watermark (the last op).
func retainedHistory(seed uint64, nodes []string) History {
	h := volumeHistory(seed, 100, 50, 3, nodes)
	for _, op := range volumeHistory(seed+1, 300, 100, 3, nodes) {
		op.Topic = retainedTopicName
		op.EventID = "r" + op.EventID
		op.Events = append([]Observed(nil), op.Events...)
		for k := range op.Events {
			op.Events[k].EventID = "r" + op.Events[k].EventID
		}
		if op.F == FFinalRead {
			// n1 was read first: retention trimmed once more before n2
			// and n3.
			low := uint64(len(op.Events)) / 3
			if op.Node != nodes[0] {
				low += 50
			}
			op.Events = op.Events[low:]
			op.LowWatermark, op.HighWatermark = low, low+uint64(len(op.Events))
		}
		h = append(h, op)
	}
	h = append(h, Op{Type: TypeFail, F: FRead, Topic: retainedTopicName, Node: nodes[1], Mode: ModeAcked, From: 10, LowWatermark: 500, HighWatermark: 9000,
		Error: "rpc error: code = OutOfRange desc = client: offset 10 out of range [500, 9000)"})
	for i := range h {
		h[i].Index = i
	}
	return h
}

// TestRetainedChecker: the retained topic's clean history passes every
// checker (events absent below a final log's low watermark, tenants
// whose first retained sequence is above 1, a read out of range below the
// low watermark), and each hand-made violation is reported by the checker
// meant for it.
func TestRetainedChecker(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	nodes := []string{"n1", "n2", "n3"}
	base := retainedHistory(seed, nodes)
	clone := func() History {
		h := append(History(nil), base...)
		for i := range h {
			h[i].Events = append([]Observed(nil), h[i].Events...)
		}
		return h
	}
	finalOf := func(h History, node string, p uint32) *Op {
		for i := range h {
			if h[i].F == FFinalRead && h[i].Topic == retainedTopicName && h[i].Node == node && h[i].Partition == p {
				return &h[i]
			}
		}
		t.Fatalf("no final read of %s partition %d", node, p)
		return nil
	}
	verdicts := func(h History) map[string]Verdict {
		m := map[string]Verdict{}
		for _, v := range Check(h) {
			m[v.Name] = v
		}
		return m
	}

	clean := verdicts(base)
	for name, v := range clean {
		require.Truef(t, v.OK(), "clean history: %s %s %v %s", name, v.Status, v.Counterexamples, v.Note)
	}
	require.Equal(t, StatusPass, clean[CheckRetained].Status)
	require.Contains(t, clean[CheckRetained].Note, fmt.Sprintf("%d acknowledged events", 300*100))
	require.Contains(t, clean[CheckAckedReadable].Note, "1 of them answered out of range below")

	cases := []struct {
		name   string
		damage func(h History)
		want   []string
	}{
		{"an acknowledged event missing above the low watermark", func(h History) {
			f := finalOf(h, "n2", 1)
			f.Events = append(f.Events[:10], f.Events[11:]...)
		}, []string{CheckRetained}},
		{"a final log starting above its low watermark", func(h History) {
			f := finalOf(h, "n1", 0)
			f.LowWatermark -= 5
		}, []string{CheckRetained}},
		{"replicas that differ in their common range", func(h History) {
			finalOf(h, "n3", 2).Events[3].Sequence += 7
		}, []string{CheckRetained, CheckTenantSeq}},
		{"replicas that end at different offsets", func(h History) {
			f := finalOf(h, "n3", 1)
			f.Events = f.Events[:len(f.Events)-1]
		}, []string{CheckRetained}},
		{"an event stored twice", func(h History) {
			for _, n := range nodes {
				f := finalOf(h, n, 0)
				e := f.Events[5]
				e.Offset, e.Sequence = f.Events[len(f.Events)-1].Offset+1, 1<<40
				f.Events = append(f.Events, e)
			}
		}, []string{CheckDuplicate}},
		{"two events at one offset", func(h History) {
			finalOf(h, "n2", 2).Events[7].EventID = "intruder"
		}, []string{CheckPosition, CheckRetained}},
		{"an acknowledged offset out of range above the high watermark", func(h History) {
			op := &h[len(h)-1]
			op.From, op.LowWatermark, op.HighWatermark = 9500, 500, 9000
		}, []string{CheckAckedReadable}},
		{"an acknowledged offset out of range inside the retained range", func(h History) {
			op := &h[len(h)-1]
			op.From = 600
		}, []string{CheckAckedReadable}},
		{"a read by sequence that starts below the sequence asked for", func(h History) {
			f := finalOf(h, "n1", 0)
			e := f.Events[len(f.Events)-1]
			h[len(h)-1] = Op{Index: len(h) - 1, Type: TypeOK, F: FRead, Topic: retainedTopicName, Node: "n1", Mode: ModeSequence, Tenant: e.Tenant,
				From: e.Sequence + 1, LowWatermark: f.LowWatermark, Events: []Observed{e}}
		}, []string{CheckTenantSeq}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := clone()
			c.damage(h)
			got := verdicts(h)
			for _, name := range c.want {
				require.Equalf(t, StatusFail, got[name].Status, "%s: %s did not fire (seed %d)", c.name, name, seed)
			}
		})
	}
}

// TestLiveTopicStaysStrict: the live topic has no retention, so a final
// log of it with a low watermark above 0 still fails no-lost-write; the
// allowance is the retained topic's only.
func TestLiveTopicStaysStrict(t *testing.T) {
	h := volumeHistory(uint64(time.Now().UnixNano()), 100, 50, 3, []string{"n1", "n2", "n3"})
	for i := range h {
		if h[i].F == FFinalRead && h[i].Node == "n1" {
			h[i].Events = h[i].Events[10:]
			h[i].LowWatermark = 10
		}
	}
	require.Equal(t, StatusFail, verdictOf(t, h, CheckLostWrite).Status)
	require.Equal(t, StatusSkipped, verdictOf(t, h, CheckRetained).Status)
}
