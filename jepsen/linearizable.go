package jepsen

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// Bounds of the linearizability check: porcupine's search is exponential
// in the worst case, so each partition is checked in at most
// linearizabilityWindowsMax windows of linearizabilityOffsetsMax offsets,
// each with at most linearizabilityReadsMax reads; one window gives up
// (undecided) after linearizabilityWindowTimeout, and the whole check
// after linearizabilityTimeout.
const (
	linearizabilityOffsetsMax    = 200
	linearizabilityReadsMax      = 300
	linearizabilityTimeout       = 60 * time.Second
	linearizabilityWindowTimeout = 10 * time.Second
	linearizabilityWindowsMax    = 12
)

// logInput is an operation on the append-only log model.
type logInput struct {
	read bool
	id   string // produce: the event appended
}

// logOutput is what an operation returned: a produce's offset (known
// false for an unknown outcome), or the (offset, event) pairs a read saw.
type logOutput struct {
	known  bool
	offset uint64
	pairs  []Observed
}

// logModel is one partition as an append-only sequence of event ids:
// produce(id) -> offset appends id at the end (an unknown outcome may or
// may not have appended); read -> pairs is legal when each pair's event is
// at its offset. A read may miss events (a follower or a deposed leader
// serves what it has applied: reads are not linearizable reads of the
// tail), but what it returns must be in the log, at that place, and
// produced before the read returned.
var logModel = porcupine.NondeterministicModel{
	Init: func() []interface{} { return []interface{}{[]string(nil)} },
	Step: func(state, input, output interface{}) []interface{} {
		log := state.([]string)
		in, out := input.(logInput), output.(logOutput)
		if in.read {
			for _, e := range out.pairs {
				if e.Offset >= uint64(len(log)) || log[e.Offset] != e.EventID {
					return nil
				}
			}
			return []interface{}{log}
		}
		appended := append(slices.Clip(log), in.id)
		if !out.known {
			return []interface{}{log, appended}
		}
		if out.offset != uint64(len(log)) {
			return nil
		}
		return []interface{}{appended}
	},
	Equal: func(a, b interface{}) bool { return slices.Equal(a.([]string), b.([]string)) },
}

// checkLinearizable checks, per partition, windows of the final log
// against logModel: the window at offset 0 and one starting where the log
// stood when each fault began (at most linearizabilityWindowsMax per
// partition), each linearizabilityOffsetsMax offsets wide. A window starts
// from the log's prefix as the final read has it (the other checkers vouch
// for that prefix), so its model state is only the window's events.
func checkLinearizable(ix *index, h History) Verdict {
	v := Verdict{Name: CheckLinearizable}
	if ix.batches > 0 {
		// Volume mode: porcupine cannot search histories of this size, and
		// a batch is one operation of many events. The other checkers still
		// cover every acknowledged event (loss, duplication, position,
		// sequence, order, convergence).
		v.Status, v.Note = StatusSkipped, fmt.Sprintf("volume mode (%d produce batches): checked in careful mode only; every acknowledged event is still checked by the other checkers", ix.batches)
		return v
	}
	if len(ix.nodes) == 0 {
		return Verdict{Name: CheckLinearizable, Status: StatusUnknown, Note: "no final read"}
	}
	model := logModel.ToModel()
	deadline := time.Now().Add(linearizabilityTimeout)
	var faultStarts []int64
	for _, op := range h {
		if op.F == FFault {
			faultStarts = append(faultStarts, op.Time)
		}
	}
	slices.Sort(faultStarts)
	windows, opsChecked := 0, 0
	var unknown []string
	for _, p := range ix.parts {
		var ref []Observed
		for _, node := range ix.nodes {
			if log, ok := ix.finals[node][p]; ok {
				ref = log
				break
			}
		}
		for _, lo := range windowStarts(h, p, faultStarts, uint64(len(ref))) {
			hi := min(lo+linearizabilityOffsetsMax, uint64(len(ref)))
			ops := windowOps(h, ix, p, ref, lo, hi)
			if len(ops) == 0 {
				continue
			}
			left := time.Until(deadline)
			if left <= 0 {
				unknown = append(unknown, fmt.Sprintf("partition %d offsets %d-%d: no time left", p, lo, hi))
				continue
			}
			switch porcupine.CheckOperationsTimeout(model, ops, min(left, linearizabilityWindowTimeout)) {
			case porcupine.Ok:
				windows++
				opsChecked += len(ops)
			case porcupine.Illegal:
				v.add("partition %d: the %d operations on offsets %d to %d have no linearization (append-only log model)", p, len(ops), lo, hi-1)
			default:
				unknown = append(unknown, fmt.Sprintf("partition %d offsets %d-%d: timed out", p, lo, hi))
			}
		}
	}
	v.Note = fmt.Sprintf("%d windows of up to %d offsets, %d operations checked", windows, linearizabilityOffsetsMax, opsChecked)
	if len(unknown) > 0 {
		v.Note += fmt.Sprintf("; undecided %v", unknown)
		if v.Violations == 0 {
			v.Status = StatusUnknown
		}
	}
	return v.settle()
}

// windowStarts returns the first offsets of partition p's windows: 0, and
// for each fault the offset after the highest one acknowledged before it
// began, skipping windows that would overlap the previous one.
func windowStarts(h History, p uint32, faultStarts []int64, size uint64) []uint64 {
	starts := []uint64{0}
	for _, t := range faultStarts {
		if len(starts) >= linearizabilityWindowsMax {
			break
		}
		var lo uint64
		for _, op := range h {
			if op.F == FProduce && op.Type == TypeOK && op.Partition == p && op.Time <= t && op.Offset+1 > lo {
				lo = op.Offset + 1
			}
		}
		if lo < size && lo >= starts[len(starts)-1]+linearizabilityOffsetsMax {
			starts = append(starts, lo)
		}
	}
	return starts
}

// windowOps builds partition p's sub-history for offsets [lo, hi) of ref
// (a final log): the produces of the events there, with offsets made
// relative to lo, the reads that saw those offsets (their pairs in the
// window, at most linearizabilityReadsMax reads, earliest first), and the
// final reads.
func windowOps(h History, ix *index, p uint32, ref []Observed, lo, hi uint64) []porcupine.Operation {
	var ops []porcupine.Operation
	for _, e := range ref[lo:hi] {
		id := e.EventID
		inv, ok1 := ix.invoked[id]
		done, ok2 := ix.outcome[id]
		if !ok1 {
			continue // not ours: the position and lost-write checkers report it
		}
		op := porcupine.Operation{ClientId: max(inv.Process, 0), Input: logInput{id: id}, Call: inv.Time, Return: math.MaxInt64}
		if ok2 && done.Type == TypeOK {
			// An acknowledged offset outside the window (below lo) makes
			// the op illegal at once, as it should: the event is in the
			// window of the final log.
			rel := done.Offset - lo
			if done.Offset < lo {
				rel = math.MaxUint64
			}
			op.Output, op.Return = logOutput{known: true, offset: rel}, done.Time
		} else {
			// Unknown outcome, yet the event is at e.Offset of the final
			// log (the position checkers vouch for the log): it was
			// appended there, at some time after its call.
			op.Output = logOutput{known: true, offset: e.Offset - lo}
		}
		ops = append(ops, op)
	}
	var reads, finals []porcupine.Operation
	for _, op := range h {
		if (op.F != FRead && op.F != FFinalRead) || op.Type != TypeOK || op.Partition != p || op.Topic != ix.topic {
			continue
		}
		var pairs []Observed
		for _, e := range op.Events {
			if e.Offset >= lo && e.Offset < hi {
				e.Offset -= lo
				pairs = append(pairs, e)
			}
		}
		if len(pairs) == 0 {
			continue
		}
		read := porcupine.Operation{ClientId: max(op.Process, 0), Input: logInput{read: true}, Output: logOutput{pairs: pairs}, Call: op.Time - op.LatencyNs, Return: op.Time}
		if op.F == FFinalRead {
			finals = append(finals, read)
		} else {
			reads = append(reads, read)
		}
	}
	sort.Slice(reads, func(i, j int) bool { return reads[i].Call < reads[j].Call })
	if len(reads) > linearizabilityReadsMax {
		reads = reads[:linearizabilityReadsMax] // dropping reads keeps a linearizable history linearizable
	}
	return append(append(ops, reads...), finals...)
}
