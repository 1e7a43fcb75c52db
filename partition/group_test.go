package partition

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	hraft "github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	heraldlog "github.com/heraldlog/herald/log"
	"github.com/heraldlog/herald/partition/partitionpb"
)

// Every consumer group command round-trips, under its persisted type byte,
// and any single-bit flip past the type byte is detected.
func TestGroupCommandsRoundTripAndDetectDamage(t *testing.T) {
	cases := []struct {
		kind byte
		cmd  proto.Message
	}{
		{6, &partitionpb.GroupCreateCommand{Group: "g", Config: &partitionpb.GroupConfig{AckWaitNanos: int64(time.Second), MaxDeliveries: 5, MaxPending: 100}, StartOffset: 7}},
		{7, &partitionpb.GroupResetCommand{Group: "g", StartOffset: 3}},
		{8, &partitionpb.GroupDeleteCommand{Group: "g"}},
		{9, &partitionpb.GroupAssignCommand{Group: "g", Generation: 4, Member: "m"}},
		{10, &partitionpb.GroupDeliverCommand{Group: "g", Generation: 4, Member: "m", NewFrom: 10, NewCount: 5, Redeliver: []uint64{1, 2}, NowUnixNano: 99}},
		{11, &partitionpb.GroupAckCommand{Group: "g", Generation: 4, Member: "m", Before: 3, Offsets: []uint64{5, 9}}},
		{12, &partitionpb.GroupNackCommand{Group: "g", Generation: 4, Member: "m", Offsets: []uint64{6}, DelayNanos: 1000, NowUnixNano: 99}},
		{13, &partitionpb.GroupDeadLetterCommand{Group: "g", Offsets: []uint64{7}, Reason: "max deliveries"}},
	}
	for _, c := range cases {
		name := fmt.Sprintf("%T", c.cmd)
		data, err := encodeGroup(c.cmd)
		require.NoError(t, err, name)
		require.Equal(t, c.kind, data[0], "%s: persisted type byte", name)
		got, err := decodeCommand(data)
		require.NoError(t, err, name)
		require.True(t, proto.Equal(c.cmd, got), "%s: round trip gave %v", name, got)
		require.NoError(t, CheckEntry(&hraft.Log{Type: hraft.LogCommand, Data: data}), name)
		for i := 1; i < len(data); i++ {
			for bit := range 8 {
				damaged := bytes.Clone(data)
				damaged[i] ^= 1 << bit
				_, err := decodeCommand(damaged)
				require.ErrorIs(t, err, ErrBadCommand, "%s: flip of bit %d in byte %d", name, bit, i)
				require.ErrorIs(t, err, ErrDamagedCommand, "%s: flip of bit %d in byte %d", name, bit, i)
			}
		}
		_, err = decodeCommand(data[:3])
		require.ErrorIs(t, err, ErrDamagedCommand, "%s: truncated", name)
	}
	_, err := encodeGroup(&partitionpb.TrimCommand{})
	require.Error(t, err, "a trim is not a group command")
}

func groupEntry(t testing.TB, index uint64, cmd proto.Message) *hraft.Log {
	t.Helper()
	data, err := encodeGroup(cmd)
	require.NoError(t, err)
	return &hraft.Log{Index: index, Term: 1, Type: hraft.LogCommand, Data: data}
}

func groupApplied(t testing.TB, res interface{}) (GroupResult, error) {
	t.Helper()
	r, ok := res.(*groupApplyResult)
	require.True(t, ok, "result %T", res)
	return r.result, r.err
}

// The FSM applies group commands in the same batch as appends, and turns
// refusals into typed results without stopping.
func TestFSMAppliesGroupCommands(t *testing.T) {
	_, lp := openLog(t, 7)
	f := NewFSM(7, lp, slog.Default(), nil)
	config := &partitionpb.GroupConfig{AckWaitNanos: int64(time.Second), MaxDeliveries: 2, MaxPending: 4}
	results := f.ApplyBatch([]*hraft.Log{
		appendEntry(t, 1, 100, "a", "a", "a", "a", "a", "a"),
		groupEntry(t, 2, &partitionpb.GroupCreateCommand{Group: "g", Config: config}),
		groupEntry(t, 3, &partitionpb.GroupAssignCommand{Group: "g", Generation: 1, Member: "m"}),
		// The append in the same batch is visible: offsets 0..5 exist.
		groupEntry(t, 4, &partitionpb.GroupDeliverCommand{Group: "g", Generation: 1, Member: "m", NewFrom: 0, NewCount: 4, NowUnixNano: 1000}),
		groupEntry(t, 5, &partitionpb.GroupDeliverCommand{Group: "g", Generation: 1, Member: "m", NewFrom: 4, NewCount: 1, NowUnixNano: 1000}),
		groupEntry(t, 6, &partitionpb.GroupAckCommand{Group: "g", Generation: 1, Member: "m", Offsets: []uint64{1, 0, 0, 9}}),
		groupEntry(t, 7, &partitionpb.GroupAckCommand{Group: "g", Generation: 2, Member: "m", Offsets: []uint64{2}}),
		groupEntry(t, 8, &partitionpb.GroupCreateCommand{Group: "", Config: config}),
		groupEntry(t, 9, &partitionpb.GroupNackCommand{Group: "nope", Generation: 1, Member: "m"}),
	})
	require.Equal(t, uint64(9), f.AppliedIndex())

	res, err := groupApplied(t, results[3])
	require.NoError(t, err)
	require.Equal(t, uint64(4), res.State.Pending)
	_, err = groupApplied(t, results[4])
	var maxPending *MaxPendingError
	require.ErrorAs(t, err, &maxPending)
	res, err = groupApplied(t, results[5])
	require.NoError(t, err)
	require.Equal(t, []OffsetOutcome{OffsetApplied, OffsetApplied, OffsetAlreadyDone, OffsetNotDelivered}, res.Outcomes)
	require.ErrorIs(t, res.Outcomes[3].Err(), ErrNotDelivered)
	require.Equal(t, uint64(2), res.State.Floor)
	_, err = groupApplied(t, results[6])
	var stale *StaleGenerationError
	require.ErrorAs(t, err, &stale)
	require.Equal(t, uint64(1), stale.CurrentGeneration)
	_, err = groupApplied(t, results[7])
	require.ErrorIs(t, err, ErrInvalidGroupCommand)
	require.ErrorIs(t, err, heraldlog.ErrInvalidArgument, "the log's error stays reachable")
	_, err = groupApplied(t, results[8])
	require.ErrorIs(t, err, ErrUnknownGroup)

	state, err := lp.GroupState("g")
	require.NoError(t, err)
	require.Equal(t, GroupState{Name: "g", Config: groupConfigFromProto(config), Floor: 2, Delivered: 4, Generation: 1, Member: "m", Pending: 2}, state)
}

// dumpKeys returns every key and value of partition pid whose kind is in
// kinds (all kinds when empty), partition-relative, in key order.
func dumpKeys(t testing.TB, db *heraldlog.DB, pid uint64, kinds ...byte) []string {
	t.Helper()
	lower := binary.BigEndian.AppendUint64([]byte{'p'}, pid)
	upper := binary.BigEndian.AppendUint64([]byte{'p'}, pid+1)
	iter, err := db.Pebble().NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	require.NoError(t, err)
	defer iter.Close()
	var out []string
	for valid := iter.First(); valid; valid = iter.Next() {
		key := iter.Key()[len(lower):]
		if len(kinds) > 0 && !slices.Contains(kinds, key[0]) {
			continue
		}
		out = append(out, fmt.Sprintf("%x=%x", key, iter.Value()))
	}
	require.NoError(t, iter.Error())
	return out
}

// groupKinds are the key kinds of the consumer group state (log/keys.go).
var groupKinds = []byte{'g', 'q', 'r'}

// groupModel draws a random but mostly plausible command sequence for a
// few groups, reading the state a first replica reached.
type groupModel struct {
	rng   *rand.Rand
	log   *heraldlog.Partition
	now   int64
	names []string
}

func (m *groupModel) pick(n int) int { return m.rng.IntN(n) }

// offsets returns up to n distinct offsets around [low, high), sorted.
func (m *groupModel) offsets(low, high uint64, n int) []uint64 {
	var out []uint64
	for range m.pick(n + 1) {
		span := high - low + 4
		o := low + uint64(m.pick(int(span)))
		if o >= 2 {
			o -= 2
		}
		if !slices.Contains(out, o) {
			out = append(out, o)
		}
	}
	slices.Sort(out)
	return out
}

// next returns the next command: an append or a group command.
func (m *groupModel) next(t testing.TB) proto.Message {
	m.now += int64(m.pick(3000)) * int64(time.Millisecond)
	if m.pick(6) == 0 {
		cmd := &partitionpb.AppendCommand{ProducedAtUnixNano: m.now}
		for i := range 1 + m.pick(6) {
			cmd.Records = append(cmd.Records, &partitionpb.AppendRecord{TenantId: "t", Event: fmt.Appendf(nil, "%d-%d", m.now, i)})
		}
		return cmd
	}
	name := m.names[m.pick(len(m.names))]
	high := m.log.HighWatermark()
	state, err := m.log.GroupState(name)
	if errors.Is(err, heraldlog.ErrUnknownGroup) || m.pick(40) == 0 {
		return &partitionpb.GroupCreateCommand{Group: name, StartOffset: uint64(m.pick(int(high) + 1)), Config: &partitionpb.GroupConfig{
			AckWaitNanos: int64(1+m.pick(5)) * int64(time.Second), MaxDeliveries: uint32(m.pick(4)), MaxPending: uint32(1 + m.pick(12)),
		}}
	}
	require.NoError(t, err)
	if state.Generation == 0 && m.pick(3) > 0 {
		return &partitionpb.GroupAssignCommand{Group: name, Generation: 1 + uint64(m.pick(2)), Member: "m0"}
	}
	generation, member := state.Generation, state.Member
	if m.pick(15) == 0 && generation > 0 {
		generation-- // a fenced member
	}
	switch m.pick(20) {
	case 0:
		return &partitionpb.GroupDeleteCommand{Group: name}
	case 1:
		return &partitionpb.GroupResetCommand{Group: name, StartOffset: uint64(m.pick(int(high) + 2))}
	case 2, 3:
		next := state.Generation + 1
		if m.pick(4) == 0 {
			next = state.Generation
		}
		return &partitionpb.GroupAssignCommand{Group: name, Generation: next, Member: fmt.Sprintf("m%d", m.pick(3))}
	case 4, 5, 6, 7, 8:
		from := state.Delivered
		if m.pick(10) == 0 {
			from++
		}
		var redeliver []uint64
		if due, err := m.log.GroupExpired(name, m.now, 5); err == nil {
			for _, d := range due {
				redeliver = append(redeliver, d.Offset)
			}
			slices.Sort(redeliver)
		}
		return &partitionpb.GroupDeliverCommand{Group: name, Generation: generation, Member: member,
			NewFrom: from, NewCount: uint64(m.pick(int(min(high-min(from, high), 5)) + 1)), Redeliver: redeliver, NowUnixNano: m.now}
	case 9, 10, 11, 12, 13:
		cmd := &partitionpb.GroupAckCommand{Group: name, Generation: generation, Member: member,
			Offsets: m.offsets(state.Floor, state.Delivered, 4)}
		m.rng.Shuffle(len(cmd.Offsets), func(i, j int) { cmd.Offsets[i], cmd.Offsets[j] = cmd.Offsets[j], cmd.Offsets[i] })
		if m.pick(4) == 0 {
			cmd.Before = state.Floor + uint64(m.pick(int(state.Delivered-state.Floor)+2))
		}
		return cmd
	case 14, 15, 16:
		return &partitionpb.GroupNackCommand{Group: name, Generation: generation, Member: member,
			Offsets: m.offsets(state.Floor, state.Delivered, 3), DelayNanos: int64(m.pick(4)) * int64(time.Second), NowUnixNano: m.now}
	default:
		return &partitionpb.GroupDeadLetterCommand{Group: name, Offsets: m.offsets(state.Floor, state.Delivered, 3), Reason: "test"}
	}
}

// checkGroupsAgree checks each group's header against its pending
// deliveries, through the read API: the count, the floor (the lowest
// pending offset, or the cursor), every offset below the cursor.
func checkGroupsAgree(t testing.TB, lp *heraldlog.Partition) {
	t.Helper()
	groups, err := lp.Groups()
	require.NoError(t, err)
	for _, g := range groups {
		pending, err := lp.GroupPending(g.Name, 0, GroupPendingMax)
		require.NoError(t, err)
		require.Len(t, pending, int(g.Pending), "group %q", g.Name)
		floor := g.Delivered
		if len(pending) > 0 {
			floor = pending[0].Offset
			require.Less(t, pending[len(pending)-1].Offset, g.Delivered, "group %q", g.Name)
		}
		require.Equal(t, floor, g.Floor, "group %q", g.Name)
		due, err := lp.GroupExpired(g.Name, math.MaxInt64, GroupPendingMax)
		require.NoError(t, err)
		require.Len(t, due, len(pending), "group %q: due index", g.Name)
	}
}

func entryOf(t testing.TB, index uint64, cmd proto.Message) *hraft.Log {
	t.Helper()
	if a, ok := cmd.(*partitionpb.AppendCommand); ok {
		data, err := encodeAppend(a)
		require.NoError(t, err)
		return &hraft.Log{Index: index, Term: 1, Type: hraft.LogCommand, Data: data}
	}
	return groupEntry(t, index, cmd)
}

// applyInBatches applies entries in batches whose sizes rng draws (1..max).
func applyInBatches(f *FSM, entries []*hraft.Log, rng *rand.Rand, maxBatch int) []interface{} {
	var results []interface{}
	for len(entries) > 0 {
		n := min(len(entries), 1+rng.IntN(maxBatch))
		results = append(results, f.ApplyBatch(entries[:n])...)
		entries = entries[n:]
	}
	return results
}

func describe(results []interface{}) []string {
	out := make([]string, len(results))
	for i, r := range results {
		switch r := r.(type) {
		case *groupApplyResult:
			out[i] = fmt.Sprintf("%+v err=%v", r.result, r.err)
		case *appendResult:
			out[i] = fmt.Sprintf("%+v", *r)
		default:
			out[i] = fmt.Sprintf("%v", r)
		}
	}
	return out
}

// Replicas fed the same commands end in byte-identical state, however
// the entries are grouped into apply batches, across a restart of the
// DB, and through a snapshot restored into a fresh replica.
func TestGroupReplicasAreDeterministic(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("GROUP_TEST_SEED"); s != "" {
		var err error
		seed, err = strconv.ParseUint(s, 10, 64)
		require.NoError(t, err)
	}
	t.Logf("seed %d (replay: GROUP_TEST_SEED=%d go test -run TestGroupReplicasAreDeterministic ./partition/)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	const commands = 1500

	// Replica a draws the commands from its own state, one entry at a time.
	dba, la := openLog(t, 5)
	fa := NewFSM(5, la, slog.Default(), nil)
	model := &groupModel{rng: rng, log: la, now: 1_000_000_000, names: []string{"orders", "billing", "audit"}}
	var entries []*hraft.Log
	var resultsA []interface{}
	for i := range commands {
		e := entryOf(t, uint64(i+1), model.next(t))
		entries = append(entries, e)
		resultsA = append(resultsA, fa.ApplyBatch([]*hraft.Log{e})...)
		if i%50 == 0 {
			checkGroupsAgree(t, la)
		}
	}
	checkGroupsAgree(t, la)
	// What the sequence exercised: command types by how they ended.
	seen := map[string]int{}
	for i, r := range resultsA {
		g, ok := r.(*groupApplyResult)
		if !ok {
			continue
		}
		cmd, err := decodeCommand(entries[i].Data)
		require.NoError(t, err)
		kind := strings.TrimPrefix(fmt.Sprintf("%T", cmd), "*partitionpb.")
		switch {
		case g.err != nil:
			var stale *StaleGenerationError
			var maxPending *MaxPendingError
			var cursor *CursorMovedError
			var notDelivered *NotDeliveredError
			switch {
			case errors.As(g.err, &stale):
				kind += " refused:stale"
			case errors.As(g.err, &maxPending):
				kind += " refused:max_pending"
			case errors.As(g.err, &cursor):
				kind += " refused:cursor_moved"
			case errors.As(g.err, &notDelivered):
				kind += " refused:not_delivered"
			default:
				kind += " refused:other"
			}
			seen[kind]++
		default:
			seen[kind+" ok"]++
			for _, o := range g.result.Outcomes {
				seen[kind+" "+o.String()]++
			}
		}
	}
	t.Logf("%d entries: %v", len(entries), seen)
	for _, want := range []string{
		"GroupDeliverCommand ok", "GroupDeliverCommand applied", "GroupDeliverCommand max_deliveries", "GroupDeliverCommand refused:stale",
		"GroupDeliverCommand refused:max_pending", "GroupDeliverCommand refused:cursor_moved", "GroupAckCommand applied", "GroupAckCommand already_done",
		"GroupAckCommand not_delivered", "GroupAckCommand refused:not_delivered", "GroupAckCommand refused:stale", "GroupNackCommand applied",
		"GroupDeadLetterCommand applied", "GroupAssignCommand ok", "GroupAssignCommand refused:stale", "GroupResetCommand ok", "GroupDeleteCommand ok",
	} {
		require.Positive(t, seen[want], "the sequence never exercised %q", want)
	}
	groups, err := la.Groups()
	require.NoError(t, err)
	require.NotEmpty(t, groups)

	// b: the same entries in random batches.
	dbb, lb := openLog(t, 5)
	fb := NewFSM(5, lb, slog.Default(), nil)
	resultsB := applyInBatches(fb, entries, rand.New(rand.NewPCG(seed, 1)), 16)
	require.Equal(t, describe(resultsA), describe(resultsB), "results differ between replicas")
	require.Equal(t, dumpKeys(t, dba, 5, groupKinds...), dumpKeys(t, dbb, 5, groupKinds...))

	// c: one entry per batch like a, with a restart of the DB half way
	// and the last few entries replayed after it.
	dir := filepath.Join(t.TempDir(), "pebble")
	open := func() (*heraldlog.DB, *FSM) {
		db, err := heraldlog.Open(heraldlog.Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		require.NoError(t, err)
		lp, err := db.Partition(5)
		require.NoError(t, err)
		return db, NewFSM(5, lp, slog.Default(), nil)
	}
	dbc, fc := open()
	half := len(entries) / 2
	for _, e := range entries[:half] {
		fc.ApplyBatch([]*hraft.Log{e})
	}
	require.NoError(t, dbc.Close())
	dbc, fc = open()
	defer dbc.Close()
	for _, e := range entries[half-10:] {
		fc.ApplyBatch([]*hraft.Log{e})
	}
	require.Equal(t, dumpKeys(t, dba, 5), dumpKeys(t, dbc, 5), "restarted replica differs")

	// d: a snapshot of a replica half way, restored into a fresh one that
	// applies the rest.
	dbe, le := openLog(t, 5)
	fe := NewFSM(5, le, slog.Default(), nil)
	for _, e := range entries[:half] {
		fe.ApplyBatch([]*hraft.Log{e})
	}
	snap, err := fe.Snapshot()
	require.NoError(t, err)
	sink := &memSink{}
	require.NoError(t, snap.Persist(sink))
	snap.Release()
	dbd, ld := openLog(t, 5)
	fd := NewFSM(5, ld, slog.Default(), nil)
	require.NoError(t, fd.Restore(io.NopCloser(&sink.Buffer)))
	require.Equal(t, dumpKeys(t, dbe, 5), dumpKeys(t, dbd, 5), "restored replica differs from its snapshot's source")
	for _, e := range entries[half:] {
		fd.ApplyBatch([]*hraft.Log{e})
	}
	require.Equal(t, dumpKeys(t, dba, 5), dumpKeys(t, dbd, 5), "restored replica differs after the rest")
	restored, err := ld.Groups()
	require.NoError(t, err)
	require.Equal(t, groups, restored)
}

// The Replica proposes group commands through Raft and serves the reads.
func TestReplicaGroupCommands(t *testing.T) {
	n := startReplicaNode(t, "n1", nil)
	r := n.openReplica(t, 1, voters(n), nil)
	awaitLeader(t, r)
	produce(t, r, plainRecords("acme", 10))

	_, err := r.GroupCreate("g", GroupConfig{AckWait: time.Second, MaxDeliveries: 3, MaxPending: 8}, 0)
	require.NoError(t, err)
	_, err = r.GroupCreate("g", GroupConfig{AckWait: time.Second, MaxPending: 8}, 0)
	require.ErrorIs(t, err, ErrGroupExists)
	_, err = r.GroupAssign("g", 1, "m1")
	require.NoError(t, err)
	now := time.Unix(100, 0)
	res, err := r.GroupDeliver(GroupDeliverRequest{Group: "g", Generation: 1, Member: "m1", NewFrom: 0, NewCount: 5, NowUnixNano: now.UnixNano()})
	require.NoError(t, err)
	require.Equal(t, uint64(5), res.State.Delivered)
	res, err = r.GroupAck(GroupAckRequest{Group: "g", Generation: 1, Member: "m1", Before: 2, Offsets: []uint64{3}})
	require.NoError(t, err)
	require.Equal(t, uint64(3), res.Done)
	_, err = r.GroupNack(GroupNackRequest{Group: "g", Generation: 1, Member: "m1", Offsets: []uint64{2}, NowUnixNano: now.UnixNano()})
	require.NoError(t, err)
	expired, err := r.GroupExpired("g", now, 10)
	require.NoError(t, err)
	require.Len(t, expired, 1)
	require.Equal(t, uint64(2), expired[0].Offset)
	res, err = r.GroupDeadLetter("g", []uint64{2}, "poison")
	require.NoError(t, err)
	require.Equal(t, uint64(1), res.State.DeadLettered)
	_, err = r.GroupAssign("g", 2, "m2")
	require.NoError(t, err)
	_, err = r.GroupAck(GroupAckRequest{Group: "g", Generation: 1, Member: "m1", Offsets: []uint64{4}})
	require.ErrorIs(t, err, ErrStaleGeneration)

	state, err := r.GroupState("g")
	require.NoError(t, err)
	require.Equal(t, GroupState{Name: "g", Config: GroupConfig{AckWait: time.Second, MaxDeliveries: 3, MaxPending: 8},
		Floor: 4, Delivered: 5, Generation: 2, Member: "m2", Pending: 1, DeadLettered: 1}, state)
	pending, err := r.GroupPending("g", 0, 10)
	require.NoError(t, err)
	require.Len(t, pending, 1)
	groups, err := r.Groups()
	require.NoError(t, err)
	require.Equal(t, []GroupState{state}, groups)
	_, err = r.GroupReset("g", 10)
	require.NoError(t, err)
	_, err = r.GroupDelete("g")
	require.NoError(t, err)
	_, err = r.GroupState("g")
	require.ErrorIs(t, err, ErrUnknownGroup)
}

// Issue 12's rule: a leader failover loses no acknowledgement, and the new
// leader redelivers only what was not acknowledged.
func TestGroupAcknowledgementsSurviveLeaderFailover(t *testing.T) {
	nodes := []*replicaNode{startReplicaNode(t, "n1", nil), startReplicaNode(t, "n2", nil), startReplicaNode(t, "n3", nil)}
	servers := voters(nodes...)
	replicas := make([]*Replica, len(nodes))
	for i, n := range nodes {
		replicas[i] = n.openReplica(t, 1, servers, nil)
	}
	leader := awaitLeader(t, replicas...)
	produce(t, leader, plainRecords("acme", 10))
	_, err := leader.GroupCreate("g", GroupConfig{AckWait: time.Minute, MaxDeliveries: 5, MaxPending: 100}, 0)
	require.NoError(t, err)
	_, err = leader.GroupAssign("g", 1, "m1")
	require.NoError(t, err)
	now := time.Unix(1000, 0)
	_, err = leader.GroupDeliver(GroupDeliverRequest{Group: "g", Generation: 1, Member: "m1", NewFrom: 0, NewCount: 10, NowUnixNano: now.UnixNano()})
	require.NoError(t, err)
	acked, err := leader.GroupAck(GroupAckRequest{Group: "g", Generation: 1, Member: "m1", Before: 4, Offsets: []uint64{6, 8}})
	require.NoError(t, err)
	require.Equal(t, uint64(4), acked.State.Floor)
	require.Equal(t, uint64(4), acked.State.Pending)

	require.NoError(t, leader.Close())
	var rest []*Replica
	for _, r := range replicas {
		if r != leader {
			rest = append(rest, r)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var next *Replica
	require.Eventually(t, func() bool {
		next = awaitLeader(t, rest...)
		return next.CatchUp(ctx) == nil
	}, 20*time.Second, 10*time.Millisecond, "no caught-up leader after the failover")
	state, err := next.GroupState("g")
	require.NoError(t, err)
	require.Equal(t, acked.State, state, "the new leader lost acknowledgements")

	// The new owner redelivers what is due: exactly what was not acknowledged.
	_, err = next.GroupAssign("g", 2, "m2")
	require.NoError(t, err)
	due, err := next.GroupExpired("g", now.Add(time.Minute), 100)
	require.NoError(t, err)
	var offsets []uint64
	for _, d := range due {
		offsets = append(offsets, d.Offset)
	}
	require.Equal(t, []uint64{4, 5, 7, 9}, offsets)
	res, err := next.GroupDeliver(GroupDeliverRequest{Group: "g", Generation: 2, Member: "m2", Redeliver: offsets, NowUnixNano: now.Add(time.Minute).UnixNano()})
	require.NoError(t, err)
	require.Equal(t, []OffsetOutcome{OffsetApplied, OffsetApplied, OffsetApplied, OffsetApplied}, res.Outcomes)
	res, err = next.GroupAck(GroupAckRequest{Group: "g", Generation: 2, Member: "m2", Offsets: offsets})
	require.NoError(t, err)
	require.Equal(t, uint64(10), res.State.Floor)
}
