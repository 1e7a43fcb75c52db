package jepsen

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// CheckSubscriptions is the subscription checker's name.
const CheckSubscriptions = "subscriptions"

// subscriptionView is what checkSubscriptions derives, op by op, of one
// subscriber (one Process; a subscriber follows one partition).
type subscriptionView struct {
	process   int
	partition uint32
	started   bool   // the position is known
	earliest  bool   // the first stream started at EARLIEST
	first     uint64 // the first offset it was to receive (when started)
	pos       uint64 // the offset after the last one received (or to start at)
	epoch     uint64 // the epoch of its first response
	// skipTo is the low watermark of the last OFFSET_OUT_OF_RANGE answer
	// below it, since the last event: it explains a resume up to it.
	skipTo uint64
	// gaps are the explained gaps [from, to): offsets it passed without
	// receiving them, because retention had removed them.
	gaps [][2]uint64
	// received maps the offsets it received to their event ids, for the
	// acknowledged events it passed.
	received map[uint64]string
	events   int
	streams  int
	// streamEvents counts the events of the current stream.
	streamEvents int
	// heartbeatOff is the last stream whose heartbeats were reported
	// wrong: once a stream, not once a heartbeat.
	heartbeatOff int
}

// passed reports whether the subscriber went past offset o, receiving it
// or not: o is in [first, pos) and in no explained gap.
func (s *subscriptionView) passed(o uint64) bool {
	if !s.started || o < s.first || o >= s.pos {
		return false
	}
	for _, g := range s.gaps {
		if o >= g[0] && o < g[1] {
			return false
		}
	}
	return true
}

// checkSubscriptions holds the subscribers (subscribe.go) to etcd's watch
// guarantees, over every stream they opened, on every node:
//
//   - ordered and unique: each subscriber receives offsets strictly
//     increasing and consecutive from where it started, across its
//     reconnects — no repeat, no reorder, no gap — except a gap an
//     OFFSET_OUT_OF_RANGE answer explains (the offsets below the low
//     watermark it gave, which retention removed); an EARLIEST start
//     begins at or below the low watermark its first response gives;
//
//   - resumable: a resume from the offset after the last event received
//     is never answered OFFSET_OUT_OF_RANGE at or above the low watermark
//     (the offset was served, so it is committed), and never
//     EPOCH_CHANGED (the workload subscribes to the live topic, which is
//     never deleted); every response carries the epoch of the first;
//     next_offset (of responses and of heartbeats) is the offset after
//     the last event received; no response carries more events than the
//     credit granted;
//
//   - correct: every event received equals the event at its offset in
//     the final log of its partition (the first node's; replicas-converge
//     compares the nodes): same event id, tenant, sequence and digest
//     (events below that log's low watermark, which retention removed,
//     are not compared);
//
//   - reliable: every acknowledged produce at an offset a subscriber
//     passed was received by it there.
//
//   - live: once the healed cluster has converged, every subscriber
//     reaches the end of its partition's log, never going
//     SubscribeCatchUpIdle without receiving while short of it (a
//     SubscribeBehind end fails).
//
// It does not check filtered subscriptions or starts by sequence or time.
// Skipped when no subscriber ran.
func checkSubscriptions(ix *index, h History) Verdict {
	v := Verdict{Name: CheckSubscriptions}
	views := map[int]*subscriptionView{}
	var order []int
	endsByReason := map[string]int{} // the ends of streams the subscriber replaced
	caughtUp, behind, catchingUp := 0, 0, 0
	trimmed := 0 // events received below the final log's low watermark
	ref := func(p uint32) (string, []Observed, bool) {
		node := firstNode(ix, p)
		log, ok := ix.finals[node][p]
		return node, log, ok
	}
	unknown := map[uint32]bool{}
	for i := range h {
		op := &h[i]
		if op.Topic != ix.topic || (op.F != FSubscribeOpen && op.F != FSubscribe && op.F != FSubscribeEnd) {
			continue
		}
		s := views[op.Process]
		if s == nil {
			s = &subscriptionView{process: op.Process, partition: op.Partition, received: map[uint64]string{}}
			views[op.Process] = s
			order = append(order, op.Process)
		}
		who := fmt.Sprintf("subscriber %d (partition %d) stream %d on %s", s.process, s.partition, op.Conn, op.Node)
		if op.Partition != s.partition {
			v.add("%s: op %d is for partition %d", who, op.Index, op.Partition)
			continue
		}
		switch op.F {
		case FSubscribeOpen:
			s.streams++
			s.streamEvents = 0
			switch op.Mode {
			case SubscribeEarliest:
				s.earliest = true
				if s.started {
					v.add("%s: op %d starts at EARLIEST after events were received (harness)", who, op.Index)
				}
			case SubscribeOffset:
				s.started, s.first, s.pos = true, op.From, op.From
			case SubscribeResume:
				switch {
				case !s.started:
					v.add("%s: op %d resumes before any position was known (harness)", who, op.Index)
				case op.From == s.pos:
				case op.From > s.pos && op.From <= s.skipTo:
					s.gaps = append(s.gaps, [2]uint64{s.pos, op.From})
					s.pos = op.From
				default:
					v.add("%s: op %d resumes from offset %d, but it had received up to %d and no answer moved it (harness)", who, op.Index, op.From, s.pos)
					s.pos = op.From
				}
			}
		case FSubscribe:
			if s.epoch == 0 {
				s.epoch = op.Epoch
			} else if op.Epoch != s.epoch {
				v.add("%s: op %d carries epoch %d, earlier responses %d", who, op.Index, op.Epoch, s.epoch)
			}
			if op.Mode == SubscribeHeartbeat {
				if s.started && op.Next != s.pos && s.heartbeatOff != op.Conn {
					s.heartbeatOff = op.Conn
					v.add("%s: heartbeat op %d has next_offset %d, but the subscriber received up to offset %d", who, op.Index, op.Next, int64(s.pos)-1)
				}
				continue
			}
			if len(op.Events) > op.Credit {
				v.add("%s: op %d carries %d events, but only %d were granted", who, op.Index, len(op.Events), op.Credit)
			}
			if !s.started {
				// The first events of an EARLIEST start: from the low
				// watermark the serving replica had when the stream
				// started, which is at most the one it has now (0 on a
				// topic without retention).
				first := op.Events[0].Offset
				s.started, s.first, s.pos = true, first, first
				if first > op.LowWatermark {
					v.add("%s: op %d, the first response of an EARLIEST start, begins at offset %d, above the low watermark %d", who, op.Index, first, op.LowWatermark)
				}
			}
			refNode, log, haveRef := ref(s.partition)
			refLow := ix.finalLow[refNode][s.partition]
			for _, e := range op.Events {
				switch {
				case e.Offset < s.pos:
					v.add("%s: op %d delivers offset %d again or out of order (it had received up to %d)", who, op.Index, e.Offset, int64(s.pos)-1)
				case e.Offset > s.pos:
					v.add("%s: op %d delivers offset %d when %d was next: %d offsets skipped", who, op.Index, e.Offset, s.pos, e.Offset-s.pos)
				}
				if e.Offset >= s.pos {
					s.pos = e.Offset + 1
				}
				s.received[e.Offset] = e.EventID
				s.events++
				s.streamEvents++
				if !haveRef {
					unknown[s.partition] = true
					continue
				}
				if e.Offset < refLow {
					trimmed++ // retention removed it before the final read
					continue
				}
				at := fromOffset(log, e.Offset)
				if len(at) == 0 || at[0].Offset != e.Offset {
					v.add("%s: op %d delivers %s at offset %d, which the final log of %s does not hold", who, op.Index, e.EventID, e.Offset, refNode)
					continue
				}
				if f := at[0]; f.EventID != e.EventID || f.Tenant != e.Tenant || f.Sequence != e.Sequence || (f.Digest != 0 && e.Digest != 0 && f.Digest != e.Digest) {
					v.add("%s: op %d delivers at offset %d %+v; the final log of %s has %+v", who, op.Index, e.Offset, e, refNode, f)
				}
			}
			s.skipTo = 0
			if op.Next != s.pos {
				v.add("%s: op %d has next_offset %d after offset %d", who, op.Index, op.Next, int64(s.pos)-1)
			}
		case FSubscribeEnd:
			switch op.Mode {
			case SubscribeCaughtUp:
				caughtUp++
				continue
			case SubscribeBehind:
				behind++
				v.add("subscriber %d (partition %d) received nothing for %s while short of the end of the converged log (offset %d), on stream %d: it stood at offset %d",
					s.process, s.partition, SubscribeCatchUpIdle, op.HighWatermark, op.Conn, op.From)
				continue
			case SubscribeCatchingUp:
				catchingUp++
				continue
			}
			endsByReason[op.Mode]++
			if op.Type != TypeFail {
				continue
			}
			switch op.Mode {
			case "OFFSET_OUT_OF_RANGE":
				if op.From < op.LowWatermark {
					s.skipTo = max(s.skipTo, op.LowWatermark)
					continue
				}
				if s.streamEvents > 0 {
					v.add("%s: op %d: the stream, after delivering %d events, ended out of range at offset %d [%d, %d): %s", who, op.Index, s.streamEvents, op.From, op.LowWatermark, op.HighWatermark, op.Error)
					continue
				}
				what := "acknowledged before it began"
				if s.events > 0 {
					what = "the offset after the last event received"
				}
				v.add("%s: op %d: a start from offset %d (%s) answered out of range [%d, %d): %s", who, op.Index, op.From, what, op.LowWatermark, op.HighWatermark, op.Error)
			case "EPOCH_CHANGED":
				v.add("%s: op %d: a start with epoch %d answered EPOCH_CHANGED (now %d), but the topic was never deleted: %s", who, op.Index, s.epoch, op.Epoch, op.Error)
			}
		}
	}
	if len(views) == 0 {
		v.Status, v.Note = StatusSkipped, "no subscriber ran"
		return v
	}
	// Reliable: every acknowledged event at an offset a subscriber passed
	// was received there.
	for _, src := range ix.sources {
		if !src.ack {
			continue
		}
		for _, proc := range order {
			s := views[proc]
			if s.partition != src.partition {
				continue
			}
			for _, e := range src.events {
				if !s.passed(e.Offset) {
					continue
				}
				if got, ok := s.received[e.Offset]; !ok {
					v.add("subscriber %d (partition %d) passed offset %d without receiving acknowledged %s (op %d)", s.process, s.partition, e.Offset, e.EventID, src.op)
				} else if got != e.EventID {
					v.add("subscriber %d (partition %d) received %s at offset %d, where %s was acknowledged (op %d)", s.process, s.partition, got, e.Offset, e.EventID, src.op)
				}
			}
		}
	}
	events, streams, gaps := 0, 0, 0
	for _, s := range views {
		events += s.events
		streams += s.streams
		gaps += len(s.gaps)
	}
	var ends []string
	for _, r := range slices.Sorted(maps.Keys(endsByReason)) {
		ends = append(ends, fmt.Sprintf("%s %d", r, endsByReason[r]))
	}
	v.Note = fmt.Sprintf("%d subscribers, %d events delivered over %d streams (%d reconnects", len(views), events, streams, streams-len(views))
	if len(ends) > 0 {
		v.Note += ": " + strings.Join(ends, ", ")
	}
	v.Note += ")"
	if caughtUp+behind+catchingUp > 0 {
		v.Note += fmt.Sprintf(", %d of them caught up with the converged log", caughtUp)
	}
	if catchingUp > 0 {
		v.Note += fmt.Sprintf(", %d still receiving when the harness stopped waiting (not judged)", catchingUp)
	}
	if gaps > 0 {
		v.Note += fmt.Sprintf(", %d gaps explained by retention", gaps)
	}
	if trimmed > 0 {
		v.Note += fmt.Sprintf(", %d events received below the final log's low watermark (not compared)", trimmed)
	}
	if len(unknown) > 0 && v.Violations == 0 {
		v.Status = StatusUnknown
		v.Note += fmt.Sprintf("; no final log of partitions %v to compare with", slices.Sorted(maps.Keys(unknown)))
	}
	return v.settle()
}

// firstNode is the first node (in name order) with a final log of p.
func firstNode(ix *index, p uint32) string {
	for _, node := range ix.nodes {
		if _, ok := ix.finals[node][p]; ok {
			return node
		}
	}
	return ""
}
