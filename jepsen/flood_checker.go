package jepsen

import (
	"fmt"
	"strings"
)

// CheckFlood is the flood workload's checker (flood.go).
const CheckFlood = "flood"

// checkFlood judges the flood topic: every event acknowledged to the
// flooder is in every node's final log of its partition exactly once; no
// event of a refused request (a definite failure: THROTTLED, QUEUE_FULL
// or any other refusal) is in any final log; an event whose outcome was
// unknown is in a log at most once, or not at all; and nothing else is in
// the flood topic. Skipped when the run had no flood.
//
// The other checkers that read every log (no-duplicate, position,
// tenant-sequences, same-order, failed-write-never-read, replicas-converge)
// also look at the flood topic (see Check); this one states the flood's
// own promise in one verdict and counts what the flood met.
func checkFlood(h History) Verdict {
	v := Verdict{Name: CheckFlood}
	ix := buildIndex(h, floodTopicName)
	if ix.batches == 0 && len(ix.finals) == 0 && len(ix.finalErr) == 0 {
		v.Status, v.Note = StatusSkipped, "no flood workload in this run"
		return v
	}
	type place struct {
		partition uint32
		offset    uint64
	}
	acked := map[string]place{} // event id -> where it was acknowledged
	unknown := map[string]bool{}
	var requests, refused, throttled int
	for i := range h {
		op := &h[i]
		if op.Topic != floodTopicName || op.F != FProduceBatch {
			continue
		}
		requests++
		switch op.Type {
		case TypeOK:
			for _, e := range op.batchEvents() {
				acked[e.EventID] = place{op.Partition, e.Offset}
			}
		case TypeInfo:
			for k := range op.Count {
				unknown[BatchEventID(op.EventID, k)] = true
			}
		case TypeFail:
			refused++
			if op.Mode == floodRefused {
				throttled++
			}
		}
	}
	unknownSeen := map[string]bool{}
	for _, node := range ix.nodes {
		for _, p := range ix.parts {
			log, ok := ix.finals[node][p]
			if !ok {
				continue
			}
			count := make(map[string]int, len(log))
			for _, e := range log {
				count[e.EventID]++
				if count[e.EventID] == 2 {
					v.add("%s is twice in the final log of %s partition %d (again at offset %d)", e.EventID, node, p, e.Offset)
				}
				if count[e.EventID] > 1 {
					continue
				}
				if op, ok := ix.failed[e.EventID]; ok {
					v.add("%s was refused (op %d: %s) but is in the final log of %s partition %d at offset %d", e.EventID, op.Index, op.Error, node, p, e.Offset)
					continue
				}
				_, isAcked := acked[e.EventID]
				switch {
				case unknown[e.EventID]:
					unknownSeen[e.EventID] = true
				case !isAcked:
					v.add("%s in the final log of %s partition %d at offset %d was never sent by the flood", e.EventID, node, p, e.Offset)
				}
			}
			for id, at := range acked {
				if at.partition == p && count[id] == 0 {
					v.add("acknowledged %s (partition %d offset %d) missing from the final log of %s", id, p, at.offset, node)
				}
			}
		}
	}
	v.Note = fmt.Sprintf("%d requests: %d events acknowledged, %d requests refused (%d throttled), %d events of unknown outcome (%d of them in the log)",
		requests, len(acked), refused, throttled, len(unknown), len(unknownSeen))
	if throttled == 0 && requests > 0 {
		v.Note += "; no request was throttled"
	}
	if len(ix.finalErr) > 0 && v.Violations == 0 {
		v.Status, v.Note = StatusUnknown, strings.Join(ix.finalErr, "; ")
	}
	return v.settle()
}
