package jepsen

import (
	"fmt"
	"maps"
	"slices"
)

// CheckGroups is the consumer-group checker's name.
const CheckGroups = "consumer-groups"

// groupBufferedMessagesMax is how many messages a member may still get
// from what its GroupConsumer had received before a settle returned: the
// batch Next is taking from and at most two batches per partition in its
// inbox (client.groupConsumerBatchesPerPartition), of at most
// groupBatchEvents each (groupDrainBatchEvents for the drain member,
// whose deliveries carry mode GroupDrain).
func groupBufferedMessagesMax(partitions int, drain bool) int {
	if drain {
		return (2*partitions + 1) * groupDrainBatchEvents
	}
	return (2*partitions + 1) * groupBatchEvents
}

// groupKey is one offset of one partition.
type groupKey struct {
	partition uint32
	offset    uint64
}

// groupAck is an ok ack of an offset: the member, its generation and the
// member's deliveries recorded when the ack completed.
type groupAck struct {
	op         int // the completion's index
	process    int
	generation uint64
	seen       int // the member's FGroupDeliver ops recorded before the completion
	// deliveries is the delivery count of the copy the ack acknowledged.
	deliveries uint32
}

// checkGroups judges the consumer-group workload (group.go) over the
// live topic:
//
//	(a) redelivered only if unacknowledged: once an ack of (partition,
//	    offset) returned nil (the group's record has it), the offset is
//	    not delivered again to anyone; the one exception is a copy the
//	    acking member's consumer had already received when the ack
//	    returned — the server sends a stream's batches and ack results in
//	    order, so such a copy was sent before the ack was applied, and it
//	    is among the acking member's next groupBufferedMessagesMax (by
//	    the batch size the member ran with)
//	    deliveries, under the same generation; and any copy with a lower
//	    delivery count than the copy the ack acknowledged, whoever
//	    records it: counts are replicated in order before a copy is sent,
//	    so it was sent before the acknowledged copy, hence before the ack
//	    (another member's consumer still held it, its generation since
//	    fenced);
//	(b) no event skipped: every offset below a partition's final floor
//	    was delivered at least once (the group starts at the earliest
//	    offset of a topic without retention, and with no bound on
//	    deliveries nothing is dead-lettered, so an offset is below the
//	    floor only when a member acknowledged it); every delivery carries
//	    the event at its (partition, offset) in the converged log (the
//	    first node's final log: event id, tenant, sequence, content
//	    digest), and the floor is not past that log's end;
//	(c) nothing acknowledged lost: the offset at a partition's final
//	    floor was never acknowledged ok. The floor is the first offset
//	    not done, so an ok ack at it is an ack the group's record lost;
//	    an ok-acked offset above the floor is consistent (an earlier
//	    offset is still pending) and counted. After a complete drain the
//	    floor is the end of the log, so every ok-acked offset must be
//	    below it;
//	(d) delivery counts grow: each delivery is replicated with its count
//	    before it is sent, so no two deliveries of (partition, offset)
//	    share a count, and one member gets an offset's deliveries with
//	    strictly rising counts.
//
// Skipped when no member ran; unknown without a final state or a final
// log to compare with.
func checkGroups(ix *index, h History) Verdict {
	v := Verdict{Name: CheckGroups}
	type delivery struct {
		op, process int
		generation  uint64
		count       uint32
	}
	deliveries := map[groupKey][]delivery{}
	perMember := map[int]int{}         // process -> deliveries recorded so far
	generations := map[int][]uint64{}  // process -> generations seen, in order
	firstOK := map[groupKey]groupAck{} // the first ok ack of each offset
	okAcked := map[groupKey]bool{}     // offsets acked ok
	outcomes := map[string]int{}       // "ack ok", "nack fail", ...
	floors := map[uint32]*Op{}         // ok FGroupState per partition
	stateErr := []string{}
	partitions := 0
	unknown := map[uint32]bool{}
	mismatched := 0
	for i := range h {
		op := &h[i]
		switch op.F {
		case FGroupDeliver:
			k := groupKey{op.Partition, op.Offset}
			partitions = max(partitions, int(op.Partition)+1)
			who := fmt.Sprintf("member %s (generation %d)", op.Name, op.Generation)
			if op.Deliveries == 0 {
				v.add("%s: op %d delivers offset %d of partition %d with delivery count 0", who, op.Index, op.Offset, op.Partition)
			}
			for _, d := range deliveries[k] {
				if d.count == op.Deliveries {
					v.add("%s: op %d delivers offset %d of partition %d with count %d, as op %d did: a delivery was forgotten", who, op.Index, op.Offset, op.Partition, op.Deliveries, d.op)
					break
				}
			}
			if prev := deliveries[k]; len(prev) > 0 {
				for j := len(prev) - 1; j >= 0; j-- {
					if prev[j].process == op.Process {
						if prev[j].count > op.Deliveries {
							v.add("%s: op %d delivers offset %d of partition %d with count %d, after op %d gave it count %d", who, op.Index, op.Offset, op.Partition, op.Deliveries, prev[j].op, prev[j].count)
						}
						break
					}
				}
			}
			if a, ok := firstOK[k]; ok {
				stale := a.process == op.Process && a.generation == op.Generation && perMember[op.Process]-a.seen < groupBufferedMessagesMax(max(partitions, 1), op.Mode == GroupDrain) ||
					op.Deliveries < a.deliveries
				if !stale {
					v.add("%s: op %d delivers offset %d of partition %d again (count %d) after its ack returned ok (op %d)", who, op.Index, op.Offset, op.Partition, op.Deliveries, a.op)
				}
			}
			gens := generations[op.Process]
			if len(gens) == 0 || gens[len(gens)-1] != op.Generation {
				generations[op.Process] = append(gens, op.Generation)
			}
			deliveries[k] = append(deliveries[k], delivery{op: op.Index, process: op.Process, generation: op.Generation, count: op.Deliveries})
			perMember[op.Process]++
			// The event delivered is the converged log's at its place.
			node := firstNode(ix, op.Partition)
			log, haveLog := ix.finals[node][op.Partition]
			if !haveLog {
				unknown[op.Partition] = true
				continue
			}
			at := fromOffset(log, op.Offset)
			switch {
			case len(op.Events) != 1:
				v.add("%s: op %d delivers offset %d of partition %d without its event (harness)", who, op.Index, op.Offset, op.Partition)
			case len(at) == 0 || at[0].Offset != op.Offset:
				v.add("%s: op %d delivers %s at offset %d of partition %d, which the final log of %s does not hold", who, op.Index, op.Events[0].EventID, op.Offset, op.Partition, node)
			default:
				e, f := op.Events[0], at[0]
				if e.Offset != op.Offset || f.EventID != e.EventID || f.Tenant != e.Tenant || f.Sequence != e.Sequence || (f.Digest != 0 && e.Digest != 0 && f.Digest != e.Digest) {
					mismatched++
					v.add("%s: op %d delivers at offset %d of partition %d %+v; the final log of %s has %+v", who, op.Index, op.Offset, op.Partition, e, node, f)
				}
			}
		case FGroupAck:
			if op.Type == TypeInvoke {
				continue
			}
			outcome := map[string]string{TypeOK: "ok", TypeFail: "fenced", TypeInfo: "unknown"}[op.Type]
			outcomes[op.Mode+" "+outcome]++
			if op.Mode != GroupAckMode || op.Type != TypeOK {
				continue
			}
			k := groupKey{op.Partition, op.Offset}
			okAcked[k] = true
			if _, ok := firstOK[k]; !ok {
				firstOK[k] = groupAck{op: op.Index, process: op.Process, generation: op.Generation, seen: perMember[op.Process], deliveries: op.Deliveries}
			}
		case FGroupState:
			if op.Type != TypeOK {
				stateErr = append(stateErr, fmt.Sprintf("partition %d: %s", op.Partition, op.Error))
				continue
			}
			floors[op.Partition] = op
		}
	}
	if len(perMember) == 0 {
		v.Status, v.Note = StatusSkipped, "no group member ran"
		return v
	}
	// (b) and (c) against the final floors.
	aboveFloor := 0
	for _, p := range slices.Sorted(maps.Keys(floors)) {
		st := floors[p]
		floor := st.From
		for o := uint64(0); o < floor; o++ {
			if len(deliveries[groupKey{p, o}]) == 0 {
				v.add("partition %d: offset %d is below the group's final floor %d but was never delivered: skipped", p, o, floor)
			}
		}
		if okAcked[groupKey{p, floor}] {
			v.add("partition %d: offset %d was acknowledged ok (op %d), but the group's final floor stands at it: the acknowledgement was lost", p, floor, firstOK[groupKey{p, floor}].op)
		}
		for k := range okAcked {
			if k.partition == p && k.offset > floor {
				aboveFloor++
			}
		}
		if log, ok := ix.finals[firstNode(ix, p)][p]; ok && floor > uint64(len(log)) {
			v.add("partition %d: the group's final floor %d is past the end of the converged log (%d events)", p, floor, len(log))
		}
	}
	total, redelivered := 0, 0
	for _, ds := range deliveries {
		total += len(ds)
		redelivered += len(ds) - 1
	}
	rejoins, distinct := 0, map[uint64]bool{}
	for _, gens := range generations {
		rejoins += len(gens) - 1
		for _, g := range gens {
			distinct[g] = true
		}
	}
	var settled []string
	for _, k := range slices.Sorted(maps.Keys(outcomes)) {
		settled = append(settled, fmt.Sprintf("%s %d", k, outcomes[k]))
	}
	v.Note = fmt.Sprintf("%d members, %d deliveries of %d offsets (%d redeliveries), settles: %v, %d generations (%d rejoins seen by members), %d ok-acked offsets above a final floor",
		len(perMember), total, len(deliveries), redelivered, settled, len(distinct), rejoins, aboveFloor)
	switch {
	case len(stateErr) > 0 && v.Violations == 0:
		v.Status = StatusUnknown
		v.Note += fmt.Sprintf("; no final state of the group: %v", stateErr)
	case len(floors) == 0 && v.Violations == 0:
		v.Status = StatusUnknown
		v.Note += "; no final state of the group"
	case len(unknown) > 0 && v.Violations == 0:
		v.Status = StatusUnknown
		v.Note += fmt.Sprintf("; no final log of partitions %v to compare with", slices.Sorted(maps.Keys(unknown)))
	}
	return v.settle()
}
