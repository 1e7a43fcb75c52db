package jepsen

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// floodBatch records a flood request of count events (ids
// BatchEventID(prefix, k)) that ended as typ, acknowledged at offsets
// from offset of partition 0.
func (h *hist) floodBatch(prefix, typ, mode string, count int, offset uint64) {
	h.ops = append(h.ops, Op{Type: typ, F: FProduceBatch, Process: floodProcessBase, Topic: floodTopicName, Tenant: floodTenant,
		EventID: prefix, Count: count, Offset: offset, Sequence: offset + 1, Mode: mode, Time: ms(50), LatencyNs: ms(1)})
}

// floodFinal records node's final log of the flood topic's partition 0.
func (h *hist) floodFinal(node string, ids ...string) {
	evs := events(0, ids...)
	for k := range evs {
		evs[k].Tenant = floodTenant
	}
	h.ops = append(h.ops, Op{Type: TypeOK, F: FFinalRead, Process: -2, Node: node, Topic: floodTopicName, Time: ms(100), Mode: ModeOffset, Events: evs})
}

// floodClean is the clean history with a flood beside it: two requests
// acknowledged (f0, f2), one refused for its quota (f1), one of unknown
// outcome that was applied (f3) and one of unknown outcome that was not
// (f4).
func floodClean(logs func(h *hist, node string)) *hist {
	h := clean()
	h.floodBatch("f0", TypeOK, "", 2, 0)
	h.floodBatch("f1", TypeFail, floodRefused, 2, 0)
	h.floodBatch("f2", TypeOK, "", 2, 2)
	h.floodBatch("f3", TypeInfo, "", 2, 0)
	h.floodBatch("f4", TypeInfo, "", 2, 0)
	for _, n := range []string{"n1", "n2", "n3"} {
		logs(h, n)
	}
	return h
}

var floodLogClean = func(h *hist, node string) {
	h.floodFinal(node, "f0.0", "f0.1", "f2.0", "f2.1", "f3.0", "f3.1")
}

func TestFloodCheckerPassesAndIsSkippedWithoutFlood(t *testing.T) {
	for _, v := range Check(floodClean(floodLogClean).history()) {
		require.Truef(t, v.OK(), "%s: %s %v %s", v.Name, v.Status, v.Counterexamples, v.Note)
	}
	v := verdictOf(t, floodClean(floodLogClean).history(), CheckFlood)
	require.Equal(t, StatusPass, v.Status)
	require.Contains(t, v.Note, "4 events acknowledged, 1 requests refused (1 throttled), 4 events of unknown outcome (2 of them in the log)")

	require.Equal(t, StatusSkipped, verdictOf(t, clean().history(), CheckFlood).Status)
}

// Each case breaks the flood's promise in one way on one node; the flood
// checker must report it (and the shared checkers named, when they see it
// too).
func TestFloodCheckerReportsViolations(t *testing.T) {
	cases := []struct {
		name  string
		log   []string // n2's final log
		also  string   // another checker that must fail, or ""
		where string   // in the flood checker's counterexample
	}{
		{"refused event in the log", []string{"f0.0", "f0.1", "f2.0", "f2.1", "f3.0", "f3.1", "f1.0"}, CheckFailedNotRead, "was refused"},
		{"acknowledged event missing", []string{"f0.0", "f0.1", "f2.0", "f3.0", "f3.1"}, CheckConvergence, "missing from the final log of n2"},
		{"acknowledged event twice", []string{"f0.0", "f0.1", "f2.0", "f2.1", "f0.0", "f3.0", "f3.1"}, CheckDuplicate, "twice in the final log of n2"},
		{"unknown outcome twice", []string{"f0.0", "f0.1", "f2.0", "f2.1", "f3.0", "f3.1", "f3.0"}, CheckDuplicate, "twice in the final log of n2"},
		{"event never sent", []string{"f0.0", "f0.1", "f2.0", "f2.1", "f3.0", "f3.1", "x.0"}, CheckConvergence, "never sent by the flood"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := floodClean(func(h *hist, node string) {
				if node == "n2" {
					h.floodFinal(node, tc.log...)
					return
				}
				floodLogClean(h, node)
			}).history()
			v := verdictOf(t, h, CheckFlood)
			require.Equal(t, StatusFail, v.Status, "%v", v.Counterexamples)
			require.Contains(t, v.Counterexamples[0], tc.where)
			if tc.also != "" {
				require.Equal(t, StatusFail, verdictOf(t, h, tc.also).Status)
			}
		})
	}
}
