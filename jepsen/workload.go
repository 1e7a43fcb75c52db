package jepsen

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldpb"
)

// Workload limits.
const (
	// produceTimeout bounds one Send, retries included; past it the outcome
	// is recorded as unknown (info) unless the SDK said it was not written.
	produceTimeout = 8 * time.Second
	// produceInterval paces each producer (at most one Send per interval),
	// which bounds the history to about duration/interval ops per producer.
	produceInterval = 5 * time.Millisecond
	// readTimeout bounds one fetch of a reader; a paused node costs this.
	readTimeout = time.Second
	// readInterval paces each reader between pages.
	readInterval = 20 * time.Millisecond
	// readPageEventsMax bounds a page read during the run.
	readPageEventsMax = 200
	// finalPageEventsMax is the page size of final reads.
	finalPageEventsMax = 5000
)

// Reader observes the log while the faults run and records what it saw
// in the history (FRead ops). Run reads until ctx ends and returns nil
// then; it is called once, from its own goroutine, which Run's return
// ends. Streaming subscribers and consumer groups join the workload by
// implementing Reader.
type Reader interface {
	Name() string
	Run(ctx context.Context, rec *Recorder) error
}

// producerWorker sends one event at a time through one idempotent
// Producer, over the given tenants, recording every operation.
type producerWorker struct {
	process  int
	producer *client.Producer
	tenants  []string
	rng      *rand.Rand
}

// run produces until ctx ends.
func (w *producerWorker) run(ctx context.Context, rec *Recorder, topic string, partitions uint32) {
	tick := time.NewTicker(produceInterval)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		tenant := w.tenants[w.rng.IntN(len(w.tenants))]
		id := fmt.Sprintf("p%d-%d", w.process, n)
		part := client.PartitionForTenant(tenant, partitions)
		inv := rec.Record(Op{Type: TypeInvoke, F: FProduce, Process: w.process, Tenant: tenant, EventID: id, Partition: part})
		sendCtx, cancel := context.WithTimeout(context.Background(), produceTimeout) // not ctx: an op in flight completes
		res, err := w.producer.Send(sendCtx, &client.Event{EventId: id, TenantId: tenant, Payload: []byte(id)})
		cancel()
		done := Op{F: FProduce, Process: w.process, Tenant: tenant, EventID: id, Partition: part}
		done.Time = rec.Now()
		done.LatencyNs = done.Time - inv.Time
		switch {
		case err == nil && len(res) == 1 && res[0] != nil:
			done.Type = TypeOK
			done.Partition, done.Offset, done.Sequence, done.Duplicate = res[0].GetPartition(), res[0].GetOffset(), res[0].GetSequence(), res[0].GetDuplicate()
			rec.noteAcked("", done.Partition, done.Offset)
		case err == nil:
			done.Type, done.Error = TypeInfo, "no result"
		case errors.Is(err, client.ErrUnknownOutcome):
			done.Type, done.Error = TypeInfo, err.Error()
		default:
			// The SDK reports an unknown outcome whenever an attempt may
			// have been applied; anything else was definitely not written.
			done.Type, done.Error = TypeFail, err.Error()
		}
		rec.Record(done)
	}
}

// FetchReader reads the topic from one node over a raw gRPC connection (a
// node with a local replica serves the read itself), alternating reads by
// offset and by tenant sequence over the partitions and tenants.
//
// It does not use client.Reader on purpose: each op is one fetch from one
// node, at a position it picks (re-reads from the start, acknowledged
// offsets the node may not have yet), recorded verbatim with its raw
// error; a Reader would route, retry and refuse inconsistent pages, which
// hides the very answers the checkers judge.
type FetchReader struct {
	Process int
	Node    Node
	// TLS is the clients' TLS configuration (nil: plaintext).
	TLS        *tls.Config
	Topic      string
	Partitions uint32
	Tenants    []string
	Seed       uint64
	// Interval paces the reads; 0 means readInterval.
	Interval time.Duration
}

var _ Reader = (*FetchReader)(nil)

// Name is "fetch@<node>".
func (r *FetchReader) Name() string { return "fetch@" + r.Node.ID }

// Run reads until ctx ends.
func (r *FetchReader) Run(ctx context.Context, rec *Recorder) error {
	conn, err := dialNode(r.Node.GRPCAddr, r.TLS)
	if err != nil {
		return fmt.Errorf("jepsen: reader %s: %w", r.Name(), err)
	}
	defer conn.Close()
	hc := heraldpb.NewHeraldClient(conn)
	rng := rand.New(rand.NewPCG(r.Seed, uint64(r.Process)))
	nextOffset := make([]uint64, r.Partitions)
	nextSeq := make(map[string]uint64)
	interval := r.Interval
	if interval == 0 {
		interval = readInterval
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		req := &heraldpb.FetchRequest{Topic: r.Topic, MaxEvents: readPageEventsMax}
		op := Op{F: FRead, Process: r.Process, Node: r.Node.ID, Topic: opTopic(r.Topic)}
		if rng.IntN(2) == 0 {
			p := uint32(rng.IntN(int(r.Partitions)))
			from := nextOffset[p]
			if rng.IntN(4) == 0 {
				from = 0 // re-read from the start now and then
			}
			mode := ModeOffset
			if acked, ok := rec.ackedHigh(op.Topic, p); ok && rng.IntN(4) == 0 {
				// An acknowledged offset this node may not have yet.
				from, mode = acked, ModeAcked
			}
			req.Partition, req.Start = p, &heraldpb.FetchRequest_Offset{Offset: from}
			op.Partition, op.Mode, op.From = p, mode, from
		} else {
			t := r.Tenants[rng.IntN(len(r.Tenants))]
			p := client.PartitionForTenant(t, r.Partitions)
			from := max(nextSeq[t], 1)
			if rng.IntN(4) == 0 {
				from = 1
			}
			req.Partition, req.TenantId, req.Start = p, t, &heraldpb.FetchRequest_Sequence{Sequence: from}
			op.Partition, op.Mode, op.From, op.Tenant = p, ModeSequence, from, t
		}
		inv := rec.Now()
		rctx, cancel := context.WithTimeout(ctx, readTimeout)
		resp, err := hc.Fetch(rctx, req)
		cancel()
		op.Time = rec.Now()
		op.LatencyNs = op.Time - inv
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			op.Type, op.Error = TypeFail, err.Error()
			var oor *client.OffsetOutOfRangeError
			if errors.As(client.FromStatus(err), &oor) {
				op.LowWatermark, op.HighWatermark = oor.Low, oor.High
				if op.Mode != ModeSequence && oor.Requested < oor.Low {
					// Retention removed what this reader had not read yet.
					nextOffset[op.Partition] = max(nextOffset[op.Partition], oor.Low)
				}
			}
			rec.Record(op)
			continue
		}
		op.Type = TypeOK
		op.Events = observe(resp.GetEvents())
		op.LowWatermark, op.HighWatermark = resp.GetLowWatermark(), resp.GetHighWatermark()
		rec.Record(op)
		if op.Mode != ModeSequence {
			if resp.GetNextOffset() > nextOffset[op.Partition] {
				nextOffset[op.Partition] = resp.GetNextOffset()
			}
		} else if resp.GetNextSequence() > nextSeq[op.Tenant] {
			nextSeq[op.Tenant] = resp.GetNextSequence()
		}
	}
}

// opTopic is topic as Op.Topic names it: empty for the live topic.
func opTopic(topic string) string {
	if topic == topicName {
		return ""
	}
	return topic
}

// observe is what a read page keeps of its events (no digest: pages
// during the run are many, and the checkers compare them by id).
func observe(events []*heraldpb.Event) []Observed {
	out := make([]Observed, len(events))
	for i, e := range events {
		out[i] = Observed{Offset: e.GetOffset(), Sequence: e.GetSequence(), Tenant: e.GetTenantId(), EventID: e.GetEventId()}
	}
	return out
}

// observeContent is observe with each event's digest, for the final logs
// and subscriptions, whose content the subscriptions checker compares.
func observeContent(events []*heraldpb.Event) []Observed {
	out := observe(events)
	for i, e := range events {
		out[i].Digest = eventDigest(e)
	}
	return out
}

// crc32c is the Castagnoli table of eventDigest.
var crc32c = crc32.MakeTable(crc32.Castagnoli)

// eventDigest is a CRC32C of what an event carries besides its place
// and identity: payload, key, producer id and sequence, and the time the
// leader stamped (which differs between two appends of equal content).
// Observed keeps it instead of the payload, to bound the history.
func eventDigest(e *heraldpb.Event) uint32 {
	var num [16]byte
	binary.LittleEndian.PutUint64(num[:8], e.GetProducerSeq())
	binary.LittleEndian.PutUint64(num[8:], uint64(e.GetProducedAtUnixNano()))
	d := crc32.Update(0, crc32c, e.GetPayload())
	d = crc32.Update(d, crc32c, []byte{0})
	d = crc32.Update(d, crc32c, e.GetKey())
	d = crc32.Update(d, crc32c, []byte{0})
	d = crc32.Update(d, crc32c, []byte(e.GetProducerId()))
	return crc32.Update(d, crc32c, num[:])
}

// localReadKey is the metadata a node sets on a request it forwards to a
// peer (server/peers.go); a node receiving it answers from its own replica
// or refuses, instead of forwarding the read to another node.
const localReadKey = "herald-forwarded"

// localRead marks reads that must be served by the node asked, from its own
// replica: convergence and the final reads compare replicas, and a node
// whose replica is not open (rejoining, say) would otherwise answer with
// another node's data.
func localRead(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, localReadKey, "1")
}

// finalRead reads the whole of every partition from every node and
// records one FFinalRead op per (node, partition), with each event's
// digest when digests is set (a run with subscribers, whose events the
// subscriptions checker compares by content; the digests cost about a
// quarter more history in the final logs, which dominate a volume run's).
func finalRead(ctx context.Context, rec *Recorder, nodes []Node, conf *tls.Config, topic string, partitions uint32, digests bool) error {
	var errs []error
	for _, n := range nodes {
		conn, err := dialNode(n.GRPCAddr, conf)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		hc := heraldpb.NewHeraldClient(conn)
		for p := range partitions {
			op := Op{F: FFinalRead, Process: -2, Node: n.ID, Partition: p, Mode: ModeOffset, Topic: opTopic(topic)}
			events, low, high, err := readAll(localRead(ctx), hc, topic, p, digests)
			op.Type, op.Events, op.LowWatermark, op.HighWatermark = TypeOK, events, low, high
			if err != nil {
				op.Type, op.Error = TypeFail, err.Error()
				errs = append(errs, fmt.Errorf("jepsen: final read of %s partition %d: %w", n.ID, p, err))
			}
			rec.Record(op)
		}
		_ = conn.Close()
	}
	return errors.Join(errs...)
}

// finalTrimsMax bounds how often one final read starts again above a
// low watermark that retention moved while it read.
const finalTrimsMax = 20

// readAll reads partition p from its low watermark to the node's high
// watermark and returns the events, the low watermark the log read starts
// at and the high watermark of the last page. A page asked below the low
// watermark (retention trimmed the partition before or while it was read)
// drops what was read below it and goes on from it.
//
// It is a page loop of its own rather than a client.Reader because the
// final logs must reach the checkers as the replica served them: a Reader
// refuses a page that breaks the read contract (ErrInconsistentPage), so a
// replica serving events out of order or twice would show as a failed
// final read (an unknown verdict) instead of the violation the checkers
// report.
func readAll(ctx context.Context, hc heraldpb.HeraldClient, topic string, p uint32, digests bool) (events []Observed, low, high uint64, err error) {
	from := uint64(0)
	for trims := 0; ; {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := hc.Fetch(rctx, &heraldpb.FetchRequest{Topic: topic, Partition: p, Start: &heraldpb.FetchRequest_Offset{Offset: from}, MaxEvents: finalPageEventsMax})
		cancel()
		var oor *client.OffsetOutOfRangeError
		if err != nil && errors.As(client.FromStatus(err), &oor) && oor.Requested < oor.Low && trims < finalTrimsMax {
			trims++
			k := 0
			for k < len(events) && events[k].Offset < oor.Low {
				k++
			}
			events, low, from = events[k:], oor.Low, oor.Low
			continue
		}
		if err != nil {
			return events, low, high, err
		}
		if len(events) == 0 {
			low = max(low, resp.GetLowWatermark())
		}
		high = resp.GetHighWatermark()
		if digests {
			events = append(events, observeContent(resp.GetEvents())...)
		} else {
			events = append(events, observe(resp.GetEvents())...)
		}
		if len(resp.GetEvents()) == 0 || resp.GetNextOffset() >= resp.GetHighWatermark() {
			return events, low, high, nil
		}
		from = resp.GetNextOffset()
	}
}

// highWatermarks returns, per node, each partition's high watermark as
// that node's replica reports it (a Fetch from the earliest retained
// offset of no events would do, but a page of one event is the cheapest
// call that returns it).
func highWatermarks(ctx context.Context, nodes []Node, conf *tls.Config, topic string, partitions uint32) ([][]uint64, error) {
	out := make([][]uint64, len(nodes))
	for i, n := range nodes {
		conn, err := dialNode(n.GRPCAddr, conf)
		if err != nil {
			return nil, err
		}
		hc := heraldpb.NewHeraldClient(conn)
		out[i] = make([]uint64, partitions)
		for p := range partitions {
			rctx, cancel := context.WithTimeout(localRead(ctx), readTimeout)
			resp, err := hc.Fetch(rctx, &heraldpb.FetchRequest{Topic: topic, Partition: p, Start: &heraldpb.FetchRequest_Position{Position: heraldpb.StartPosition_EARLIEST}, MaxEvents: 1})
			cancel()
			if err != nil {
				_ = conn.Close()
				return nil, fmt.Errorf("jepsen: %s partition %d: %w", n.ID, p, err)
			}
			out[i][p] = resp.GetHighWatermark()
		}
		_ = conn.Close()
	}
	return out, nil
}

// awaitConvergence polls until every node reports the same high watermark
// for every partition twice in a row, every partition has a leader, or
// ctx ends.
func awaitConvergence(ctx context.Context, c *Cluster, topic string, partitions uint32) error {
	var last [][]uint64
	var lastErr error
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		hw, err := highWatermarks(ctx, c.Nodes, c.TLS(), topic, partitions)
		if err == nil {
			same := true
			for i := range hw {
				for p := range hw[i] {
					same = same && hw[i][p] == hw[0][p]
				}
			}
			if same && last != nil && equalMatrix(hw, last) && leadersKnown(ctx, c, topic) {
				return nil
			}
			last, lastErr = hw, fmt.Errorf("jepsen: replicas not converged: high watermarks %v", hw)
		} else {
			last, lastErr = nil, err
		}
		select {
		case <-ctx.Done():
			return errors.Join(lastErr, ctx.Err())
		case <-tick.C:
		}
	}
}

func equalMatrix(a, b [][]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i]) != len(b[i]) {
			return false
		}
		for j := range a[i] {
			if a[i][j] != b[i][j] {
				return false
			}
		}
	}
	return true
}

// leadersKnown reports whether ClusterStatus names a leader for every
// partition of topic.
func leadersKnown(ctx context.Context, c *Cluster, topic string) bool {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	cl, err := c.newClient(ctx)
	if err != nil {
		return false
	}
	defer cl.Close()
	st, err := cl.ClusterStatus(ctx)
	if err != nil {
		return false
	}
	for _, p := range st.GetPartitions() {
		if p.GetTopic() == topic && p.GetLeaderId() == "" {
			return false
		}
	}
	return true
}

// runWorkers runs the producers and readers until ctx ends and waits for
// them all.
func runWorkers(ctx context.Context, rec *Recorder, topic string, partitions uint32, producers []*producerWorker, batchers []*batchProducer, readers []Reader) []error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, w := range batchers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(ctx, rec, partitions)
		}()
	}
	for _, w := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(ctx, rec, topic, partitions)
		}()
	}
	for _, r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.Run(ctx, rec); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errs
}
