package log

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"github.com/stretchr/testify/require"
)

// TestGroupScenarios runs the scripts under testdata/groups: each
// directive applies one group command (its own committed batch) or reads,
// and prints the outcome and the group's whole state after it, so that a
// script reads as a trace of the state machine. Regenerate the expected
// output with `go test ./log/ -run TestGroupScenarios -rewrite` and review
// the diff.
//
// Directives (times and ack waits in nanoseconds):
//
//	records n=<count>                        append count records
//	create g=<name> ack-wait=<ns> max-deliveries=<n> max-pending=<n> [start=<offset>]
//	reset g=<name> start=<offset>
//	delete g=<name>
//	assign g=<name> gen=<n> member=<id>
//	deliver g=<name> gen=<n> member=<id> now=<ns> [from=<offset> count=<n>] [redeliver=(o,o,...)]
//	ack g=<name> gen=<n> member=<id> [before=<offset>] [offsets=(o,o,...)]
//	nack g=<name> gen=<n> member=<id> now=<ns> delay=<ns> offsets=(o,...)
//	dead-letter g=<name> offsets=(o,...)
//	expired g=<name> now=<ns> [limit=<n>]
func TestGroupScenarios(t *testing.T) {
	datadriven.Walk(t, "testdata/groups", func(t *testing.T, path string) {
		h := newGroupHarness(t, 0)
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			return runGroupDirective(t, h, d)
		})
	})
}

func runGroupDirective(t *testing.T, h *groupHarness, d *datadriven.TestData) string {
	h.t = t
	str := func(key string) string {
		var v string
		d.ScanArgs(t, key, &v)
		return v
	}
	num := func(key string, def uint64) uint64 {
		if !d.HasArg(key) {
			return def
		}
		var v uint64
		d.ScanArgs(t, key, &v)
		return v
	}
	signed := func(key string) int64 {
		var v int64
		d.ScanArgs(t, key, &v)
		return v
	}
	offsets := func(key string) []uint64 {
		arg, ok := d.Arg(key)
		if !ok {
			return nil
		}
		out := make([]uint64, len(arg.Vals))
		for i, v := range arg.Vals {
			o, err := strconv.ParseUint(v, 10, 64)
			require.NoError(t, err, "%s: %q", key, v)
			out[i] = o
		}
		return out
	}

	var name string
	var fn func(b *Batch) (GroupResult, error)
	switch d.Cmd {
	case "records":
		h.applied++
		commitBatch(t, h.p, h.applied, entries(int(num("n", 1)), "t"))
		return fmt.Sprintf("high watermark %d\n", h.p.HighWatermark())
	case "expired":
		due, err := h.p.GroupExpired(str("g"), signed("now"), int(num("limit", 100)))
		if err != nil {
			return fmt.Sprintf("error: %v\n", err)
		}
		var b strings.Builder
		for _, p := range due {
			fmt.Fprintf(&b, "%s\n", formatPending(p))
		}
		if b.Len() == 0 {
			return "none\n"
		}
		return b.String()
	case "create":
		name = str("g")
		config := GroupConfig{AckWait: time.Duration(signed("ack-wait")), MaxDeliveries: uint32(num("max-deliveries", 0)), MaxPending: uint32(num("max-pending", 0))}
		fn = func(b *Batch) (GroupResult, error) { return b.GroupCreate(name, config, num("start", 0)) }
	case "reset":
		name = str("g")
		fn = func(b *Batch) (GroupResult, error) { return b.GroupReset(name, num("start", 0)) }
	case "delete":
		name = str("g")
		fn = func(b *Batch) (GroupResult, error) { return b.GroupDelete(name) }
	case "assign":
		name = str("g")
		fn = func(b *Batch) (GroupResult, error) { return b.GroupAssign(name, num("gen", 0), str("member")) }
	case "deliver":
		name = str("g")
		req := GroupDeliverRequest{Group: name, Generation: num("gen", 0), Member: str("member"),
			NewFrom: num("from", 0), NewCount: num("count", 0), Redeliver: offsets("redeliver"), NowUnixNano: signed("now")}
		fn = func(b *Batch) (GroupResult, error) { return b.GroupDeliver(req) }
	case "ack":
		name = str("g")
		req := GroupAckRequest{Group: name, Generation: num("gen", 0), Member: str("member"), Before: num("before", 0), Offsets: offsets("offsets")}
		fn = func(b *Batch) (GroupResult, error) { return b.GroupAck(req) }
	case "nack":
		name = str("g")
		req := GroupNackRequest{Group: name, Generation: num("gen", 0), Member: str("member"), Offsets: offsets("offsets"),
			Delay: time.Duration(signed("delay")), NowUnixNano: signed("now")}
		fn = func(b *Batch) (GroupResult, error) { return b.GroupNack(req) }
	case "dead-letter":
		name = str("g")
		fn = func(b *Batch) (GroupResult, error) { return b.GroupDeadLetter(name, offsets("offsets")) }
	default:
		t.Fatalf("%s: unknown directive %q", d.Pos, d.Cmd)
	}

	res, err := h.apply(fn)
	var b strings.Builder
	if err != nil {
		fmt.Fprintf(&b, "refused: %v\n", err)
	} else {
		fmt.Fprintf(&b, "ok")
		if res.Done > 0 {
			fmt.Fprintf(&b, " done=%d", res.Done)
		}
		if len(res.Outcomes) > 0 {
			fmt.Fprintf(&b, " outcomes=%v", res.Outcomes)
		}
		fmt.Fprintln(&b)
	}
	b.WriteString(formatGroup(t, h.p, name))
	return b.String()
}

// formatGroup prints a group's state and pending deliveries.
func formatGroup(t *testing.T, p *Partition, name string) string {
	s, err := p.GroupState(name)
	if err != nil {
		return fmt.Sprintf("group %s: %v\n", name, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "group %s: floor=%d delivered=%d gen=%d member=%q pending=%d dead-lettered=%d\n",
		s.Name, s.Floor, s.Delivered, s.Generation, s.Member, s.Pending, s.DeadLettered)
	pending, err := p.GroupPending(name, 0, GroupPendingMax)
	require.NoError(t, err)
	for _, d := range pending {
		fmt.Fprintf(&b, "  %s\n", formatPending(d))
	}
	return b.String()
}

func formatPending(d PendingDelivery) string {
	return fmt.Sprintf("offset %d: deliveries=%d last=%d not-before=%d member=%s",
		d.Offset, d.Deliveries, d.LastDeliveredUnixNano, d.NotBeforeUnixNano, d.Member)
}
