package log

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/stretchr/testify/require"
)

// modelPending is one offset's pending delivery in the per-offset model
// the runs are checked against.
type modelPending struct {
	deliveries            uint32
	lastDeliveredUnixNano int64
	notBeforeUnixNano     int64
	member                string
}

// groupModel is a group's state kept offset by offset, as key layout
// version 5 stored it: what the runs must behave as.
type groupModel struct {
	floor, delivered, deadLettered uint64
	pending                        map[uint64]modelPending
}

func (m *groupModel) settle() {
	m.floor = m.delivered
	for o := range m.pending {
		m.floor = min(m.floor, o)
	}
}

// deliveries returns the model's pending deliveries in offset order.
func (m *groupModel) deliveries() []PendingDelivery {
	out := []PendingDelivery{}
	for o, v := range m.pending {
		out = append(out, PendingDelivery{Offset: o, Deliveries: v.deliveries, LastDeliveredUnixNano: v.lastDeliveredUnixNano,
			NotBeforeUnixNano: v.notBeforeUnixNano, Member: v.member})
	}
	slices.SortFunc(out, func(a, b PendingDelivery) int { return int(a.Offset) - int(b.Offset) })
	return out
}

// Random deliveries, redeliveries, acks (cumulative and individual, in
// any order, with repeats), nacks and dead letters applied to the runs
// give, command by command, the outcomes, pending deliveries, due order
// and header of the per-offset model; the harness checks the runs'
// invariants after each command.
func TestGroupRunsMatchPerOffsetModel(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 12))
	const records = 400
	h := newGroupHarness(t, records)
	config := GroupConfig{AckWait: 10 * time.Second, MaxDeliveries: 3, MaxPending: 120}
	h.must(func(b *Batch) (GroupResult, error) { return b.GroupCreate("g", config, 0) })
	h.must(func(b *Batch) (GroupResult, error) { return b.GroupAssign("g", 1, "m1") })
	m := &groupModel{pending: map[uint64]modelPending{}}
	randomOffsets := func(n int) []uint64 {
		out := make([]uint64, n)
		for i := range out {
			out[i] = m.floor + uint64(rng.IntN(int(m.delivered-m.floor)+3))
			if m.floor > 0 && rng.IntN(8) == 0 {
				out[i] = uint64(rng.IntN(int(m.floor)))
			}
		}
		return out
	}
	for step := 1; step <= 600; step++ {
		now := int64(step) * int64(time.Second)
		member := "m1"
		var res GroupResult
		var want []OffsetOutcome
		switch op := rng.IntN(5); op {
		case 0: // deliver new offsets and redeliver some
			room := min(uint64(config.MaxPending)-uint64(len(m.pending)), records-m.delivered, 40)
			count := uint64(rng.IntN(int(room) + 1))
			redeliver := randomOffsets(rng.IntN(12))
			slices.Sort(redeliver)
			redeliver = slices.Compact(redeliver)
			res = h.must(func(b *Batch) (GroupResult, error) {
				return b.GroupDeliver(GroupDeliverRequest{Group: "g", Generation: 1, Member: member,
					NewFrom: m.delivered, NewCount: count, Redeliver: redeliver, NowUnixNano: now})
			})
			for _, o := range redeliver {
				v, pending := m.pending[o]
				switch {
				case o >= m.delivered:
					want = append(want, OffsetNotDelivered)
				case !pending:
					want = append(want, OffsetAlreadyDone)
				case v.deliveries >= config.MaxDeliveries:
					want = append(want, OffsetMaxDeliveries)
				default:
					m.pending[o] = modelPending{v.deliveries + 1, now, now + int64(config.AckWait), member}
					want = append(want, OffsetApplied)
				}
			}
			for o := m.delivered; o < m.delivered+count; o++ {
				m.pending[o] = modelPending{1, now, now + int64(config.AckWait), member}
			}
			m.delivered += count
		case 1, 2: // ack, cumulative and one by one, or dead letter
			offsets := randomOffsets(rng.IntN(16))
			var before uint64
			if op == 1 && rng.IntN(3) == 0 {
				before = m.floor + uint64(rng.IntN(int(m.delivered-m.floor)+1))
			}
			if op == 1 {
				res = h.must(func(b *Batch) (GroupResult, error) {
					return b.GroupAck(GroupAckRequest{Group: "g", Generation: 1, Member: member, Before: before, Offsets: offsets})
				})
			} else {
				res = h.must(func(b *Batch) (GroupResult, error) { return b.GroupDeadLetter("g", offsets) })
			}
			for o := range m.pending {
				if o < before {
					delete(m.pending, o)
				}
			}
			for _, o := range offsets {
				_, pending := m.pending[o]
				switch {
				case o >= m.delivered:
					want = append(want, OffsetNotDelivered)
				case !pending:
					want = append(want, OffsetAlreadyDone)
				default:
					delete(m.pending, o)
					if op == 2 {
						m.deadLettered++
					}
					want = append(want, OffsetApplied)
				}
			}
		case 3: // nack
			offsets := randomOffsets(rng.IntN(10))
			delay := time.Duration(rng.IntN(20)) * time.Second
			res = h.must(func(b *Batch) (GroupResult, error) {
				return b.GroupNack(GroupNackRequest{Group: "g", Generation: 1, Member: member, Offsets: offsets, Delay: delay, NowUnixNano: now})
			})
			for _, o := range offsets {
				v, pending := m.pending[o]
				switch {
				case o >= m.delivered:
					want = append(want, OffsetNotDelivered)
				case !pending:
					want = append(want, OffsetAlreadyDone)
				default:
					v.notBeforeUnixNano = now + int64(delay)
					m.pending[o] = v
					want = append(want, OffsetApplied)
				}
			}
		case 4: // read only: the due deliveries below
		}
		m.settle()
		if len(want) == 0 {
			require.Empty(t, res.Outcomes, "step %d (seed %d)", step, seed)
		} else {
			require.Equal(t, want, res.Outcomes, "step %d (seed %d)", step, seed)
		}
		state, err := h.p.GroupState("g")
		require.NoError(t, err)
		require.Equal(t, [4]uint64{m.floor, m.delivered, uint64(len(m.pending)), m.deadLettered},
			[4]uint64{state.Floor, state.Delivered, state.Pending, state.DeadLettered}, "step %d (seed %d)", step, seed)
		all := m.deliveries()
		got, err := h.p.GroupPending("g", 0, records)
		require.NoError(t, err)
		require.Equal(t, all, append([]PendingDelivery{}, got...), "step %d (seed %d)", step, seed)
		if len(all) > 2 {
			from := all[len(all)/2].Offset
			got, err = h.p.GroupPending("g", from, 3)
			require.NoError(t, err)
			require.Equal(t, all[len(all)/2:min(len(all), len(all)/2+3)], got, "step %d (seed %d): pending from %d", step, seed, from)
		}
		due := slices.Clone(all)
		due = slices.DeleteFunc(due, func(d PendingDelivery) bool { return d.NotBeforeUnixNano > now })
		slices.SortStableFunc(due, func(a, b PendingDelivery) int {
			switch {
			case a.NotBeforeUnixNano < b.NotBeforeUnixNano:
				return -1
			case a.NotBeforeUnixNano > b.NotBeforeUnixNano:
				return 1
			}
			return 0
		})
		got, err = h.p.GroupExpired("g", now, records)
		require.NoError(t, err)
		require.Equal(t, due, append([]PendingDelivery{}, got...), "step %d (seed %d): due", step, seed)
	}
}

// A partition written before runs (one pending key per offset, value
// version 1, as key layout version 5 stored them) is read as runs of one
// offset, and every command works on it: the upgrade needs no conversion.
func TestGroupPerOffsetKeysReadAsRuns(t *testing.T) {
	h := newGroupHarness(t, 8)
	h.create("g", testGroupConfig)
	rawSet := func(t *testing.T, db *DB, key, value []byte) {
		t.Helper()
		require.NoError(t, db.Pebble().Set(key, value, pebble.NoSync))
	}
	// The state of offsets 0..3 delivered once at 5 to m1, as version 5
	// wrote it.
	header := groupHeader{floor: 0, delivered: 4, generation: 1, member: "m1", pending: 4, config: testGroupConfig}
	rawSet(t, h.db, appendGroupKey(nil, 1, "g"), header.encode())
	for o := uint64(0); o < 4; o++ {
		// The version-1 pending value, byte by byte.
		v := []byte{0, 0, 0, 0, groupValueVersion1, 0, 0, 0, 1}
		v = append(v, encodeUint64(5)...)
		v = append(v, encodeUint64(9)...)
		v = append(v, 2, 'm', '1')
		rawSet(t, h.db, appendGroupPendingKey(nil, 1, "g", o), fixLeadingCRC(v))
		rawSet(t, h.db, appendGroupDueKey(nil, 1, "g", 9, o), nil)
	}
	checkGroupInvariants(t, h.p)
	store := groupStore{partition: 1, r: h.db.pebble}
	require.NoError(t, store.check())

	got, err := h.p.GroupExpired("g", 9, 10)
	require.NoError(t, err)
	require.Len(t, got, 4)
	require.Equal(t, PendingDelivery{Offset: 2, Deliveries: 1, LastDeliveredUnixNano: 5, NotBeforeUnixNano: 9, Member: "m1"}, got[2])

	res := h.must(func(b *Batch) (GroupResult, error) {
		return b.GroupDeliver(GroupDeliverRequest{Group: "g", Generation: 1, Member: "m1", NewFrom: 4, NewCount: 4, Redeliver: []uint64{1}, NowUnixNano: 100})
	})
	require.Equal(t, outcomes(OffsetApplied), res.Outcomes)
	res = h.must(func(b *Batch) (GroupResult, error) {
		return b.GroupAck(GroupAckRequest{Group: "g", Generation: 1, Member: "m1", Before: 1, Offsets: []uint64{2, 5}})
	})
	require.Equal(t, outcomes(OffsetApplied, OffsetApplied), res.Outcomes)
	require.Equal(t, uint64(3), res.Done)
	pending, err := h.p.GroupPending("g", 0, 10)
	require.NoError(t, err)
	var offsets []uint64
	for _, d := range pending {
		offsets = append(offsets, d.Offset)
	}
	require.Equal(t, []uint64{1, 3, 4, 6, 7}, offsets)
	require.Equal(t, uint32(2), pending[0].Deliveries)
	require.Equal(t, uint32(1), pending[1].Deliveries)
}

// A delivery is one run, and an acknowledgement of N offsets one by one
// splits a run into at most N+1: pending keys and due keys stay one per
// run.
func TestGroupRunSplitsAreBounded(t *testing.T) {
	h := newGroupHarness(t, 100)
	h.create("g", GroupConfig{AckWait: testGroupAckWait, MaxPending: 100})
	_, err := h.deliver("g", 0, 100, nil, 1)
	require.NoError(t, err)
	require.Len(t, kindEntries(t, h.db, 1, kindGroupPending), 1, "a delivery of 100 offsets is one run")
	require.Len(t, kindEntries(t, h.db, 1, kindGroupDue), 1)

	var odd []uint64
	for o := uint64(1); o < 100; o += 2 {
		odd = append(odd, o)
	}
	res, err := h.ack("g", 0, odd...)
	require.NoError(t, err)
	require.Equal(t, uint64(50), res.Done)
	require.Len(t, kindEntries(t, h.db, 1, kindGroupPending), 50, "50 offsets acknowledged in one run of 100 leave 50 runs")

	res, err = h.ack("g", 50)
	require.NoError(t, err)
	require.Equal(t, uint64(25), res.Done)
	require.Len(t, kindEntries(t, h.db, 1, kindGroupPending), 25, "a cumulative acknowledgement deletes whole runs")
	require.Len(t, kindEntries(t, h.db, 1, kindGroupDue), 25)
}
