package jepsen

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// gdeliver records member proc (under generation gen) getting offset of
// partition 0 with delivery count count, carrying id as the clean final
// logs hold it (tenant "a", sequence offset+1).
func (h *hist) gdeliver(proc int, gen, offset uint64, count uint32, id string) {
	h.ops = append(h.ops, Op{Type: TypeOK, F: FGroupDeliver, Process: proc, Name: "m", Offset: offset, Deliveries: count, Generation: gen,
		Events: events(offset, id)})
}

// gsettle records member proc settling offset (mode GroupAckMode or
// GroupNackMode) with the outcome typ.
func (h *hist) gsettle(proc int, gen, offset uint64, mode, typ string) {
	op := Op{Type: TypeInvoke, F: FGroupAck, Process: proc, Name: "m", Offset: offset, Generation: gen, Mode: mode}
	h.ops = append(h.ops, op)
	op.Type = typ
	h.ops = append(h.ops, op)
}

// gstate records the group's final floor on partition 0.
func (h *hist) gstate(floor uint64) {
	h.ops = append(h.ops, Op{Type: TypeOK, F: FGroupState, Process: -3, From: floor, Next: floor, HighWatermark: 4})
}

// grouped is the clean history (final logs e0 e1 e2 e4 at offsets 0-3 of
// partition 0) with a group that passes: member 200 acks offset 0,
// leaves 1 unacknowledged, acks 2; after a rebalance member 201 gets 1
// again (count 2) and acks it, nacks 3 and acks its redelivery; a stale
// copy of 2 already received by member 200 comes after its ack; the
// final floor is the end of the log.
func grouped() *hist {
	h := clean()
	h.gdeliver(200, 1, 0, 1, "e0")
	h.gsettle(200, 1, 0, GroupAckMode, TypeOK)
	h.gdeliver(200, 1, 1, 1, "e1")
	h.gdeliver(200, 1, 2, 1, "e2")
	h.gsettle(200, 1, 2, GroupAckMode, TypeOK)
	h.gdeliver(200, 1, 2, 2, "e2") // sent before the ack was applied
	h.gsettle(200, 1, 2, GroupAckMode, TypeOK)
	h.gsettle(200, 1, 1, GroupAckMode, TypeFail) // fenced: the rebalance came first
	h.gdeliver(201, 2, 1, 2, "e1")
	h.gsettle(201, 2, 1, GroupAckMode, TypeOK)
	h.gdeliver(201, 2, 3, 1, "e4")
	h.gsettle(201, 2, 3, GroupNackMode, TypeOK)
	h.gdeliver(201, 2, 3, 2, "e4")
	h.gsettle(201, 2, 3, GroupAckMode, TypeInfo)
	h.gstate(4)
	return h
}

func TestGroupsCheckerPassesCleanHistory(t *testing.T) {
	h := grouped().history()
	for _, v := range Check(h) {
		require.Truef(t, v.OK(), "%s: %s %v %s", v.Name, v.Status, v.Counterexamples, v.Note)
	}
	v := verdictOf(t, h, CheckGroups)
	require.Equal(t, StatusPass, v.Status)
	require.Contains(t, v.Note, "2 members, 7 deliveries of 4 offsets (3 redeliveries)")
	require.Contains(t, v.Note, "ack fenced 1 ack ok 4 ack unknown 1 nack ok 1], 2 generations (0 rejoins seen by members)")

	// An ok-acked offset above the floor, an earlier one still pending,
	// is consistent: here the ack of offset 1 had an unknown outcome and
	// was not applied, offset 2 stays acked above the floor.
	pending := grouped()
	for i, op := range pending.ops {
		if op.F == FGroupAck && op.Process == 201 && op.Offset == 1 && op.Type == TypeOK {
			pending.ops[i].Type = TypeInfo
		}
	}
	pending.ops = pending.ops[:len(pending.ops)-1]
	pending.gstate(1)
	v = verdictOf(t, pending.history(), CheckGroups)
	require.Equal(t, StatusPass, v.Status, "%+v", v)
	require.Contains(t, v.Note, "1 ok-acked offsets above a final floor")

	// Without members the checker is skipped; without a final state it
	// cannot decide.
	require.Equal(t, StatusSkipped, verdictOf(t, clean().history(), CheckGroups).Status)
	noState := grouped()
	noState.ops = noState.ops[:len(noState.ops)-1]
	require.Equal(t, StatusUnknown, verdictOf(t, noState.history(), CheckGroups).Status)
}

// Each rule broken by hand: the checker fails with a message naming it.
func TestGroupsCheckerFindsViolations(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(h *hist)
		want  string
	}{
		{"redelivered after an ok ack", func(h *hist) {
			h.gdeliver(202, 3, 0, 2, "e0") // another member, after 200's ok ack of 0
		}, "delivers offset 0 of partition 0 again (count 2) after its ack returned ok"},
		{"redelivered to the acking member long after", func(h *hist) {
			for k := range groupBufferedMessagesMax(1, false) {
				h.gdeliver(200, 1, 3, uint32(10+k), "e4")
			}
			h.gdeliver(200, 1, 0, 3, "e0")
		}, "delivers offset 0 of partition 0 again (count 3) after its ack returned ok"},
		{"offset below the floor never delivered", func(h *hist) {
			var kept History
			for _, op := range h.ops {
				if (op.F != FGroupDeliver && op.F != FGroupAck) || op.Offset != 3 {
					kept = append(kept, op)
				}
			}
			h.ops = kept
		}, "offset 3 is below the group's final floor 4 but was never delivered: skipped"},
		{"delivered event differs from the log", func(h *hist) {
			h.gdeliver(201, 2, 2, 3, "e9")
		}, "delivers at offset 2 of partition 0"},
		{"ok ack lost", func(h *hist) {
			h.ops = h.ops[:len(h.ops)-1]
			h.gstate(2)
		}, "offset 2 was acknowledged ok (op"},
		{"delivery count repeated", func(h *hist) {
			h.gdeliver(201, 2, 3, 2, "e4")
		}, "with count 2, as op"},
		{"delivery count falls", func(h *hist) {
			h.gdeliver(201, 2, 3, 3, "e4")
			h.gdeliver(201, 2, 3, 1, "e4")
		}, "with count 1, after op"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := grouped()
			tc.build(h)
			v := verdictOf(t, h.history(), CheckGroups)
			require.Equal(t, StatusFail, v.Status, "%+v", v)
			require.NotEmpty(t, v.Counterexamples)
			found := false
			for _, c := range v.Counterexamples {
				found = found || strings.Contains(c, tc.want)
			}
			require.Truef(t, found, "want %q in %v", tc.want, v.Counterexamples)
		})
	}
}

// The drain member takes bigger batches (groupDrainBatchEvents), so a
// copy it already held when its ack returned may come later than a
// member's could; rule (a) allows that many to the drain only, and no
// more.
func TestGroupsCheckerDrainBuffersItsBatchSize(t *testing.T) {
	drain := func(copies int) *hist {
		h := grouped()
		h.ops = h.ops[:len(h.ops)-1] // the final state, again below
		h.gdeliver(300, 3, 3, 3, "e4")
		h.ops[len(h.ops)-1].Mode = GroupDrain
		h.gsettle(300, 3, 3, GroupAckMode, TypeOK)
		for k := range copies {
			h.gdeliver(300, 3, 3, uint32(4+k), "e4")
			h.ops[len(h.ops)-1].Mode = GroupDrain
		}
		h.gstate(4)
		return h
	}
	within := groupBufferedMessagesMax(1, false) + 1 // past a member's bound
	require.Less(t, within, groupBufferedMessagesMax(1, true))
	v := verdictOf(t, drain(within).history(), CheckGroups)
	require.Equal(t, StatusPass, v.Status, "%+v", v)

	v = verdictOf(t, drain(groupBufferedMessagesMax(1, true)+1).history(), CheckGroups)
	require.Equal(t, StatusFail, v.Status, "%+v", v)
	require.Contains(t, v.Counterexamples[0], "delivers offset 3 of partition 0 again")
}

// A copy with a lower delivery count than the copy an ok ack acknowledged
// was sent before that copy, so before the ack: another member's consumer
// that still held it (its generation fenced since) may record it after
// the ack, and rule (a) allows it. A copy with a higher count after the
// ok ack is a redelivery of an acknowledged offset. (A 5-minute jepsen run
// failed on the first case: member 65537 of generation 74 recorded count 3
// after member 65536 of generation 75 acked count 4.)
func TestGroupsCheckerOlderCopyAfterAckOfANewerOne(t *testing.T) {
	build := func(late uint32) History {
		h := clean()
		h.gdeliver(301, 2, 0, 2, "e0")
		ack := Op{Type: TypeInvoke, F: FGroupAck, Process: 301, Name: "m", Offset: 0, Generation: 2, Mode: GroupAckMode, Deliveries: 2}
		h.ops = append(h.ops, ack)
		ack.Type = TypeOK
		h.ops = append(h.ops, ack)
		// Member 300 (generation 1) records a copy of offset 0 after the ack.
		h.gdeliver(300, 1, 0, late, "e0")
		for o, id := range []string{"e1", "e2", "e4"} {
			h.gdeliver(301, 2, uint64(o+1), 1, id)
			h.gsettle(301, 2, uint64(o+1), GroupAckMode, TypeOK)
		}
		h.gstate(4)
		return h.history()
	}
	v := verdictOf(t, build(1), CheckGroups)
	require.Equal(t, StatusPass, v.Status, "%+v", v)

	v = verdictOf(t, build(3), CheckGroups)
	require.Equal(t, StatusFail, v.Status, "%+v", v)
	require.Contains(t, strings.Join(v.Counterexamples, "\n"), "delivers offset 0 of partition 0 again (count 3) after its ack returned ok")
}
