package jepsen

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Op types: a produce is recorded as an invoke followed by exactly one of
// ok (acknowledged), fail (definitely not written) or info (outcome
// unknown). Reads are recorded once, when they return (ok or fail).
const (
	TypeInvoke = "invoke"
	TypeOK     = "ok"
	TypeFail   = "fail"
	TypeInfo   = "info"
)

// Op functions.
const (
	// FProduce appends one event (EventID) of Tenant.
	FProduce = "produce"
	// FProduceBatch is one Send of a volume-mode producer (see volume.go):
	// Count events of Tenant whose ids are BatchEventID(EventID, k) for k in
	// [0, Count), recorded once, when the Send returns (ok, fail or info;
	// it began LatencyNs earlier). When ok, event k is at offset
	// Offsets[k] with sequence Sequences[k], or, when those are empty (the
	// common case: one request, one Raft entry), at Offset+k with sequence
	// Sequence+k; Dups of them were duplicates.
	FProduceBatch = "produce-batch"
	// FRead is a read during the run: one page fetched from Node.
	FRead = "read"
	// FFinalRead is the whole of one partition read from Node after healing.
	FFinalRead = "final-read"
	// FRegistry is a registry operation (Mode: create-tenant,
	// create-topic, delete-topic, list-tenants, describe-topic) through
	// Node, recorded once when it completes; it began LatencyNs earlier.
	FRegistry = "registry"
	// FResend is one call of a resent idempotent request (From: 0 the
	// send, 1 the identical resend): Offset the first result's offset,
	// Dups how many results were marked duplicate.
	FResend = "resend"
	// FFault is a fault window of the nemesis: Fault names it, Time is its
	// start and End its end (ns since the run started).
	FFault = "fault"
	// FSubscribeOpen is a subscriber (Process) opening its Conn-th stream
	// of Partition on Node (subscribe.go), recorded before the start is
	// sent: Mode is SubscribeEarliest, SubscribeOffset (its first stream,
	// from From) or SubscribeResume (from From, the offset after the last
	// event it received, with Epoch, the partition epoch it saw).
	FSubscribeOpen = "subscribe-open"
	// FSubscribe is one SubscribeResponse a subscriber received on stream
	// Conn from Node: Events (with digests), Epoch, the watermarks, Next
	// (next_offset) and Credit, the events it had granted and not yet
	// received when the response arrived. A heartbeat (Mode
	// SubscribeHeartbeat, no events) is recorded only when its next_offset
	// is not where the subscriber stands.
	FSubscribe = "subscribe"
	// FSubscribeEnd is the end of stream Conn: fail with Error and Mode
	// the error's reason (ErrorReason name, or the gRPC code) when the
	// stream or its start failed (From: the offset asked; for
	// OFFSET_OUT_OF_RANGE and EPOCH_CHANGED the watermarks it gave, and for
	// EPOCH_CHANGED Epoch the current epoch); info when the subscriber
	// closed it itself (Mode SubscribeMoved, SubscribeStalled,
	// SubscribeBound).
	FSubscribeEnd = "subscribe-end"
	// FGroupDeliver is one message a group member (Process, member id
	// Name) got from its GroupConsumer's Next (group.go): Partition,
	// Offset, Deliveries (its delivery count), Generation and Events (the
	// one event, with its digest). Mode is GroupDrain for the drain
	// member after the run.
	FGroupDeliver = "group-deliver"
	// FGroupAck is a member settling a message it was delivered: an
	// invoke before the call and one completion: ok (nil: recorded), fail
	// (fenced or a stale generation: nothing written) or info (outcome
	// unknown), Error the error. Mode is GroupAckMode or GroupNackMode.
	FGroupAck = "group-ack"
	// FGroupState is the group on one partition as DescribeGroup gave it
	// after healing, convergence and the drain: From the floor, Next the
	// cursor, Count the pending deliveries, HighWatermark the leader's
	// (ok), or the error (fail).
	FGroupState = "group-state"
)

// Read modes of FRead ops.
const (
	ModeOffset   = "offset"
	ModeSequence = "sequence"
	// ModeAcked reads from the highest offset of the partition that a
	// producer of the live topic had seen acknowledged when the read was
	// invoked: the node asked may be behind it (a lagging replica), but it
	// must never call it out of range.
	ModeAcked = "acked-offset"
)

// Observed is one event as a reader saw it.
type Observed struct {
	Offset   uint64 `json:"o"`
	Sequence uint64 `json:"s"`
	Tenant   string `json:"t"`
	EventID  string `json:"id"`
	// Digest is eventDigest of the event's content (payload, key,
	// producer, production time), set by subscriptions and by the final
	// reads of runs with subscribers only (0: not taken).
	Digest uint32 `json:"d,omitempty"`
}

// Op is one line of the history. Times are nanoseconds since the run
// started (monotonic). Fields that do not apply to an op's F are empty.
//
// Version note: history.jsonl is read by people and tools; fields are only
// ever added.
type Op struct {
	Index   int    `json:"index"`
	Type    string `json:"type"`
	F       string `json:"f"`
	Process int    `json:"process"`
	Time    int64  `json:"time"`
	// Topic is the topic written or read: empty for the live topic
	// (topicName), retainedTopicName for the retained one (volume mode).
	Topic string `json:"topic,omitempty"`
	// Produce: the event and, when ok, where it was stored.
	Tenant    string `json:"tenant,omitempty"`
	EventID   string `json:"event_id,omitempty"`
	Partition uint32 `json:"partition"`
	Offset    uint64 `json:"offset,omitempty"`
	Sequence  uint64 `json:"sequence,omitempty"`
	Duplicate bool   `json:"duplicate,omitempty"`
	// LatencyNs is the time from invoke to completion (completions only).
	LatencyNs int64 `json:"latency_ns,omitempty"`
	// Reads: the node asked, the mode and what it returned.
	Node   string     `json:"node,omitempty"`
	Mode   string     `json:"mode,omitempty"`
	From   uint64     `json:"from,omitempty"`
	Events []Observed `json:"events,omitempty"`
	// LowWatermark and HighWatermark are the answering replica's, as a
	// read or final read returned them (a final read: as its first page
	// did, the log being read from LowWatermark) or as its out-of-range
	// error gave them.
	LowWatermark  uint64 `json:"low_watermark,omitempty"`
	HighWatermark uint64 `json:"high_watermark,omitempty"`
	// Registry: the tenant or topic named, whether a describe found it,
	// and the workload's own tenants a list returned.
	Name  string   `json:"name,omitempty"`
	Found bool     `json:"found,omitempty"`
	Names []string `json:"names,omitempty"`
	Dups  int      `json:"dups,omitempty"`
	// Produce batches: how many events, and their places when they are not
	// consecutive from Offset and Sequence.
	Count     int      `json:"count,omitempty"`
	Offsets   []uint64 `json:"offsets,omitempty"`
	Sequences []uint64 `json:"sequences,omitempty"`
	// Faults: what was done and when it ended.
	Fault   string `json:"fault,omitempty"`
	Targets string `json:"targets,omitempty"`
	End     int64  `json:"end,omitempty"`
	Error   string `json:"error,omitempty"`
	// Subscriptions: the stream's number (from 1) within its subscriber,
	// the partition epoch, the next_offset answered and the credit the
	// subscriber had outstanding.
	Conn   int    `json:"conn,omitempty"`
	Epoch  uint64 `json:"epoch,omitempty"`
	Next   uint64 `json:"next_offset,omitempty"`
	Credit int    `json:"credit,omitempty"`
	// Consumer groups: a delivery's count and group generation.
	Deliveries uint32 `json:"deliveries,omitempty"`
	Generation uint64 `json:"generation,omitempty"`
}

// History is a list of ops in the order they were recorded.
type History []Op

// BatchEventID is the id of event k of a produce batch whose EventID is
// prefix.
func BatchEventID(prefix string, k int) string { return prefix + "." + strconv.Itoa(k) }

// batchEvents returns what an acknowledged produce batch says of each of
// its events.
func (op *Op) batchEvents() []Observed {
	out := make([]Observed, op.Count)
	for k := range out {
		e := Observed{Offset: op.Offset + uint64(k), Sequence: op.Sequence + uint64(k), Tenant: op.Tenant, EventID: BatchEventID(op.EventID, k)}
		if len(op.Offsets) == op.Count {
			e.Offset = op.Offsets[k]
		}
		if len(op.Sequences) == op.Count {
			e.Sequence = op.Sequences[k]
		}
		out[k] = e
	}
	return out
}

// events is how many events a produce or produce-batch op carries.
func (op *Op) events() int {
	if op.F == FProduceBatch {
		return op.Count
	}
	return 1
}

// Recorder appends ops to a History and, when given a writer, to a JSON
// lines stream as they happen. It is safe for concurrent use; Index is
// assigned in record order.
type Recorder struct {
	start time.Time
	mu    struct {
		sync.Mutex
		ops    History
		sharer eventSharer
		w      *bufio.Writer
		err    error
		// ackedHigh is the highest acknowledged offset of each partition
		// of each topic (noteAcked), for ModeAcked reads.
		ackedHigh map[topicPartition]uint64
	}
}

// topicPartition names a partition of a topic as Op.Topic does (empty
// for the live topic).
type topicPartition struct {
	topic     string
	partition uint32
}

// noteAcked records that offset of partition p of topic (as in Op.Topic)
// was acknowledged.
func (r *Recorder) noteAcked(topic string, p uint32, offset uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.ackedHigh == nil {
		r.mu.ackedHigh = make(map[topicPartition]uint64)
	}
	k := topicPartition{topic, p}
	if cur, ok := r.mu.ackedHigh[k]; !ok || offset > cur {
		r.mu.ackedHigh[k] = offset
	}
}

// ackedHigh returns the highest acknowledged offset of partition p of
// topic, and whether there is one.
func (r *Recorder) ackedHigh(topic string, p uint32) (uint64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	off, ok := r.mu.ackedHigh[topicPartition{topic, p}]
	return off, ok
}

// NewRecorder returns a recorder whose clock starts now. w may be nil.
func NewRecorder(w io.Writer) *Recorder {
	r := &Recorder{start: time.Now()}
	if w != nil {
		r.mu.w = bufio.NewWriter(w)
	}
	return r
}

// Now returns the nanoseconds since the recorder started.
func (r *Recorder) Now() int64 { return int64(time.Since(r.start)) }

// Record stamps op with the next index (and the current time when op.Time
// is 0) and appends it.
func (r *Recorder) Record(op Op) Op {
	if op.Time == 0 {
		op.Time = r.Now()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	op.Index = len(r.mu.ops)
	r.mu.sharer.share(&op)
	r.mu.ops = append(r.mu.ops, op)
	if r.mu.w != nil && r.mu.err == nil {
		line, err := json.Marshal(op)
		if err == nil {
			_, err = r.mu.w.Write(append(line, '\n'))
		}
		r.mu.err = err
	}
	return op
}

// History returns a copy of what was recorded so far.
func (r *Recorder) History() History {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append(History(nil), r.mu.ops...)
}

// Flush writes buffered lines out and returns the first write error.
func (r *Recorder) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.w != nil && r.mu.err == nil {
		r.mu.err = r.mu.w.Flush()
	}
	return r.mu.err
}

// eventSharer lets the ops of a history share memory where their values
// are equal, which changes no value the checkers see: a final log equal to
// an earlier final log of the same partition (replicas that agree, the
// common case) takes that log's events, and tenant ids are interned. At
// volume the final logs are most of a history: this keeps one copy of
// each instead of one per node. The zero value is ready; it is not safe
// for concurrent use (the Recorder calls it under its lock).
type eventSharer struct {
	finals  map[topicPartition][][]Observed
	tenants map[string]string
}

// tenantsInternedMax bounds the interned tenant ids (a workload has a few
// dozen; past the bound, ids are left as they are).
const tenantsInternedMax = 1 << 16

// share rewrites op's events to share memory with equal ones seen before.
func (s *eventSharer) share(op *Op) {
	if len(op.Events) == 0 {
		return
	}
	if op.F == FFinalRead && op.Type == TypeOK {
		if s.finals == nil {
			s.finals = make(map[topicPartition][][]Observed)
		}
		k := topicPartition{op.Topic, op.Partition}
		for _, prev := range s.finals[k] {
			if slices.Equal(prev, op.Events) {
				op.Events = prev
				return
			}
		}
		s.finals[k] = append(s.finals[k], op.Events)
	}
	if s.tenants == nil {
		s.tenants = make(map[string]string)
	}
	for i := range op.Events {
		t := op.Events[i].Tenant
		if in, ok := s.tenants[t]; ok {
			op.Events[i].Tenant = in
		} else if len(s.tenants) < tenantsInternedMax {
			s.tenants[t] = t
		}
	}
}

// ReadHistory reads a history.jsonl file.
func ReadHistory(path string) (History, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("jepsen: %w", err)
	}
	defer f.Close()
	return readHistory(f, path)
}

// readHistory reads history lines from r (name is for errors).
func readHistory(r io.Reader, name string) (History, error) {
	path := name
	var h History
	var sharer eventSharer
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), historyLineBytesMax)
	for sc.Scan() {
		var op Op
		if err := json.Unmarshal(sc.Bytes(), &op); err != nil {
			return nil, fmt.Errorf("jepsen: %s line %d: %w", path, len(h)+1, err)
		}
		sharer.share(&op)
		h = append(h, op)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("jepsen: %s: %w", path, err)
	}
	return h, nil
}

// historyLineBytesMax bounds one history line (a final read of a whole
// partition is the longest).
const historyLineBytesMax = 256 << 20
