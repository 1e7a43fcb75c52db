package jepsen

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// subEpoch is the partition epoch of the hand-made subscriptions.
const subEpoch = 7

// open records subscriber proc opening its stream conn on node.
func (h *hist) open(proc, conn int, node, mode string, from uint64) {
	h.ops = append(h.ops, Op{Type: TypeInvoke, F: FSubscribeOpen, Process: proc, Node: node, Conn: conn, Mode: mode, From: from})
}

// deliver records a response on stream conn of proc carrying ids at
// offsets from first on (as events makes them: what the clean final logs
// hold), with next_offset after the last and credit enough.
func (h *hist) deliver(proc, conn int, node string, first uint64, ids ...string) {
	h.ops = append(h.ops, Op{Type: TypeOK, F: FSubscribe, Process: proc, Node: node, Conn: conn, Epoch: subEpoch,
		Events: events(first, ids...), Next: first + uint64(len(ids)), Credit: 100})
}

// end records the end of stream conn of proc: typ TypeInfo with a mode
// the subscriber chose, or TypeFail with an error reason.
func (h *hist) end(proc, conn int, node, typ, mode string, from uint64) {
	h.ops = append(h.ops, Op{Type: typ, F: FSubscribeEnd, Process: proc, Node: node, Conn: conn, Mode: mode, From: from, Error: mode})
}

// subscribed is the clean history with two subscribers of partition 0
// that pass: one from EARLIEST moving from n1 to n2 on its own, one from
// offset 1 whose node failed, resuming on n1.
func subscribed() *hist {
	h := clean()
	final := append(History(nil), h.ops[len(h.ops)-3:]...)
	h.ops = h.ops[:len(h.ops)-3]
	h.open(100, 1, "n1", SubscribeEarliest, 0)
	h.deliver(100, 1, "n1", 0, "e0", "e1")
	h.end(100, 1, "n1", TypeInfo, SubscribeMoved, 2)
	h.open(100, 2, "n2", SubscribeResume, 2)
	h.deliver(100, 2, "n2", 2, "e2")
	h.deliver(100, 2, "n2", 3, "e4")
	h.open(101, 1, "n3", SubscribeOffset, 1)
	h.deliver(101, 1, "n3", 1, "e1", "e2")
	h.end(101, 1, "n3", TypeFail, "Unavailable", 3)
	h.open(101, 2, "n1", SubscribeResume, 3)
	h.deliver(101, 2, "n1", 3, "e4")
	h.ops = append(h.ops, final...)
	h.end(100, 2, "n2", TypeInfo, SubscribeCaughtUp, 4)
	h.end(101, 2, "n1", TypeInfo, SubscribeCaughtUp, 4)
	return h
}

func TestSubscriptionsCheckerPassesCleanHistory(t *testing.T) {
	h := subscribed().history()
	for _, v := range Check(h) {
		require.Truef(t, v.OK(), "%s: %s %v %s", v.Name, v.Status, v.Counterexamples, v.Note)
	}
	v := verdictOf(t, h, CheckSubscriptions)
	require.Equal(t, StatusPass, v.Status)
	require.Contains(t, v.Note, "2 subscribers, 7 events delivered over 4 streams (2 reconnects: Unavailable 1, moved 1), 2 of them caught up")
	sum := Summarize(h, Check(h))
	require.Equal(t, 7, sum.SubscribedEvents)
	require.Equal(t, 2, sum.SubscribeReconnects)
	require.Contains(t, sum.String(), "7 events to subscribers (2 reconnects)")
	var report strings.Builder
	require.NoError(t, WriteReport(&report, Report{Seed: 1, Nodes: 3, Summary: sum, Verdicts: Check(h)}, h))
	require.Contains(t, report.String(), "Events delivered to subscribers per second")
	require.Contains(t, report.String(), "7 events to subscribers (2 reconnects)")

	// A subscriber still receiving when the harness stopped waiting is
	// not judged.
	cut := subscribed()
	cut.ops = cut.ops[:len(cut.ops)-1]
	cut.end(101, 2, "n1", TypeInfo, SubscribeCatchingUp, 3)
	v = verdictOf(t, cut.history(), CheckSubscriptions)
	require.Equal(t, StatusPass, v.Status, "%+v", v)
	require.Contains(t, v.Note, "1 of them caught up with the converged log, 1 still receiving when the harness stopped waiting (not judged)")

	// Without subscribers the checker is skipped.
	require.Equal(t, StatusSkipped, verdictOf(t, clean().history(), CheckSubscriptions).Status)
}

// A gap that an OFFSET_OUT_OF_RANGE answer explains (retention removed
// the offsets below its low watermark) passes, and the acknowledged
// events in it are not required.
func TestSubscriptionsCheckerAcceptsExplainedGap(t *testing.T) {
	h := clean()
	final := append(History(nil), h.ops[len(h.ops)-3:]...)
	h.ops = h.ops[:len(h.ops)-3]
	h.open(100, 1, "n1", SubscribeOffset, 0)
	h.deliver(100, 1, "n1", 0, "e0")
	h.end(100, 1, "n1", TypeInfo, SubscribeStalled, 1)
	h.open(100, 2, "n2", SubscribeResume, 1)
	h.ops = append(h.ops, Op{Type: TypeFail, F: FSubscribeEnd, Process: 100, Node: "n2", Conn: 2, Mode: "OFFSET_OUT_OF_RANGE", From: 1, LowWatermark: 3, HighWatermark: 4})
	h.open(100, 3, "n3", SubscribeResume, 3)
	h.deliver(100, 3, "n3", 3, "e4")
	h.ops = append(h.ops, final...)
	v := verdictOf(t, h.history(), CheckSubscriptions)
	require.Equal(t, StatusPass, v.Status, "%+v", v)
	require.Contains(t, v.Note, "1 gaps explained by retention")
}

// On a topic with retention (volume mode's retained topic), events
// received below the final logs' low watermark are not compared, a
// subscriber moved up by an out-of-range answer passes, and the verdict
// is reported under the live topic's checker with the topic named.
func TestSubscriptionsCheckerRetainedTopic(t *testing.T) {
	const topic = retainedTopicName
	evs := events(0, "r0", "r1", "r2", "r3")
	var h History
	add := func(op Op) { op.Topic, op.Index = topic, len(h); h = append(h, op) }
	add(Op{Type: TypeOK, F: FProduce, Tenant: "a", EventID: "r3", Offset: 3, Sequence: 4})
	add(Op{Type: TypeInvoke, F: FSubscribeOpen, Process: 100, Node: "n1", Conn: 1, Mode: SubscribeEarliest})
	add(Op{Type: TypeOK, F: FSubscribe, Process: 100, Node: "n1", Conn: 1, Epoch: subEpoch, Events: evs, Next: 4, Credit: 10})
	add(Op{Type: TypeInvoke, F: FSubscribeOpen, Process: 101, Node: "n2", Conn: 1, Mode: SubscribeOffset, From: 0})
	add(Op{Type: TypeFail, F: FSubscribeEnd, Process: 101, Node: "n2", Conn: 1, Mode: "OFFSET_OUT_OF_RANGE", From: 0, LowWatermark: 2, HighWatermark: 4})
	add(Op{Type: TypeInvoke, F: FSubscribeOpen, Process: 101, Node: "n3", Conn: 2, Mode: SubscribeResume, From: 2})
	add(Op{Type: TypeOK, F: FSubscribe, Process: 101, Node: "n3", Conn: 2, Epoch: subEpoch, Events: evs[2:], Next: 4, Credit: 10, LowWatermark: 2})
	for _, n := range []string{"n1", "n2", "n3"} {
		add(Op{Type: TypeOK, F: FFinalRead, Node: n, LowWatermark: 2, Events: evs[2:]})
	}
	v := verdictOf(t, h, CheckSubscriptions)
	require.Equal(t, StatusPass, v.Status, "%+v", v)
	require.Contains(t, v.Note, "topic "+topic+": 2 subscribers")
	require.Contains(t, v.Note, "1 gaps explained by retention")
	require.Contains(t, v.Note, "2 events received below the final log's low watermark")

	// The same subscriber receiving another event than the final log's
	// above its low watermark fails, named with its topic.
	bad := append(History(nil), h...)
	bad[2].Events = events(0, "r0", "r1", "r2", "x3")
	v = verdictOf(t, bad, CheckSubscriptions)
	require.Equal(t, StatusFail, v.Status, "%+v", v)
	require.Contains(t, v.Counterexamples[0], "topic "+topic+": ")
}

// Each case breaks the subscribed history in one way; the subscriptions
// checker must fail it with a counterexample that says so.
func TestSubscriptionsCheckerReportsViolations(t *testing.T) {
	// base is the clean history up to (not including) the final logs;
	// finish appends them.
	base := func() (*hist, func()) {
		h := clean()
		final := append(History(nil), h.ops[len(h.ops)-3:]...)
		h.ops = h.ops[:len(h.ops)-3]
		return h, func() { h.ops = append(h.ops, final...) }
	}
	cases := []struct {
		name  string
		want  string // in a counterexample
		build func() *hist
	}{
		{"gap across a reconnect", "delivers offset 3 when 2 was next: 1 offsets skipped", func() *hist {
			h, finish := base()
			h.open(100, 1, "n1", SubscribeEarliest, 0)
			h.deliver(100, 1, "n1", 0, "e0", "e1")
			h.end(100, 1, "n1", TypeFail, "Unavailable", 2)
			h.open(100, 2, "n2", SubscribeResume, 2)
			h.deliver(100, 2, "n2", 3, "e4") // offset 2 never delivered
			finish()
			return h
		}},
		{"repeat after a resume", "delivers offset 1 again or out of order", func() *hist {
			h, finish := base()
			h.open(100, 1, "n1", SubscribeEarliest, 0)
			h.deliver(100, 1, "n1", 0, "e0", "e1")
			h.end(100, 1, "n1", TypeInfo, SubscribeMoved, 2)
			h.open(100, 2, "n2", SubscribeResume, 2)
			h.deliver(100, 2, "n2", 1, "e1", "e2", "e4") // served from 1, not 2
			finish()
			return h
		}},
		{"out of order within a stream", "delivers offset 0 again or out of order", func() *hist {
			h, finish := base()
			h.open(100, 1, "n1", SubscribeOffset, 0)
			op := Op{Type: TypeOK, F: FSubscribe, Process: 100, Node: "n1", Conn: 1, Epoch: subEpoch, Credit: 100, Next: 2,
				Events: []Observed{events(1, "e1")[0], events(0, "e0")[0]}}
			h.ops = append(h.ops, op)
			finish()
			return h
		}},
		{"content differs from the final log", "the final log of n1 has", func() *hist {
			h, finish := base()
			h.open(100, 1, "n1", SubscribeOffset, 0)
			h.deliver(100, 1, "n1", 0, "e0", "e1", "e9") // e2 at offset 2 in the final logs
			finish()
			return h
		}},
		{"payload digest differs from the final log", "the final log of n1 has", func() *hist {
			h, finish := base()
			h.open(100, 1, "n1", SubscribeOffset, 0)
			h.deliver(100, 1, "n1", 0, "e0", "e1")
			h.ops[len(h.ops)-1].Events[1].Digest = 0xbad
			finish()
			for i := len(h.ops) - 3; i < len(h.ops); i++ {
				h.ops[i].Events = append([]Observed(nil), h.ops[i].Events...)
				h.ops[i].Events[1].Digest = 0x600d
			}
			return h
		}},
		{"acknowledged event skipped", "without receiving acknowledged e1", func() *hist {
			h, finish := base()
			h.open(100, 1, "n1", SubscribeOffset, 0)
			h.deliver(100, 1, "n1", 0, "e0")
			h.deliver(100, 1, "n1", 2, "e2", "e4") // e1, acknowledged at 1, passed
			finish()
			return h
		}},
		{"EARLIEST starts late", "begins at offset 1, above the low watermark 0", func() *hist {
			h, finish := base()
			h.open(100, 1, "n1", SubscribeEarliest, 0)
			h.deliver(100, 1, "n1", 1, "e1", "e2", "e4")
			finish()
			return h
		}},
		{"more events than credit", "only 1 were granted", func() *hist {
			h, finish := base()
			h.open(100, 1, "n1", SubscribeOffset, 0)
			h.deliver(100, 1, "n1", 0, "e0", "e1")
			h.ops[len(h.ops)-1].Credit = 1
			finish()
			return h
		}},
		{"resume answered out of range", "answered out of range", func() *hist {
			h, finish := base()
			h.open(100, 1, "n1", SubscribeOffset, 0)
			h.deliver(100, 1, "n1", 0, "e0", "e1")
			h.end(100, 1, "n1", TypeInfo, SubscribeMoved, 2)
			h.open(100, 2, "n3", SubscribeResume, 2)
			h.ops = append(h.ops, Op{Type: TypeFail, F: FSubscribeEnd, Process: 100, Node: "n3", Conn: 2, Mode: "OFFSET_OUT_OF_RANGE", From: 2, LowWatermark: 0, HighWatermark: 1})
			finish()
			return h
		}},
		{"stream ended out of range at a served offset", "the stream, after delivering 2 events, ended out of range at offset 2 [0, 0)", func() *hist {
			h, finish := base()
			h.open(100, 1, "n1", SubscribeOffset, 0)
			h.deliver(100, 1, "n1", 0, "e0", "e1")
			h.ops = append(h.ops, Op{Type: TypeFail, F: FSubscribeEnd, Process: 100, Node: "n1", Conn: 1, Mode: "OFFSET_OUT_OF_RANGE", From: 2})
			finish()
			return h
		}},
		{"epoch changed on a live topic", "EPOCH_CHANGED", func() *hist {
			h, finish := base()
			h.open(100, 1, "n1", SubscribeOffset, 0)
			h.deliver(100, 1, "n1", 0, "e0")
			h.end(100, 1, "n1", TypeInfo, SubscribeMoved, 1)
			h.open(100, 2, "n2", SubscribeResume, 1)
			h.ops = append(h.ops, Op{Type: TypeFail, F: FSubscribeEnd, Process: 100, Node: "n2", Conn: 2, Mode: "EPOCH_CHANGED", From: 1, Epoch: 9})
			finish()
			return h
		}},
		{"behind after the cluster converged", "while short of the end of the converged log (offset 4)", func() *hist {
			h, finish := base()
			h.open(100, 1, "n1", SubscribeOffset, 0)
			h.deliver(100, 1, "n1", 0, "e0")
			finish()
			h.ops = append(h.ops, Op{Type: TypeInfo, F: FSubscribeEnd, Mode: SubscribeBehind, Process: 100, Conn: 1, From: 1, HighWatermark: 4})
			return h
		}},
		{"heartbeat next_offset ahead of the events", "heartbeat op", func() *hist {
			h, finish := base()
			h.open(100, 1, "n1", SubscribeOffset, 0)
			h.deliver(100, 1, "n1", 0, "e0")
			h.ops = append(h.ops, Op{Type: TypeOK, F: FSubscribe, Mode: SubscribeHeartbeat, Process: 100, Node: "n1", Conn: 1, Epoch: subEpoch, Next: 3})
			finish()
			return h
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := verdictOf(t, tc.build().history(), CheckSubscriptions)
			require.Equal(t, StatusFail, v.Status, "%+v", v)
			require.Positive(t, v.Violations)
			found := false
			for _, c := range v.Counterexamples {
				found = found || strings.Contains(c, tc.want)
			}
			require.Truef(t, found, "no counterexample says %q: %v", tc.want, v.Counterexamples)
			t.Log(v.Counterexamples)
		})
	}
}
