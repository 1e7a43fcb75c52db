package jepsen

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/heraldlog/herald/client"
)

// The retained topic of volume mode: a second topic whose retention (by
// events and by bytes, per partition) is small enough that the server's
// retention loop (server/retention.go: every partition leader checks
// every second) trims every partition many times during a run, while a
// share of the producers write it and readers read it, from offsets that
// retention may remove under them.
const (
	retainedTopicName = "jepsen-retained"
	// retainedEventsMax and retainedBytesMax are the topic's retention per
	// partition. A partition written at a few hundred events/s passes the
	// limits within a minute and is then trimmed about every second. A
	// jepsen event takes about 125 bytes stored, so the bytes rule sets
	// the trim point first (about 8,400 events retained, measured); the
	// events rule would take over for smaller events.
	retainedEventsMax = 10_000
	retainedBytesMax  = 1 << 20
	// retainedReadInterval paces each reader of the retained topic (one per
	// node, beside the live topic's readers).
	retainedReadInterval = 300 * time.Millisecond
)

// retainedProducers is how many of n volume-mode producers write the
// retained topic: a quarter, and at least one when there are two or more
// (with one producer, there is no retained topic).
func retainedProducers(n int) int {
	if n < 2 {
		return 0
	}
	return max(1, n/4)
}

// retainedTopicConfig is the retained topic's configuration.
func retainedTopicConfig(opts Options) *client.TopicConfig {
	return &client.TopicConfig{
		Name: retainedTopicName, Partitions: uint32(opts.Partitions), ReplicationFactor: uint32(opts.Nodes), AutoTenants: true,
		RetentionEvents: retainedEventsMax, RetentionBytes: retainedBytesMax,
	}
}

// checkRetained is CheckRetained over the retained topic's index: what
// no-lost-write and replicas-converge demand of the live topic, allowing
// for what retention removed.
//
//   - Every acknowledged event is in every node's final log of its
//     partition, unless it was acknowledged at an offset below that log's
//     low watermark (retention removed it).
//   - Every final log starts at its low watermark and its offsets run
//     consecutively from there (retention removes a prefix, never a hole).
//   - The nodes' final logs of a partition are identical over their common
//     offset range (from the highest of their low watermarks on), and end
//     at the same offset.
//
// Duplicates, positions, sequences, order and failed writes of the
// retained topic are checked by the other checkers (see Check). It is
// skipped when the history has no retained topic (careful mode, or a
// history recorded before it existed).
func checkRetained(ix *index) Verdict {
	v := Verdict{Name: CheckRetained}
	if ix.batches == 0 && len(ix.finals) == 0 && len(ix.finalErr) == 0 {
		v.Status, v.Note = StatusSkipped, "no retained topic in this history"
		return v
	}
	if len(ix.finals) == 0 {
		v.Status, v.Note = StatusUnknown, "no final read of the retained topic"
	}
	// Loss above the low watermark.
	logs := newFinalLookup(ix)
	trimmed := 0
	for _, s := range ix.sources {
		if !s.ack {
			continue
		}
		for _, e := range s.events {
			for _, node := range ix.nodes {
				if _, read := ix.finals[node][s.partition]; !read {
					continue // a failed final read is reported below
				}
				low := ix.finalLow[node][s.partition]
				if e.Offset < low {
					trimmed++ // removed by retention (same-order checks it is nowhere else)
					continue
				}
				if found, _ := logs.holds(node, s.partition, e.EventID, e.Offset); !found {
					v.add("acknowledged %s (partition %d offset %d, op %d) missing from the final log of %s, whose low watermark is %d",
						e.EventID, s.partition, e.Offset, s.op, node, low)
				}
			}
		}
	}
	// Each log: from its low watermark, no hole.
	for _, node := range ix.nodes {
		for _, p := range ix.parts {
			log, ok := ix.finals[node][p]
			if !ok {
				continue
			}
			want := ix.finalLow[node][p]
			for _, e := range log {
				if e.Offset != want {
					v.add("final log of %s partition %d: offset %d where %d was due (low watermark %d)", node, p, e.Offset, want, ix.finalLow[node][p])
					break
				}
				want++
			}
		}
	}
	// Replicas agree over their common range.
	for _, p := range ix.parts {
		ix.eachFinalBesideFirst(p, func(refNode string, ref []Observed, node string, log []Observed) {
			common := max(ix.finalLow[refNode][p], ix.finalLow[node][p])
			a, b := fromOffset(ref, common), fromOffset(log, common)
			if len(a) != len(b) {
				v.add("partition %d from offset %d: %s has %d events, %s has %d", p, common, refNode, len(a), node, len(b))
				return
			}
			for k := range a {
				if a[k] != b[k] {
					v.add("partition %d offset %d: %s has %+v, %s has %+v", p, a[k].Offset, refNode, a[k], node, b[k])
					return
				}
			}
		})
	}
	if v.Violations == 0 && v.Status == "" {
		var lows []string
		for _, p := range ix.parts {
			var ls []string
			for _, node := range ix.nodes {
				if _, ok := ix.finals[node][p]; ok {
					ls = append(ls, fmt.Sprint(ix.finalLow[node][p]))
				}
			}
			ls = slices.Compact(ls)
			lows = append(lows, fmt.Sprintf("%d: %s", p, strings.Join(ls, "/")))
		}
		v.Note = fmt.Sprintf("%d acknowledged events, each in every final log or acknowledged below its low watermark (%d times); final low watermarks by partition: %s",
			ix.acked, trimmed, strings.Join(lows, ", "))
	}
	if len(ix.finalErr) > 0 && v.Violations == 0 {
		v.Status, v.Note = StatusUnknown, strings.Join(ix.finalErr, "; ")
	}
	return v.settle()
}

// fromOffset returns the events of log (in offset order) at or above offset.
func fromOffset(log []Observed, offset uint64) []Observed {
	k, _ := slices.BinarySearchFunc(log, offset, func(e Observed, o uint64) int {
		switch {
		case e.Offset < o:
			return -1
		case e.Offset > o:
			return 1
		}
		return 0
	})
	return log[k:]
}
