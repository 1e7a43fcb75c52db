package jepsen

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// hist builds hand-made histories: times are whole milliseconds.
type hist struct{ ops History }

func ms(n int) int64 { return int64(n) * 1_000_000 }

// produce records an invoke at t0 and a completion of typ at t1; for ok,
// at (partition 0, offset) with the tenant's sequence seq.
func (h *hist) produce(proc int, id, typ string, t0, t1 int, offset, seq uint64) {
	h.ops = append(h.ops, Op{Type: TypeInvoke, F: FProduce, Process: proc, Time: ms(t0), Tenant: "a", EventID: id})
	h.ops = append(h.ops, Op{Type: typ, F: FProduce, Process: proc, Time: ms(t1), LatencyNs: ms(t1 - t0), Tenant: "a", EventID: id, Offset: offset, Sequence: seq})
}

// read records a read of partition 0 on node from t0 to t1 that saw ids
// at offsets from first on, tenant "a" sequences from first+1.
func (h *hist) read(proc int, node string, t0, t1 int, first uint64, ids ...string) {
	h.ops = append(h.ops, Op{Type: TypeOK, F: FRead, Process: proc, Node: node, Time: ms(t1), LatencyNs: ms(t1 - t0), Mode: ModeOffset, From: first, Events: events(first, ids...)})
}

// final records node's final log of partition 0.
func (h *hist) final(node string, t int, ids ...string) {
	h.ops = append(h.ops, Op{Type: TypeOK, F: FFinalRead, Process: -2, Node: node, Time: ms(t), Mode: ModeOffset, Events: events(0, ids...)})
}

func events(first uint64, ids ...string) []Observed {
	out := make([]Observed, len(ids))
	for k, id := range ids {
		out[k] = Observed{Offset: first + uint64(k), Sequence: first + uint64(k) + 1, Tenant: "a", EventID: id}
	}
	return out
}

func (h *hist) history() History {
	for i := range h.ops {
		h.ops[i].Index = i
	}
	return h.ops
}

// clean is a history every checker passes: three acknowledged events, one
// unknown outcome that was applied, one definite failure never seen,
// reads on two nodes, identical final logs.
func clean() *hist {
	h := &hist{}
	h.produce(0, "e0", TypeOK, 0, 10, 0, 1)
	h.produce(1, "e1", TypeOK, 5, 20, 1, 2)
	h.read(2, "n1", 21, 22, 0, "e0", "e1")
	h.produce(0, "e2", TypeInfo, 30, 40, 0, 0)
	h.produce(1, "e3", TypeFail, 30, 40, 0, 0)
	h.produce(0, "e4", TypeOK, 41, 50, 3, 4)
	h.read(3, "n2", 45, 60, 1, "e1", "e2", "e4")
	h.final("n1", 100, "e0", "e1", "e2", "e4")
	h.final("n2", 100, "e0", "e1", "e2", "e4")
	h.final("n3", 100, "e0", "e1", "e2", "e4")
	return h
}

func verdictOf(t *testing.T, h History, name string) Verdict {
	t.Helper()
	for _, v := range Check(h) {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no verdict %s", name)
	return Verdict{}
}

func TestCheckCleanHistoryPasses(t *testing.T) {
	vs := Check(clean().history())
	require.Len(t, vs, 15)
	for _, v := range vs {
		require.Truef(t, v.OK(), "%s: %s %v %s", v.Name, v.Status, v.Counterexamples, v.Note)
	}
	sum := Summarize(clean().history(), vs)
	require.Equal(t, Summary{Operations: 10, Acknowledged: 3, Failed: 1, Unknown: 1, Reads: 5}, sum)
	require.Contains(t, sum.String(), "PASS")
}

// Each case breaks the clean history in one way and names the checker
// that must report it.
func TestCheckersReportViolations(t *testing.T) {
	cases := []struct {
		name    string
		checker string
		build   func() *hist
	}{
		{"lost write", CheckLostWrite, func() *hist {
			h := clean()
			h.ops = h.ops[:len(h.ops)-3]
			h.final("n1", 100, "e0", "e1", "e2", "e4")
			h.final("n2", 100, "e0", "e1", "e2") // e4 acknowledged, gone
			h.final("n3", 100, "e0", "e1", "e2", "e4")
			return h
		}},
		{"duplicate", CheckDuplicate, func() *hist {
			h := clean()
			h.read(2, "n3", 70, 71, 2, "e2", "e4", "e2") // e2 stored twice
			return h
		}},
		{"position conflict", CheckPosition, func() *hist {
			h := clean()
			h.read(2, "n3", 70, 71, 1, "e9") // another event at offset 1
			return h
		}},
		{"gap in tenant sequences", CheckTenantSeq, func() *hist {
			h := clean()
			h.ops = h.ops[:len(h.ops)-3]
			log := events(0, "e0", "e1", "e2", "e4")
			log[3].Sequence = 5 // 1, 2, 3, 5
			for _, n := range []string{"n1", "n2", "n3"} {
				h.ops = append(h.ops, Op{Type: TypeOK, F: FFinalRead, Node: n, Time: ms(100), Events: log})
			}
			return h
		}},
		{"reorder", CheckSameOrder, func() *hist {
			h := clean()
			h.read(2, "n3", 70, 71, 0, "e1", "e0") // e0 and e1 swapped
			return h
		}},
		{"failed write read", CheckFailedNotRead, func() *hist {
			h := clean()
			h.read(2, "n3", 70, 71, 4, "e3") // e3 failed definitively
			return h
		}},
		{"divergence", CheckConvergence, func() *hist {
			h := clean()
			h.ops = h.ops[:len(h.ops)-3]
			h.final("n1", 100, "e0", "e1", "e2", "e4")
			h.final("n2", 100, "e0", "e1", "e2", "e4")
			h.final("n3", 100, "e0", "e1", "e2", "e4", "e5") // an extra event on one replica
			return h
		}},
		{"read before write (not linearizable)", CheckLinearizable, func() *hist {
			h := clean()
			// A read that returned at 3 ms saw e1, whose produce was only
			// invoked at 5 ms.
			h.read(2, "n1", 1, 3, 1, "e1")
			return h
		}},
		{"acknowledged offset answered out of range", CheckAckedReadable, func() *hist {
			h := clean()
			h.ops = append(h.ops, Op{Type: TypeFail, F: FRead, Process: 2, Node: "n3", Time: ms(70), Mode: ModeAcked, From: 1,
				Error: "rpc error: code = OutOfRange desc = offset 1 out of range [0, 0)"})
			return h
		}},
		{"acknowledged out of real-time order (not linearizable)", CheckLinearizable, func() *hist {
			h := &hist{}
			h.produce(0, "e0", TypeOK, 0, 10, 1, 1) // done before e1 began, yet after it in the log
			h.produce(1, "e1", TypeOK, 20, 30, 0, 2)
			h.final("n1", 100, "e1", "e0")
			return h
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := verdictOf(t, tc.build().history(), tc.checker)
			require.Equal(t, StatusFail, v.Status, "%+v", v)
			require.Positive(t, v.Violations)
			require.NotEmpty(t, v.Counterexamples)
			t.Log(v.Counterexamples[0])
		})
	}
}

func TestCheckUnknownWhenFinalReadFailed(t *testing.T) {
	h := clean()
	h.ops = append(h.ops, Op{Type: TypeFail, F: FFinalRead, Node: "n4", Time: ms(100), Error: "unavailable"})
	v := verdictOf(t, h.history(), CheckLostWrite)
	require.Equal(t, StatusUnknown, v.Status)
	require.False(t, v.OK())
}

func TestVerdictCounterexamplesBounded(t *testing.T) {
	h := clean()
	h.ops = h.ops[:len(h.ops)-3]
	h.final("n1", 100)
	for k := range 30 {
		h.produce(0, fmt.Sprintf("x%d", k), TypeOK, 200+k, 201+k, uint64(k), uint64(k+1))
	}
	v := verdictOf(t, h.history(), CheckLostWrite)
	require.Equal(t, 33, v.Violations)
	require.Len(t, v.Counterexamples, counterexamplesMax)
}

// A violation far from offset 0 is found by the window that starts where
// the log stood when a fault began.
func TestLinearizableWindowAtFault(t *testing.T) {
	h := &hist{}
	var ids []string
	for k := range 450 {
		id := fmt.Sprintf("e%d", k)
		ids = append(ids, id)
		h.produce(0, id, TypeOK, 10*k, 10*k+5, uint64(k), uint64(k+1))
	}
	h.ops = append(h.ops, Op{Type: TypeInfo, F: FFault, Time: ms(2500), End: ms(2600), Fault: "kill:one"})
	// Seen at 2,600 ms, but e300 was only invoked at 3,000 ms.
	h.read(1, "n2", 2590, 2600, 300, "e300")
	h.final("n1", 10_000, ids...)
	v := verdictOf(t, h.history(), CheckLinearizable)
	require.Equal(t, StatusFail, v.Status, "%+v", v)
	require.Contains(t, v.Counterexamples[0], "offsets 250 to 449")
}

func TestRegistryCheckerFailsOnStaleReads(t *testing.T) {
	ms := int64(time.Millisecond)
	h := History{
		{Index: 0, Type: TypeOK, F: FRegistry, Mode: RegCreateTenant, Name: "rw-tenant-0", Node: "n1", Time: 10 * ms, LatencyNs: 5 * ms},
		{Index: 1, Type: TypeOK, F: FRegistry, Mode: RegCreateTopic, Name: "rw-topic-0", Node: "n1", Time: 20 * ms, LatencyNs: 5 * ms},
		// Began after both were acknowledged, through another node: stale.
		{Index: 2, Type: TypeOK, F: FRegistry, Mode: RegListTenants, Node: "n2", Time: 30 * ms, LatencyNs: 5 * ms},
		{Index: 3, Type: TypeOK, F: FRegistry, Mode: RegDescribeTopic, Name: "rw-topic-0", Node: "n2", Time: 30 * ms, LatencyNs: 5 * ms},
		// Concurrent with the create: either answer is fine.
		{Index: 4, Type: TypeOK, F: FRegistry, Mode: RegListTenants, Node: "n3", Time: 12 * ms, LatencyNs: 8 * ms},
		{Index: 5, Type: TypeOK, F: FRegistry, Mode: RegDeleteTopic, Name: "rw-topic-0", Node: "n1", Time: 40 * ms, LatencyNs: 5 * ms},
		// After the delete was acknowledged: still found is stale.
		{Index: 6, Type: TypeOK, F: FRegistry, Mode: RegDescribeTopic, Name: "rw-topic-0", Node: "n3", Found: true, Time: 50 * ms, LatencyNs: 5 * ms},
		{Index: 7, Type: TypeOK, F: FRegistry, Mode: RegListTenants, Node: "n3", Names: []string{"rw-tenant-0"}, Time: 50 * ms, LatencyNs: 5 * ms},
	}
	v := checkRegistry(h)
	require.Equal(t, StatusFail, v.Status)
	require.Equal(t, 3, v.Violations, v.Counterexamples)
	good := History{h[0], h[1], h[4], h[5], h[7]}
	good = append(good, Op{Index: 8, Type: TypeOK, F: FRegistry, Mode: RegDescribeTopic, Name: "rw-topic-0", Node: "n2", Found: true, Time: 30 * ms, LatencyNs: 5 * ms})
	require.Equal(t, StatusPass, checkRegistry(good).Status, checkRegistry(good).Counterexamples)
}

func TestResendCheckerFailsOnRefusedOrRestoredResend(t *testing.T) {
	h := History{
		{Index: 0, Type: TypeOK, F: FResend, Process: 8, Tenant: "resend-0", Offset: 100},
		{Index: 1, Type: TypeFail, F: FResend, Process: 8, Tenant: "resend-0", From: 1, Error: "rpc error: code = FailedPrecondition desc = out of order sequence"},
		{Index: 2, Type: TypeOK, F: FResend, Process: 8, Tenant: "resend-1", Offset: 3000},
		{Index: 3, Type: TypeOK, F: FResend, Process: 8, Tenant: "resend-1", From: 1, Offset: 5500, Dups: 1024},
		{Index: 4, Type: TypeOK, F: FResend, Process: 8, Tenant: "resend-2", Offset: 9000},
		{Index: 5, Type: TypeOK, F: FResend, Process: 8, Tenant: "resend-2", From: 1, Offset: 9000, Dups: resendEvents},
		{Index: 6, Type: TypeOK, F: FResend, Process: 8, Tenant: "resend-3", Offset: 12000},
		{Index: 7, Type: TypeInfo, F: FResend, Process: 8, Tenant: "resend-3", From: 1, Error: "Unavailable"},
	}
	v := checkResend(h)
	require.Equal(t, StatusFail, v.Status)
	require.Equal(t, 2, v.Violations, v.Counterexamples)
	require.Equal(t, StatusPass, checkResend(h[4:]).Status)
}

func TestAckedReadableCheckerFindsOutOfRange(t *testing.T) {
	good := History{
		{Index: 0, F: FRead, Type: TypeOK, Mode: ModeAcked, Node: "n2", Partition: 0, From: 7},
		{Index: 1, F: FRead, Type: TypeFail, Mode: ModeAcked, Node: "n3", Partition: 0, From: 9, Error: "rpc error: code = Unavailable desc = herald: no leader"},
		{Index: 2, F: FRead, Type: TypeFail, Mode: ModeOffset, Node: "n3", Partition: 0, From: 99, Error: "rpc error: code = OutOfRange desc = herald: offset 99 out of range [0, 20)"},
	}
	if v := checkAckedReadable(good); v.Status != StatusPass {
		t.Fatalf("clean history: %+v", v)
	}
	bad := append(good, Op{Index: 3, F: FRead, Type: TypeFail, Mode: ModeAcked, Node: "n1", Partition: 1, From: 2005,
		Error: "rpc error: code = OutOfRange desc = herald: offset 2005 out of range [0, 5)"})
	v := checkAckedReadable(bad)
	if v.Status != StatusFail || v.Violations != 1 {
		t.Fatalf("out-of-range read of an acknowledged offset not caught: %+v", v)
	}
}
