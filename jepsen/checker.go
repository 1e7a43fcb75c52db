package jepsen

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Checker names, as printed and in verdict.json.
const (
	CheckLostWrite     = "no-lost-write"
	CheckDuplicate     = "no-duplicate"
	CheckPosition      = "one-event-per-position"
	CheckTenantSeq     = "tenant-sequences"
	CheckSameOrder     = "same-order"
	CheckFailedNotRead = "failed-write-never-read"
	CheckConvergence   = "replicas-converge"
	CheckLinearizable  = "linearizable"
	CheckRegistry      = "registry-reads"
	CheckResend        = "idempotent-resend"
	CheckAckedReadable = "acked-offset-in-range"
	CheckRetained      = "retained-no-lost-write"
)

// Verdict statuses.
const (
	StatusPass    = "pass"
	StatusFail    = "fail"
	StatusUnknown = "unknown" // could not decide (a final read missing, a timeout)
	StatusSkipped = "skipped" // does not apply yet
)

// counterexamplesMax bounds the counterexamples a verdict keeps; Violations
// still counts them all.
const counterexamplesMax = 20

// Verdict is one checker's result.
type Verdict struct {
	Name            string   `json:"name"`
	Status          string   `json:"status"`
	Violations      int      `json:"violations"`
	Counterexamples []string `json:"counterexamples,omitempty"`
	Note            string   `json:"note,omitempty"`
}

// OK reports whether the verdict does not fail the run: pass or skipped.
func (v Verdict) OK() bool { return v.Status == StatusPass || v.Status == StatusSkipped }

func (v *Verdict) add(format string, args ...any) {
	v.Violations++
	if len(v.Counterexamples) < counterexamplesMax {
		v.Counterexamples = append(v.Counterexamples, fmt.Sprintf(format, args...))
	}
}

func (v *Verdict) settle() Verdict {
	switch {
	case v.Violations > 0:
		v.Status = StatusFail
	case v.Status == "":
		v.Status = StatusPass
	}
	return *v
}

// source is one observation of the log: a read page, a final log or a
// produce acknowledgement (ack: its events are the acknowledged events of
// op, the index of a produce or produce-batch op).
type source struct {
	name      string
	partition uint32
	events    []Observed
	final     bool
	ack       bool
	op        int
}

// index is what the checkers derive from the ops of one topic of a
// history.
type index struct {
	topic    string         // as Op.Topic names it
	reads    []*Op          // ok reads of the topic, in history order
	invoked  map[string]*Op // produce invocations by event id (not batches)
	outcome  map[string]*Op // produce completions by event id (not batches)
	acked    int            // acknowledged events (the events of the ack sources), batches included
	failed   map[string]*Op // events definitely not written, batches included
	batches  int            // produce batches recorded (volume mode)
	sources  []source
	finals   map[string]map[uint32][]Observed // node -> partition -> log
	finalLow map[string]map[uint32]uint64     // node -> partition -> low watermark of its final log
	finalErr []string                         // failed final reads
	nodes    []string
	parts    []uint32
}

// buildIndex indexes the ops of h that concern topic (as Op.Topic names
// it: empty for the live topic).
func buildIndex(h History, topic string) *index {
	ix := &index{topic: topic, invoked: map[string]*Op{}, outcome: map[string]*Op{}, failed: map[string]*Op{},
		finals: map[string]map[uint32][]Observed{}, finalLow: map[string]map[uint32]uint64{}}
	partSet := map[uint32]bool{}
	for i := range h {
		op := &h[i]
		if op.Topic != topic {
			continue
		}
		switch op.F {
		case FProduce:
			if op.Type == TypeInvoke {
				ix.invoked[op.EventID] = op
				continue
			}
			ix.outcome[op.EventID] = op
			switch op.Type {
			case TypeOK:
				partSet[op.Partition] = true
				ix.acked++
				ix.sources = append(ix.sources, source{
					name: fmt.Sprintf("ack of %s (op %d)", op.EventID, op.Index), partition: op.Partition, ack: true, op: op.Index,
					events: []Observed{{Offset: op.Offset, Sequence: op.Sequence, Tenant: op.Tenant, EventID: op.EventID}},
				})
			case TypeFail:
				ix.failed[op.EventID] = op
			}
		case FProduceBatch:
			ix.batches++
			switch op.Type {
			case TypeOK:
				partSet[op.Partition] = true
				events := op.batchEvents()
				ix.acked += len(events)
				ix.sources = append(ix.sources, source{
					name: fmt.Sprintf("ack of batch %s (op %d)", op.EventID, op.Index), partition: op.Partition, ack: true, op: op.Index, events: events,
				})
			case TypeFail:
				for k := range op.Count {
					ix.failed[BatchEventID(op.EventID, k)] = op
				}
			}
		case FRead:
			if op.Type == TypeOK {
				ix.reads = append(ix.reads, op)
				ix.sources = append(ix.sources, source{name: fmt.Sprintf("read %d on %s", op.Index, op.Node), partition: op.Partition, events: op.Events})
			}
		case FFinalRead:
			partSet[op.Partition] = true
			if !slices.Contains(ix.nodes, op.Node) {
				ix.nodes = append(ix.nodes, op.Node)
			}
			if op.Type != TypeOK {
				ix.finalErr = append(ix.finalErr, fmt.Sprintf("final read of %s partition %d failed: %s", op.Node, op.Partition, op.Error))
				continue
			}
			if ix.finals[op.Node] == nil {
				ix.finals[op.Node] = map[uint32][]Observed{}
				ix.finalLow[op.Node] = map[uint32]uint64{}
			}
			ix.finals[op.Node][op.Partition] = op.Events
			ix.finalLow[op.Node][op.Partition] = op.LowWatermark
			ix.sources = append(ix.sources, source{name: fmt.Sprintf("final log of %s", op.Node), partition: op.Partition, events: op.Events, final: true})
		}
	}
	for p := range partSet {
		ix.parts = append(ix.parts, p)
	}
	slices.Sort(ix.parts)
	sort.Strings(ix.nodes)
	return ix
}

// Check runs every checker over h. It is a pure function of h (the
// linearizability check is bounded by linearizabilityOpsMax and
// linearizabilityTimeout and says unknown past them).
//
// The topics are checked apart: the live topic by every checker; the
// retained topic of volume mode (retained.go) by the checkers that hold
// whatever retention removed (no-duplicate, one-event-per-position,
// tenant-sequences, same-order, failed-write-never-read,
// acked-offset-in-range), their violations reported in the same
// verdicts, and instead of no-lost-write and replicas-converge by
// retained-no-lost-write. Event ids are not compared across topics (the
// workload never writes one id to both). The subscriptions checker (which
// took the place of replay-equals-live, a placeholder until Herald had
// subscriptions) judges the live topic's subscribers; consumer-groups
// (group_checker.go) the live topic's consumer group. The flood topic
// (flood.go), when the run had one, is checked like the retained topic by
// the checkers that read every log, by replicas-converge, and by flood
// (flood_checker.go).
func Check(h History) []Verdict {
	live := buildIndex(h, "")
	retained := buildIndex(h, retainedTopicName)
	flood := buildIndex(h, floodTopicName)
	flooded := flood.batches > 0 || len(flood.nodes) > 0
	both := func(check func(*index) Verdict) Verdict {
		v := mergeVerdicts(check(live), check(retained), retainedTopicName)
		if flooded {
			v = mergeVerdicts(v, check(flood), floodTopicName)
		}
		return v
	}
	convergence := checkConvergence(live)
	if flooded {
		convergence = mergeVerdicts(convergence, checkConvergence(flood), floodTopicName)
	}
	return []Verdict{
		checkLostWrite(live),
		both(checkDuplicate),
		both(checkPosition),
		both(checkTenantSequences),
		both(checkSameOrder),
		both(checkFailedNotRead),
		convergence,
		checkLinearizable(live, h),
		subscriptionsVerdict(live, retained, h),
		checkGroups(live, h),
		checkRegistry(h),
		checkResend(h),
		checkAckedReadable(h),
		checkRetained(retained),
		checkFlood(h),
	}
}

// subscriptionsVerdict is the subscriptions checker over the live topic
// and, when it had subscribers (volume mode), the retained topic.
func subscriptionsVerdict(live, retained *index, h History) Verdict {
	v, r := checkSubscriptions(live, h), checkSubscriptions(retained, h)
	switch {
	case r.Status == StatusSkipped:
		return v
	case v.Status == StatusSkipped:
		v.Status, v.Note = "", ""
	}
	return mergeVerdicts(v, r, retainedTopicName)
}

// mergeVerdicts is one checker's verdict over two topics: a's, with b's
// violations added, each counterexample of b prefixed with b's topic.
func mergeVerdicts(a, b Verdict, topicB string) Verdict {
	v := a
	v.Status = ""
	if a.Status == StatusUnknown || b.Status == StatusUnknown {
		v.Status = StatusUnknown
	}
	v.Counterexamples = append([]string(nil), a.Counterexamples...)
	for _, c := range b.Counterexamples {
		if len(v.Counterexamples) < counterexamplesMax {
			v.Counterexamples = append(v.Counterexamples, "topic "+topicB+": "+c)
		}
	}
	v.Violations += b.Violations
	if b.Note != "" {
		v.Note = strings.TrimPrefix(v.Note+"; topic "+topicB+": "+b.Note, "; ")
	}
	return v.settle()
}

// checkAckedReadable: a read from an offset that had been acknowledged
// before the read was invoked (ModeAcked) is never answered
// OFFSET_OUT_OF_RANGE, whichever node is asked and however far behind it
// is: the live topic has no retention, so its low watermark stays 0; a
// lagging replica waits, passes the read on, or answers a retryable error.
// On the retained topic such a read may be answered out of range only
// below the low watermark the answer gives (retention removed the offset
// since it was acknowledged), never at or above it.
func checkAckedReadable(h History) Verdict {
	v := Verdict{Name: CheckAckedReadable}
	reads, trimmed := 0, 0
	for _, op := range h {
		if op.F != FRead || op.Mode != ModeAcked {
			continue
		}
		reads++
		if op.Type != TypeFail || !(strings.Contains(op.Error, "OutOfRange") || strings.Contains(op.Error, "out of range")) {
			continue
		}
		if op.Topic != "" && op.From < op.LowWatermark {
			trimmed++
			continue
		}
		v.add("read op %d via %s of acknowledged offset %d of partition %d%s answered out of range (low watermark %d, high %d): %s",
			op.Index, op.Node, op.From, op.Partition, topicSuffix(op.Topic), op.LowWatermark, op.HighWatermark, op.Error)
	}
	if reads == 0 {
		v.Status, v.Note = StatusSkipped, "no read of an acknowledged offset was made"
	} else {
		v.Note = fmt.Sprintf("%d reads of acknowledged offsets", reads)
		if trimmed > 0 {
			v.Note += fmt.Sprintf(", %d of them answered out of range below the retained topic's low watermark", trimmed)
		}
	}
	return v.settle()
}

// topicSuffix names a topic other than the live one in a counterexample.
func topicSuffix(topic string) string {
	if topic == "" {
		return ""
	}
	return " of topic " + topic
}

// checkLostWrite: every acknowledged event is in every node's final log
// of its partition.
func checkLostWrite(ix *index) Verdict {
	v := Verdict{Name: CheckLostWrite}
	if len(ix.finals) == 0 {
		v.Status, v.Note = StatusUnknown, "no final read"
	}
	logs := newFinalLookup(ix)
	for _, s := range ix.sources {
		if !s.ack {
			continue
		}
		for _, e := range s.events {
			for _, node := range ix.nodes {
				found, read := logs.holds(node, s.partition, e.EventID, e.Offset)
				if read && !found {
					v.add("acknowledged %s (partition %d offset %d, op %d) missing from the final log of %s", e.EventID, s.partition, e.Offset, s.op, node)
				}
			}
		}
	}
	if v.Violations == 0 {
		v.Note = fmt.Sprintf("%d acknowledged events, each in every final log", ix.acked)
	}
	if len(ix.finalErr) > 0 && v.Violations == 0 {
		v.Status, v.Note = StatusUnknown, strings.Join(ix.finalErr, "; ")
	}
	return v.settle()
}

// finalLookup answers whether a final log holds an event id. It looks at
// the offset the event was acknowledged at first (a log is in offset
// order), and only when the event is not there builds the set of the
// log's ids, once per log: a clean history costs no set at all.
type finalLookup struct {
	ix   *index
	sets map[string]map[uint32]map[string]struct{}
}

func newFinalLookup(ix *index) *finalLookup {
	return &finalLookup{ix: ix, sets: map[string]map[uint32]map[string]struct{}{}}
}

// holds reports whether node's final log of partition p holds id
// (acknowledged at offset), and whether that log was read at all.
func (l *finalLookup) holds(node string, p uint32, id string, offset uint64) (found, read bool) {
	log, ok := l.ix.finals[node][p]
	if !ok {
		return false, false // final read failed: reported by the caller
	}
	if k := len(fromOffset(log, offset)); k > 0 && log[len(log)-k].EventID == id {
		return true, true
	}
	if l.sets[node] == nil {
		l.sets[node] = map[uint32]map[string]struct{}{}
	}
	set, ok := l.sets[node][p]
	if !ok {
		set = make(map[string]struct{}, len(log))
		for _, e := range log {
			set[e.EventID] = struct{}{}
		}
		l.sets[node][p] = set
	}
	_, found = set[id]
	return found, true
}

// checkDuplicate: no single log (a final log or a read page) holds an
// event id twice, and no event id is seen at two offsets of a partition.
func checkDuplicate(ix *index) Verdict {
	v := Verdict{Name: CheckDuplicate}
	seen := map[string]uint64{} // reused: clear keeps its room
	for _, s := range ix.sources {
		clear(seen)
		for _, e := range s.events {
			if first, ok := seen[e.EventID]; ok {
				v.add("%s holds %s twice: partition %d offsets %d and %d", s.name, e.EventID, s.partition, first, e.Offset)
				continue
			}
			seen[e.EventID] = e.Offset
		}
	}
	return v.settle()
}

// observations counts the events of every source: the size of the maps
// that hold one entry per distinct event or position is at most this.
func (ix *index) observations() int {
	n := 0
	for _, s := range ix.sources {
		n += len(s.events)
	}
	return n
}

// distinctHint is the room to give a map keyed by distinct events or
// positions: the acknowledged events, plus room for what only reads and
// final logs saw (unknown outcomes), bounded by every observation.
func (ix *index) distinctHint() int {
	return min(ix.observations(), ix.acked+ix.acked/8+1024)
}

// checkPosition: no two different events are seen at one (partition,
// offset), over every read, final log and acknowledgement.
func checkPosition(ix *index) Verdict {
	v := Verdict{Name: CheckPosition}
	type pos struct {
		p uint32
		o uint64
	}
	type first struct {
		id  string
		src int // index in ix.sources
	}
	at := make(map[pos]first, ix.distinctHint())
	reported := map[pos]bool{}
	for si, s := range ix.sources {
		for _, e := range s.events {
			k := pos{s.partition, e.Offset}
			f, ok := at[k]
			if !ok {
				at[k] = first{e.EventID, si}
				continue
			}
			if f.id != e.EventID && !reported[k] {
				reported[k] = true
				v.add("partition %d offset %d: %s per %s, %s per %s", k.p, k.o, f.id, ix.sources[f.src].name, e.EventID, s.name)
			}
		}
	}
	return v.settle()
}

// checkTenantSequences: in every final log each tenant's sequences run
// 1, 2, 3, ... in offset order (from the tenant's first retained one when
// the log's low watermark is above 0: retention removed the start); every
// read page has each tenant's sequences consecutive and increasing (a read
// by sequence starts at the sequence asked for, or above it when the
// replica had truncated its log); and (partition, tenant, sequence) names
// one event everywhere, acknowledgements included.
func checkTenantSequences(ix *index) Verdict {
	v := Verdict{Name: CheckTenantSeq}
	for _, node := range ix.nodes {
		for _, p := range ix.parts {
			log, ok := ix.finals[node][p]
			if !ok {
				continue
			}
			trimmed := ix.finalLow[node][p] > 0
			next := map[string]uint64{}
			for _, e := range log {
				last, seen := next[e.Tenant]
				want := last + 1
				if trimmed && !seen {
					want = max(e.Sequence, 1)
				}
				if e.Sequence != want {
					v.add("final log of %s partition %d offset %d: tenant %s sequence %d, want %d", node, p, e.Offset, e.Tenant, e.Sequence, want)
				}
				next[e.Tenant] = e.Sequence
			}
		}
	}
	for _, op := range ix.reads {
		last := map[string]uint64{}
		for k, e := range op.Events {
			if op.Mode == ModeSequence && k == 0 && e.Sequence != op.From && (op.LowWatermark == 0 || e.Sequence < op.From) {
				v.add("read %d on %s: tenant %s from sequence %d starts at %d", op.Index, op.Node, op.Tenant, op.From, e.Sequence)
			}
			if l, ok := last[e.Tenant]; ok && e.Sequence != l+1 {
				v.add("read %d on %s partition %d: tenant %s sequence %d after %d", op.Index, op.Node, op.Partition, e.Tenant, e.Sequence, l)
			}
			last[e.Tenant] = e.Sequence
		}
	}
	type key struct {
		p   uint32
		t   string
		seq uint64
	}
	type first struct {
		id  string
		src int // index in ix.sources
	}
	at := make(map[key]first, ix.distinctHint())
	reported := map[key]bool{}
	for si, s := range ix.sources {
		for _, e := range s.events {
			k := key{s.partition, e.Tenant, e.Sequence}
			f, ok := at[k]
			if !ok {
				at[k] = first{e.EventID, si}
			} else if f.id != e.EventID && !reported[k] {
				reported[k] = true
				v.add("partition %d tenant %s sequence %d: %s per %s, %s per %s", k.p, k.t, k.seq, f.id, ix.sources[f.src].name, e.EventID, s.name)
			}
		}
	}
	return v.settle()
}

// checkSameOrder: every observer places each event at the same (partition,
// offset), so all of them see the same order.
func checkSameOrder(ix *index) Verdict {
	v := Verdict{Name: CheckSameOrder}
	type place struct {
		p    uint32
		src  int32 // the source that placed it first (index in ix.sources)
		o    uint64
		last int32 // the last source that saw it
	}
	at := make(map[string]place, ix.distinctHint())
	reported := map[string]bool{}
	for si, s := range ix.sources {
		for _, e := range s.events {
			f, ok := at[e.EventID]
			if !ok {
				at[e.EventID] = place{p: s.partition, src: int32(si), o: e.Offset, last: int32(si)}
				continue
			}
			if int(f.last) == si {
				continue // a duplicate within one log: checkDuplicate's
			}
			f.last = int32(si)
			at[e.EventID] = f
			if (f.p != s.partition || f.o != e.Offset) && !reported[e.EventID] {
				reported[e.EventID] = true
				v.add("%s at partition %d offset %d per %s, at partition %d offset %d per %s", e.EventID, f.p, f.o, ix.sources[f.src].name, s.partition, e.Offset, s.name)
			}
		}
	}
	return v.settle()
}

// checkFailedNotRead: an event whose produce failed definitively is never
// read anywhere.
func checkFailedNotRead(ix *index) Verdict {
	v := Verdict{Name: CheckFailedNotRead}
	failed := ix.failed
	reported := map[string]bool{}
	for _, s := range ix.sources {
		for _, e := range s.events {
			if op, ok := failed[e.EventID]; ok && !reported[e.EventID] {
				reported[e.EventID] = true
				v.add("%s failed (op %d: %s) but %s has it at partition %d offset %d", e.EventID, op.Index, op.Error, s.name, s.partition, e.Offset)
			}
		}
	}
	return v.settle()
}

// eachFinalBesideFirst calls fn with every node's final log of partition
// p (in node order) beside the first node's that has one, the reference.
func (ix *index) eachFinalBesideFirst(p uint32, fn func(refNode string, ref []Observed, node string, log []Observed)) {
	var refNode string
	var ref []Observed
	for _, node := range ix.nodes {
		log, ok := ix.finals[node][p]
		if !ok {
			continue
		}
		if refNode == "" {
			refNode, ref = node, log
			continue
		}
		fn(refNode, ref, node, log)
	}
}

// checkConvergence: the final logs of every partition are identical on
// every node.
func checkConvergence(ix *index) Verdict {
	v := Verdict{Name: CheckConvergence}
	if len(ix.finals) == 0 {
		v.Status, v.Note = StatusUnknown, "no final read"
	}
	for _, p := range ix.parts {
		ix.eachFinalBesideFirst(p, func(refNode string, ref []Observed, node string, log []Observed) {
			if len(log) != len(ref) {
				v.add("partition %d: %s has %d events, %s has %d", p, refNode, len(ref), node, len(log))
				return
			}
			for k := range log {
				if log[k] != ref[k] {
					v.add("partition %d offset %d: %s has %+v, %s has %+v", p, ref[k].Offset, refNode, ref[k], node, log[k])
					return
				}
			}
		})
	}
	if len(ix.finalErr) > 0 && v.Violations == 0 {
		v.Status, v.Note = StatusUnknown, strings.Join(ix.finalErr, "; ")
	}
	return v.settle()
}
