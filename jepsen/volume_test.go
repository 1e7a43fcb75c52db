package jepsen

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// volumeHistory builds a volume-mode history of batches batches of
// batchEvents events each over partitions partitions and tenants tenants
// (in a seeded random order), every one acknowledged, then a final read of
// every partition on each of nodes: what a clean run records.
func volumeHistory(seed uint64, batches, batchEvents int, partitions uint32, nodes []string) History {
	rng := rand.New(rand.NewPCG(seed, 1))
	var h History
	finals := make([][]Observed, partitions)
	nextSeq := map[string]uint64{}
	for b := range batches {
		tenant := fmt.Sprintf("t%d", rng.IntN(8))
		p := uint32(rng.IntN(int(partitions)))
		prefix := fmt.Sprintf("v0-0-%d", b)
		op := Op{Type: TypeOK, F: FProduceBatch, Tenant: tenant, EventID: prefix, Partition: p, Count: batchEvents,
			Offset: uint64(len(finals[p])), Sequence: nextSeq[tenant+string(rune('0'+p))] + 1, Time: int64(b)}
		for k := range batchEvents {
			finals[p] = append(finals[p], Observed{Offset: op.Offset + uint64(k), Sequence: op.Sequence + uint64(k), Tenant: tenant, EventID: BatchEventID(prefix, k)})
		}
		nextSeq[tenant+string(rune('0'+p))] += uint64(batchEvents)
		h = append(h, op)
		if b%50 == 0 { // a reader's page now and then
			log := finals[p]
			from := rng.IntN(len(log))
			h = append(h, Op{Type: TypeOK, F: FRead, Node: nodes[rng.IntN(len(nodes))], Partition: p, Mode: ModeOffset, From: uint64(from),
				Events: append([]Observed(nil), log[from:min(from+readPageEventsMax, len(log))]...)})
		}
	}
	for _, n := range nodes {
		for p := range partitions {
			h = append(h, Op{Type: TypeOK, F: FFinalRead, Node: n, Partition: p, Mode: ModeOffset, Events: append([]Observed(nil), finals[p]...)})
		}
	}
	for i := range h {
		h[i].Index = i
	}
	return h
}

// TestCheckersFireAtVolume: over a volume-mode history of 200,000 events,
// the clean history passes every checker, and each hand-made violation is
// caught by the checker meant for it (a lost event, an event stored twice,
// two events at one offset, a sequence gap, replicas that differ, a failed
// batch that was written).
func TestCheckersFireAtVolume(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	nodes := []string{"n1", "n2", "n3"}
	const batches, batchEvents = 1000, 200
	base := volumeHistory(seed, batches, batchEvents, 3, nodes)
	finalOf := func(h History, node string, p uint32) *Op {
		for i := range h {
			if h[i].F == FFinalRead && h[i].Node == node && h[i].Partition == p {
				return &h[i]
			}
		}
		t.Fatalf("no final read of %s partition %d", node, p)
		return nil
	}
	clone := func() History {
		h := append(History(nil), base...)
		for i := range h {
			h[i].Events = append([]Observed(nil), h[i].Events...)
		}
		return h
	}
	status := func(vs []Verdict) map[string]Verdict {
		m := map[string]Verdict{}
		for _, v := range vs {
			m[v.Name] = v
		}
		return m
	}

	clean := status(Check(base))
	for name, v := range clean {
		require.Truef(t, v.OK(), "clean history: %s %s %v", name, v.Status, v.Counterexamples)
	}
	require.Equal(t, StatusSkipped, clean[CheckLinearizable].Status)
	require.Contains(t, clean[CheckLostWrite].Note, fmt.Sprint(batches*batchEvents))

	cases := []struct {
		name   string
		damage func(h History) History
		want   []string
	}{
		{"an acknowledged event lost on one node", func(h History) History {
			f := finalOf(h, "n2", 1)
			f.Events = append(f.Events[:10], f.Events[11:]...)
			return h
		}, []string{CheckLostWrite, CheckConvergence}},
		{"an event stored twice", func(h History) History {
			for _, n := range nodes {
				f := finalOf(h, n, 0)
				e := f.Events[5]
				e.Offset = uint64(len(f.Events))
				e.Sequence = 1 << 40
				f.Events = append(f.Events, e)
			}
			return h
		}, []string{CheckDuplicate}},
		{"two events at one offset", func(h History) History {
			f := finalOf(h, "n3", 2)
			f.Events[7].EventID = "intruder"
			return h
		}, []string{CheckPosition, CheckLostWrite}},
		{"a tenant's sequence skips one", func(h History) History {
			for _, n := range nodes {
				finalOf(h, n, 1).Events[20].Sequence += 1000
			}
			return h
		}, []string{CheckTenantSeq}},
		{"a failed batch read back", func(h History) History {
			for i := range h {
				if h[i].F == FProduceBatch {
					h[i].Type = TypeFail
					h[i].Error = "refused"
					break
				}
			}
			return h
		}, []string{CheckFailedNotRead}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := status(Check(c.damage(clone())))
			for _, name := range c.want {
				require.Equalf(t, StatusFail, got[name].Status, "%s: %s did not fire (seed %d)", c.name, name, seed)
			}
		})
	}
}

// TestVolumeHistoryRoundTrips: a produce batch survives history.jsonl, so
// a run's history can be checked again (herald jepsen --check).
func TestVolumeHistoryRoundTrips(t *testing.T) {
	var buf bytes.Buffer
	rec := NewRecorder(&buf)
	rec.Record(Op{Type: TypeOK, F: FProduceBatch, Tenant: "a", EventID: "v1-0-7", Count: 3, Offset: 10, Sequence: 4, Offsets: []uint64{10, 12, 13}})
	require.NoError(t, rec.Flush())
	h, err := readHistory(strings.NewReader(buf.String()), "mem")
	require.NoError(t, err)
	require.Len(t, h, 1)
	require.Equal(t, []Observed{
		{Offset: 10, Sequence: 4, Tenant: "a", EventID: "v1-0-7.0"},
		{Offset: 12, Sequence: 5, Tenant: "a", EventID: "v1-0-7.1"},
		{Offset: 13, Sequence: 6, Tenant: "a", EventID: "v1-0-7.2"},
	}, h[0].batchEvents())
}

// TestVolumeScheduleHoldsOneNodeDown: kill:one windows last laggardDown,
// later faults move later, and none ends past the run.
func TestVolumeScheduleHoldsOneNodeDown(t *testing.T) {
	const d = 3 * time.Minute
	faults := volumeSchedule(Schedule(7, 3, Nemeses, d), d)
	require.NotEmpty(t, faults)
	var end time.Duration
	for _, f := range faults {
		require.GreaterOrEqual(t, f.At, end, "fault %s overlaps the previous one", f)
		if f.Kind == NemesisKill && f.Variant == "one" {
			require.Equal(t, laggardDown, f.For)
		}
		end = f.At + f.For
		require.LessOrEqual(t, end, d)
	}
}

func TestParsePathCounters(t *testing.T) {
	text := `# HELP herald_raft_rpcs_received_total x
herald_raft_rpcs_received_total{type="append_entries"} 100
herald_raft_rpcs_received_total{type="install_snapshot"} 3
herald_partition_snapshots_total 7
herald_raft_rejoins_total{stage="started"} 2
herald_raft_rejoins_total{stage="promoted"} 1
`
	got, err := parsePathCounters(strings.NewReader(text))
	require.NoError(t, err)
	require.Equal(t, 3.0, got[PathSnapshotInstalls])
	require.Equal(t, 7.0, got[PathSnapshots])
	require.Equal(t, 1.0, got[PathRejoins])
	require.Equal(t, StatusUnknown, checkPaths(PathCounts(got), false).Status, "no restores: not every path taken")
}

// TestFinalLogsShareEqualEvents: a final log equal to an earlier one of
// the same partition and topic shares its events (one copy at volume,
// not one per node); a differing one, or one of another topic, keeps its
// own; tenant ids are interned. Values are unchanged either way.
func TestFinalLogsShareEqualEvents(t *testing.T) {
	log := func(ids ...string) []Observed { return events(0, ids...) }
	var buf bytes.Buffer
	rec := NewRecorder(&buf)
	rec.Record(Op{Type: TypeOK, F: FFinalRead, Node: "n1", Events: log("a", "b")})
	rec.Record(Op{Type: TypeOK, F: FFinalRead, Node: "n2", Events: log("a", "b")})
	rec.Record(Op{Type: TypeOK, F: FFinalRead, Node: "n3", Events: log("a", "c")})
	rec.Record(Op{Type: TypeOK, F: FFinalRead, Node: "n1", Topic: retainedTopicName, Events: log("a", "b")})
	require.NoError(t, rec.Flush())
	for _, h := range []History{rec.History(), mustReadHistory(t, buf.String())} {
		require.Same(t, &h[0].Events[0], &h[1].Events[0])
		require.NotSame(t, &h[0].Events[0], &h[2].Events[0])
		require.NotSame(t, &h[0].Events[0], &h[3].Events[0])
		require.Equal(t, log("a", "c"), h[2].Events)
		require.Equal(t, unsafe.StringData(h[0].Events[0].Tenant), unsafe.StringData(h[2].Events[1].Tenant))
	}
}

func mustReadHistory(t *testing.T, s string) History {
	t.Helper()
	h, err := readHistory(strings.NewReader(s), "mem")
	require.NoError(t, err)
	return h
}

// TestLostWriteFindsAnEventMovedElsewhere: no-lost-write looks an event up
// at its acknowledged offset first, then in the whole log: an event that
// moved is not lost (same-order reports the move), one that is gone is.
func TestLostWriteFindsAnEventMovedElsewhere(t *testing.T) {
	nodes := []string{"n1", "n2", "n3"}
	h := volumeHistory(1, 20, 10, 1, nodes)
	for i := range h {
		if h[i].F == FFinalRead && h[i].Node == "n2" {
			ev := append([]Observed(nil), h[i].Events...)
			ev[3].EventID, ev[4].EventID = ev[4].EventID, ev[3].EventID
			h[i].Events = ev
		}
	}
	require.Equal(t, StatusPass, verdictOf(t, h, CheckLostWrite).Status)
	require.Equal(t, StatusFail, verdictOf(t, h, CheckSameOrder).Status)
}

// TestPathsRequireATrimWithTheRetainedTopic: a run that wrote the retained
// topic and saw no retention trim did not test what it is for.
func TestPathsRequireATrimWithTheRetainedTopic(t *testing.T) {
	c := PathCounts{PathSnapshots: 5, PathSnapshotInstalls: 1, PathRestores: 1}
	require.Equal(t, StatusPass, checkPaths(c, false).Status)
	v := checkPaths(c, true)
	require.Equal(t, StatusUnknown, v.Status)
	require.Contains(t, v.Note, "took none of: "+PathRetentionTrims)
	c[PathRetentionTrims] = 3
	require.Equal(t, StatusPass, checkPaths(c, true).Status)
}
