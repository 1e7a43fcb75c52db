package log

import (
	"bytes"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/stretchr/testify/require"
)

// groupHarness applies group commands to one partition, one committed batch
// per command, and checks every group's invariants after each.
type groupHarness struct {
	t       *testing.T
	db      *DB
	p       *Partition
	applied uint64
}

const testGroupAckWait = 10 * time.Second

var testGroupConfig = GroupConfig{AckWait: testGroupAckWait, MaxDeliveries: 3, MaxPending: 100}

// newGroupHarness opens a partition holding records records (offsets
// 0..records-1).
func newGroupHarness(t *testing.T, records int) *groupHarness {
	h := &groupHarness{t: t, db: openMemDB(t)}
	h.p = partition(t, h.db, 1)
	if records > 0 {
		h.applied++
		commitBatch(t, h.p, h.applied, entries(records, "a", "b"))
	}
	return h
}

// apply runs fn in a batch and commits it; a storage failure fails the test.
func (h *groupHarness) apply(fn func(b *Batch) (GroupResult, error)) (GroupResult, error) {
	h.t.Helper()
	b := h.p.NewBatch()
	defer b.Abort()
	res, err := fn(b)
	if err != nil && !IsGroupRefusal(err) {
		h.t.Fatalf("storage failure: %v", err)
	}
	h.applied++
	require.NoError(h.t, b.Commit(h.applied))
	checkGroupInvariants(h.t, h.p)
	return res, err
}

func (h *groupHarness) must(fn func(b *Batch) (GroupResult, error)) GroupResult {
	h.t.Helper()
	res, err := h.apply(fn)
	require.NoError(h.t, err)
	return res
}

func (h *groupHarness) state(name string) GroupState {
	h.t.Helper()
	s, err := h.p.GroupState(name)
	require.NoError(h.t, err)
	return s
}

// create makes group name at 0 and assigns generation 1 to "m1".
func (h *groupHarness) create(name string, config GroupConfig) {
	h.t.Helper()
	h.must(func(b *Batch) (GroupResult, error) { return b.GroupCreate(name, config, 0) })
	h.must(func(b *Batch) (GroupResult, error) { return b.GroupAssign(name, 1, "m1") })
}

func (h *groupHarness) deliver(name string, from, count uint64, redeliver []uint64, now int64) (GroupResult, error) {
	h.t.Helper()
	return h.apply(func(b *Batch) (GroupResult, error) {
		return b.GroupDeliver(GroupDeliverRequest{Group: name, Generation: 1, Member: "m1", NewFrom: from, NewCount: count, Redeliver: redeliver, NowUnixNano: now})
	})
}

func (h *groupHarness) ack(name string, before uint64, offsets ...uint64) (GroupResult, error) {
	h.t.Helper()
	return h.apply(func(b *Batch) (GroupResult, error) {
		return b.GroupAck(GroupAckRequest{Group: name, Generation: 1, Member: "m1", Before: before, Offsets: offsets})
	})
}

// groupKeys returns every consumer group key and value of partition id.
func groupKeys(t testing.TB, db *DB, id uint64) [][2][]byte {
	t.Helper()
	return kindEntries(t, db, id, kindGroup, kindGroupPending, kindGroupDue)
}

// kindEntries returns every key and value of partition id's kinds, kind
// by kind in the order given.
func kindEntries(t testing.TB, db *DB, id uint64, kinds ...byte) [][2][]byte {
	t.Helper()
	var out [][2][]byte
	for _, kind := range kinds {
		lower, upper := kindBounds(id, kind)
		iter, err := db.Pebble().NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
		require.NoError(t, err)
		for valid := iter.First(); valid; valid = iter.Next() {
			out = append(out, [2][]byte{bytes.Clone(iter.Key()), bytes.Clone(iter.Value())})
		}
		require.NoError(t, iter.Error())
		require.NoError(t, iter.Close())
	}
	return out
}

// checkGroupInvariants checks, from the raw keys, every group of p: its
// pending count is the offsets of its runs, its floor the lowest of them
// (the cursor when none), the runs apart and all below the cursor, each
// with exactly one due key at its not-before, and no key of a group that
// does not exist.
func checkGroupInvariants(t testing.TB, p *Partition) {
	t.Helper()
	states, err := p.Groups()
	require.NoError(t, err)
	store := groupStore{partition: p.id, r: p.db.pebble}
	var runsTotal uint64
	for _, s := range states {
		var offsets []uint64
		var runs uint64
		require.NoError(t, store.scanRuns(s.Name, 0, math.MaxUint64, func(r pendingRun) bool {
			runs++
			require.LessOrEqual(t, r.first, r.last)
			require.Less(t, r.last, s.Delivered, "group %q: pending offset at or above the cursor", s.Name)
			if len(offsets) > 0 {
				require.Greater(t, r.first, offsets[len(offsets)-1], "group %q: runs overlap", s.Name)
			}
			for o := r.first; o <= r.last; o++ {
				offsets = append(offsets, o)
			}
			due, closer, err := p.db.pebble.Get(appendGroupDueKey(nil, p.id, s.Name, r.v.notBeforeUnixNano, r.first))
			require.NoError(t, err, "group %q: run from %d has no due key", s.Name, r.first)
			require.Empty(t, due)
			require.NoError(t, closer.Close())
			return true
		}))
		require.Equal(t, s.Pending, uint64(len(offsets)), "group %q: pending count", s.Name)
		if len(offsets) == 0 {
			require.Equal(t, s.Delivered, s.Floor, "group %q: floor with nothing pending", s.Name)
		} else {
			require.Equal(t, offsets[0], s.Floor, "group %q: floor is not the lowest pending offset", s.Name)
		}
		var due uint64
		require.NoError(t, store.scanDue(s.Name, math.MaxInt64, func(PendingDelivery) bool { due++; return true }))
		require.Equal(t, s.Pending, due, "group %q: due offsets", s.Name)
		runsTotal += runs
	}
	for _, kind := range []byte{kindGroupPending, kindGroupDue} {
		lower, upper := kindBounds(p.id, kind)
		iter, err := p.db.pebble.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
		require.NoError(t, err)
		var n uint64
		for valid := iter.First(); valid; valid = iter.Next() {
			n++
		}
		require.NoError(t, iter.Close())
		require.Equal(t, runsTotal, n, "keys of kind %q beyond the groups' pending runs", kind)
	}
}

func outcomes(o ...OffsetOutcome) []OffsetOutcome { return o }

func TestGroupFloorAdvancesOverOutOfOrderAcks(t *testing.T) {
	h := newGroupHarness(t, 20)
	h.create("g", testGroupConfig)
	res, err := h.deliver("g", 0, 10, nil, 1000)
	require.NoError(t, err)
	require.Equal(t, GroupState{Name: "g", Config: testGroupConfig, Floor: 0, Delivered: 10, Generation: 1, Member: "m1", Pending: 10}, res.State)

	steps := []struct {
		name     string
		offsets  []uint64
		outcomes []OffsetOutcome
		floor    uint64
		pending  uint64
	}{
		{"above the floor: floor stays", []uint64{3, 1, 2}, outcomes(OffsetApplied, OffsetApplied, OffsetApplied), 0, 7},
		{"the floor: moves over the acked run", []uint64{0}, outcomes(OffsetApplied), 4, 6},
		{"acked again, never delivered", []uint64{3, 12, 10}, outcomes(OffsetAlreadyDone, OffsetNotDelivered, OffsetNotDelivered), 4, 6},
		{"one offset twice in a command", []uint64{5, 5}, outcomes(OffsetApplied, OffsetAlreadyDone), 4, 5},
		{"the rest, backwards", []uint64{9, 8, 7, 6, 4}, outcomes(OffsetApplied, OffsetApplied, OffsetApplied, OffsetApplied, OffsetApplied), 10, 0},
	}
	for _, step := range steps {
		res, err := h.ack("g", 0, step.offsets...)
		require.NoError(t, err, step.name)
		require.Equal(t, step.outcomes, res.Outcomes, step.name)
		require.Equal(t, step.floor, res.State.Floor, step.name)
		require.Equal(t, step.pending, res.State.Pending, step.name)
		require.Equal(t, res.State, h.state("g"), step.name)
	}
}

func TestGroupCumulativeAck(t *testing.T) {
	h := newGroupHarness(t, 20)
	h.create("g", testGroupConfig)
	_, err := h.deliver("g", 0, 10, nil, 1000)
	require.NoError(t, err)
	_, err = h.ack("g", 0, 7)
	require.NoError(t, err)

	before := groupKeys(t, h.db, 1)
	_, err = h.ack("g", 11)
	var notDelivered *NotDeliveredError
	require.ErrorAs(t, err, &notDelivered)
	require.Equal(t, NotDeliveredError{Group: "g", Before: 11, Delivered: 10}, *notDelivered)
	require.Equal(t, before, groupKeys(t, h.db, 1), "a refused cumulative ack changed the group")

	// Below 5, then 8 one by one: 5, 6 and 9 stay pending.
	res, err := h.ack("g", 5, 8, 2)
	require.NoError(t, err)
	require.Equal(t, outcomes(OffsetApplied, OffsetAlreadyDone), res.Outcomes)
	require.Equal(t, uint64(6), res.Done)
	require.Equal(t, uint64(5), res.State.Floor)
	require.Equal(t, uint64(3), res.State.Pending)

	// Up to the cursor: everything.
	res, err = h.ack("g", 10)
	require.NoError(t, err)
	require.Equal(t, uint64(3), res.Done)
	require.Equal(t, uint64(10), res.State.Floor)
	require.Zero(t, res.State.Pending)
}

func TestGroupMaxDeliveries(t *testing.T) {
	h := newGroupHarness(t, 5)
	h.create("g", GroupConfig{AckWait: time.Second, MaxDeliveries: 2, MaxPending: 10})
	_, err := h.deliver("g", 0, 2, nil, 100)
	require.NoError(t, err)

	res, err := h.deliver("g", 2, 1, []uint64{0, 1}, 200)
	require.NoError(t, err)
	require.Equal(t, outcomes(OffsetApplied, OffsetApplied), res.Outcomes)
	// Offset 0 reached 2 deliveries: its third is refused, offset 1's
	// redelivery is refused the same, 2's goes on, 4 was never delivered.
	res, err = h.deliver("g", 0, 0, []uint64{0, 1, 2, 4}, 300)
	require.NoError(t, err)
	require.Equal(t, outcomes(OffsetMaxDeliveries, OffsetMaxDeliveries, OffsetApplied, OffsetNotDelivered), res.Outcomes)

	pending, err := h.p.GroupPending("g", 0, 10)
	require.NoError(t, err)
	require.Equal(t, []PendingDelivery{
		{Offset: 0, Deliveries: 2, LastDeliveredUnixNano: 200, NotBeforeUnixNano: 200 + int64(time.Second), Member: "m1"},
		{Offset: 1, Deliveries: 2, LastDeliveredUnixNano: 200, NotBeforeUnixNano: 200 + int64(time.Second), Member: "m1"},
		{Offset: 2, Deliveries: 2, LastDeliveredUnixNano: 300, NotBeforeUnixNano: 300 + int64(time.Second), Member: "m1"},
	}, pending)

	// Dead-lettered, they are done: the floor moves, the count grows.
	res, err = h.apply(func(b *Batch) (GroupResult, error) { return b.GroupDeadLetter("g", []uint64{1, 0, 1, 3}) })
	require.NoError(t, err)
	require.Equal(t, outcomes(OffsetApplied, OffsetApplied, OffsetAlreadyDone, OffsetNotDelivered), res.Outcomes)
	require.Equal(t, uint64(2), res.State.DeadLettered)
	require.Equal(t, uint64(2), res.State.Floor)
	require.Equal(t, uint64(1), res.State.Pending)
}

func TestGroupMaxPending(t *testing.T) {
	h := newGroupHarness(t, 10)
	h.create("g", GroupConfig{AckWait: time.Second, MaxPending: 3})
	_, err := h.deliver("g", 0, 3, nil, 1)
	require.NoError(t, err)
	before := groupKeys(t, h.db, 1)
	_, err = h.deliver("g", 3, 1, []uint64{0}, 2)
	var maxPending *MaxPendingError
	require.ErrorAs(t, err, &maxPending)
	require.Equal(t, MaxPendingError{Group: "g", Pending: 3, Adding: 1, MaxPending: 3}, *maxPending)
	require.Equal(t, before, groupKeys(t, h.db, 1), "a refused delivery changed the group (its redelivery too)")
	// Redeliveries alone add nothing pending.
	_, err = h.deliver("g", 0, 0, []uint64{0}, 2)
	require.NoError(t, err)
	_, err = h.ack("g", 0, 1)
	require.NoError(t, err)
	res, err := h.deliver("g", 3, 1, nil, 3)
	require.NoError(t, err)
	require.Equal(t, uint64(3), res.State.Pending)
	require.Equal(t, uint64(4), res.State.Delivered)
}

// Every command of a fenced member is refused with nothing changed.
func TestGroupStaleGenerationChangesNothing(t *testing.T) {
	h := newGroupHarness(t, 10)
	h.create("g", testGroupConfig)
	_, err := h.deliver("g", 0, 4, nil, 1)
	require.NoError(t, err)
	h.must(func(b *Batch) (GroupResult, error) { return b.GroupAssign("g", 2, "m2") })

	commands := []struct {
		name string
		fn   func(b *Batch) (GroupResult, error)
	}{
		{"deliver by the old generation", func(b *Batch) (GroupResult, error) {
			return b.GroupDeliver(GroupDeliverRequest{Group: "g", Generation: 1, Member: "m1", NewFrom: 4, NewCount: 1, Redeliver: []uint64{0}, NowUnixNano: 5})
		}},
		{"ack by the old generation", func(b *Batch) (GroupResult, error) {
			return b.GroupAck(GroupAckRequest{Group: "g", Generation: 1, Member: "m1", Before: 2, Offsets: []uint64{3}})
		}},
		{"nack by the old generation", func(b *Batch) (GroupResult, error) {
			return b.GroupNack(GroupNackRequest{Group: "g", Generation: 1, Member: "m1", Offsets: []uint64{0}, NowUnixNano: 5})
		}},
		{"ack by another member under the current generation", func(b *Batch) (GroupResult, error) {
			return b.GroupAck(GroupAckRequest{Group: "g", Generation: 2, Member: "m1", Offsets: []uint64{0}})
		}},
		{"ack of a generation not yet assigned", func(b *Batch) (GroupResult, error) {
			return b.GroupAck(GroupAckRequest{Group: "g", Generation: 3, Member: "m2", Offsets: []uint64{0}})
		}},
		{"assign of an older generation", func(b *Batch) (GroupResult, error) { return b.GroupAssign("g", 1, "m3") }},
		{"assign of the current generation to another member", func(b *Batch) (GroupResult, error) { return b.GroupAssign("g", 2, "m3") }},
	}
	for _, c := range commands {
		before := groupKeys(t, h.db, 1)
		_, err := h.apply(c.fn)
		var stale *StaleGenerationError
		require.ErrorAs(t, err, &stale, c.name)
		require.True(t, errors.Is(err, ErrStaleGeneration), c.name)
		require.Equal(t, uint64(2), stale.CurrentGeneration, c.name)
		require.Equal(t, "m2", stale.CurrentMember, c.name)
		require.Equal(t, before, groupKeys(t, h.db, 1), "%s changed the group", c.name)
	}

	// The current assignment again is a no-op; the new owner acks and
	// redelivers the previous owner's deliveries.
	h.must(func(b *Batch) (GroupResult, error) { return b.GroupAssign("g", 2, "m2") })
	res := h.must(func(b *Batch) (GroupResult, error) {
		return b.GroupDeliver(GroupDeliverRequest{Group: "g", Generation: 2, Member: "m2", Redeliver: []uint64{1}, NowUnixNano: 7})
	})
	require.Equal(t, outcomes(OffsetApplied), res.Outcomes)
	pending, err := h.p.GroupPending("g", 1, 1)
	require.NoError(t, err)
	require.Equal(t, []PendingDelivery{{Offset: 1, Deliveries: 2, LastDeliveredUnixNano: 7, NotBeforeUnixNano: 7 + int64(testGroupAckWait), Member: "m2"}}, pending)
	res = h.must(func(b *Batch) (GroupResult, error) {
		return b.GroupAck(GroupAckRequest{Group: "g", Generation: 2, Member: "m2", Before: 4})
	})
	require.Equal(t, uint64(4), res.State.Floor)
}

// Refusals other than fencing, each with nothing changed.
func TestGroupRefusals(t *testing.T) {
	h := newGroupHarness(t, 10)
	h.create("g", testGroupConfig)
	_, err := h.deliver("g", 0, 2, nil, 1)
	require.NoError(t, err)
	deliver := func(req GroupDeliverRequest) func(b *Batch) (GroupResult, error) {
		req.Group, req.Generation, req.Member = "g", 1, "m1"
		return func(b *Batch) (GroupResult, error) { return b.GroupDeliver(req) }
	}
	many := make([]uint64, GroupCommandOffsetsMax+1)
	for i := range many {
		many[i] = uint64(i)
	}
	cases := []struct {
		name string
		fn   func(b *Batch) (GroupResult, error)
		want error
	}{
		{"create of an existing name", func(b *Batch) (GroupResult, error) { return b.GroupCreate("g", testGroupConfig, 0) }, ErrGroupExists},
		{"create above the high watermark", func(b *Batch) (GroupResult, error) { return b.GroupCreate("h", testGroupConfig, 11) }, ErrInvalidArgument},
		{"create with a bad config", func(b *Batch) (GroupResult, error) { return b.GroupCreate("h", GroupConfig{}, 0) }, ErrInvalidArgument},
		{"create with an empty name", func(b *Batch) (GroupResult, error) { return b.GroupCreate("", testGroupConfig, 0) }, ErrInvalidArgument},
		{"reset of an unknown group", func(b *Batch) (GroupResult, error) { return b.GroupReset("h", 0) }, ErrUnknownGroup},
		{"reset above the high watermark", func(b *Batch) (GroupResult, error) { return b.GroupReset("g", 11) }, ErrInvalidArgument},
		{"delete of an unknown group", func(b *Batch) (GroupResult, error) { return b.GroupDelete("h") }, ErrUnknownGroup},
		{"assign of generation 0", func(b *Batch) (GroupResult, error) { return b.GroupAssign("g", 0, "m") }, ErrInvalidArgument},
		{"assign without a member", func(b *Batch) (GroupResult, error) { return b.GroupAssign("g", 5, "") }, ErrInvalidArgument},
		{"new offsets behind the cursor", deliver(GroupDeliverRequest{NewFrom: 1, NewCount: 2}), ErrCursorMoved},
		{"new offsets ahead of the cursor", deliver(GroupDeliverRequest{NewFrom: 3, NewCount: 1}), ErrCursorMoved},
		{"new offsets above the high watermark", deliver(GroupDeliverRequest{NewFrom: 2, NewCount: 9}), ErrInvalidArgument},
		{"redeliveries out of order", deliver(GroupDeliverRequest{Redeliver: []uint64{1, 0}}), ErrInvalidArgument},
		{"too many offsets", deliver(GroupDeliverRequest{NewFrom: 2, NewCount: 1, Redeliver: many[:GroupCommandOffsetsMax]}), ErrInvalidArgument},
		{"too many acks", func(b *Batch) (GroupResult, error) {
			return b.GroupAck(GroupAckRequest{Group: "g", Generation: 1, Member: "m1", Offsets: many})
		}, ErrInvalidArgument},
		{"negative nack delay", func(b *Batch) (GroupResult, error) {
			return b.GroupNack(GroupNackRequest{Group: "g", Generation: 1, Member: "m1", Offsets: []uint64{0}, Delay: -1})
		}, ErrInvalidArgument},
		{"dead letter of an unknown group", func(b *Batch) (GroupResult, error) { return b.GroupDeadLetter("h", []uint64{0}) }, ErrUnknownGroup},
	}
	for _, c := range cases {
		before := groupKeys(t, h.db, 1)
		_, err := h.apply(c.fn)
		require.ErrorIs(t, err, c.want, c.name)
		require.True(t, IsGroupRefusal(err), c.name)
		require.Equal(t, before, groupKeys(t, h.db, 1), "%s changed the groups", c.name)
	}
	// A bad config reports every problem at once.
	err = GroupConfig{AckWait: -1, MaxPending: GroupPendingMax + 1}.Validate()
	require.ErrorContains(t, err, "ack wait")
	require.ErrorContains(t, err, "max pending")
}

func TestGroupNackAndExpired(t *testing.T) {
	h := newGroupHarness(t, 10)
	h.create("g", testGroupConfig)
	const t0 = int64(1_000_000_000)
	_, err := h.deliver("g", 0, 4, nil, t0)
	require.NoError(t, err)
	expired := func(now int64, limit int) []uint64 {
		t.Helper()
		due, err := h.p.GroupExpired("g", now, limit)
		require.NoError(t, err)
		var offsets []uint64
		for _, d := range due {
			offsets = append(offsets, d.Offset)
		}
		return offsets
	}
	require.Empty(t, expired(t0+int64(testGroupAckWait)-1, 10))
	res := h.must(func(b *Batch) (GroupResult, error) {
		return b.GroupNack(GroupNackRequest{Group: "g", Generation: 1, Member: "m1", Offsets: []uint64{2, 7}, Delay: time.Second, NowUnixNano: t0 + 1})
	})
	require.Equal(t, outcomes(OffsetApplied, OffsetNotDelivered), res.Outcomes)
	require.Equal(t, []uint64{2}, expired(t0+1+int64(time.Second), 10))
	// Earliest first, then by offset; the limit holds.
	require.Equal(t, []uint64{2, 0, 1, 3}, expired(t0+int64(testGroupAckWait), 10))
	require.Equal(t, []uint64{2, 0}, expired(math.MaxInt64, 2))
	// A redelivery makes it due an ack wait after it.
	_, err = h.deliver("g", 0, 0, []uint64{0}, t0+int64(testGroupAckWait))
	require.NoError(t, err)
	require.Equal(t, []uint64{2, 1, 3}, expired(t0+int64(testGroupAckWait), 10))
	// A time near the end of int64 saturates instead of wrapping.
	_, err = h.deliver("g", 0, 0, []uint64{1}, math.MaxInt64-1)
	require.NoError(t, err)
	require.Equal(t, []uint64{2, 3, 0}, expired(math.MaxInt64-1, 10), "1 is due at the end of time")
	require.Equal(t, []uint64{2, 3, 0, 1}, expired(math.MaxInt64, 10))

	_, err = h.p.GroupExpired("nope", 0, 1)
	require.ErrorIs(t, err, ErrUnknownGroup)
	_, err = h.p.GroupPending("g", 0, 0)
	require.ErrorIs(t, err, ErrInvalidArgument)
}

func TestGroupResetAndDelete(t *testing.T) {
	h := newGroupHarness(t, 10)
	h.create("g", testGroupConfig)
	h.create("other", testGroupConfig)
	_, err := h.deliver("g", 0, 5, nil, 1)
	require.NoError(t, err)
	_, err = h.deliver("other", 0, 3, nil, 1)
	require.NoError(t, err)
	_, err = h.ack("g", 0, 1)
	require.NoError(t, err)

	res := h.must(func(b *Batch) (GroupResult, error) { return b.GroupReset("g", 8) })
	require.Equal(t, GroupState{Name: "g", Config: testGroupConfig, Floor: 8, Delivered: 8, Generation: 1, Member: "m1"}, res.State)
	pending, err := h.p.GroupPending("g", 0, 100)
	require.NoError(t, err)
	require.Empty(t, pending)
	// The reset group delivers on from its new cursor.
	_, err = h.deliver("g", 8, 2, nil, 2)
	require.NoError(t, err)
	// Back to an earlier offset works too.
	h.must(func(b *Batch) (GroupResult, error) { return b.GroupReset("g", 0) })
	require.Equal(t, uint64(0), h.state("g").Delivered)

	res = h.must(func(b *Batch) (GroupResult, error) { return b.GroupDelete("other") })
	require.Equal(t, uint64(3), res.State.Pending, "the state before the delete")
	_, err = h.p.GroupState("other")
	require.ErrorIs(t, err, ErrUnknownGroup)
	groups, err := h.p.Groups()
	require.NoError(t, err)
	require.Len(t, groups, 1)
	require.Equal(t, "g", groups[0].Name)
	// A new group of the same name starts afresh.
	h.create("other", testGroupConfig)
	require.Zero(t, h.state("other").Pending)

	// Within one batch, each command sees the ones before it, range
	// deletes of a reset included.
	res = h.must(func(b *Batch) (GroupResult, error) {
		steps := []func() (GroupResult, error){
			func() (GroupResult, error) {
				return b.GroupDeliver(GroupDeliverRequest{Group: "g", Generation: 1, Member: "m1", NewFrom: 0, NewCount: 4, NowUnixNano: 3})
			},
			func() (GroupResult, error) { return b.GroupReset("g", 2) },
			func() (GroupResult, error) {
				return b.GroupDeliver(GroupDeliverRequest{Group: "g", Generation: 1, Member: "m1", NewFrom: 2, NewCount: 3, NowUnixNano: 4})
			},
			func() (GroupResult, error) {
				return b.GroupAck(GroupAckRequest{Group: "g", Generation: 1, Member: "m1", Offsets: []uint64{1, 2}})
			},
		}
		var res GroupResult
		for _, step := range steps {
			var err error
			if res, err = step(); err != nil {
				return res, err
			}
		}
		return res, nil
	})
	require.Equal(t, outcomes(OffsetAlreadyDone, OffsetApplied), res.Outcomes)
	require.Equal(t, GroupState{Name: "g", Config: testGroupConfig, Floor: 3, Delivered: 5, Generation: 1, Member: "m1", Pending: 2}, res.State)
	require.Equal(t, res.State, h.state("g"))
}

func TestGroupKeysRoundTrip(t *testing.T) {
	name, offset, ok := parseGroupPendingKey(3, appendGroupPendingKey(nil, 3, "grp", 42))
	require.True(t, ok)
	require.Equal(t, "grp", string(name))
	require.Equal(t, uint64(42), offset)
	name, notBefore, offset, ok := parseGroupDueKey(3, appendGroupDueKey(nil, 3, "grp", -5, 7))
	require.True(t, ok)
	require.Equal(t, "grp", string(name))
	require.Equal(t, int64(-5), notBefore)
	require.Equal(t, uint64(7), offset)
	name, ok = parseGroupKey(3, appendGroupKey(nil, 3, "grp"))
	require.True(t, ok)
	require.Equal(t, "grp", string(name))
	_, ok = parseGroupKey(4, appendGroupKey(nil, 3, "grp"))
	require.False(t, ok, "another partition's key")
	// Due keys sort by not-before, negative ones first.
	require.Negative(t, bytes.Compare(appendGroupDueKey(nil, 3, "g", -1, 9), appendGroupDueKey(nil, 3, "g", 0, 1)))
	// The longest group key fits the restore buffer.
	long := string(bytes.Repeat([]byte("n"), groupNameBytesMax))
	require.LessOrEqual(t, len(appendGroupDueKey(nil, 3, long, 0, 0))-partitionPrefixBytes, relativeKeyBytesMax)
}
