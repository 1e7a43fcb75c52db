package jepsen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldpb"
)

// mixedEventsPerPart is the number of events of each partition's part of a
// mixed request.
const mixedEventsPerPart = 8

// mixedWorker sends, about once a second, one raw Produce request (heraldpb,
// no SDK) that mixes what a careless or hostile client sends:
//
//   - spanning: plain events for a tenant on partition A and events of an
//     idempotent producer on partition B whose sequences skip ahead of what
//     the producer committed, so B's part is refused by the state machine
//     while A's part commits;
//   - bad-sequence: the same on one partition: plain events of one tenant
//     and the skipping producer's events of another, in one call;
//   - invalid: valid events with one that breaks the topic's contract (no
//     tenant) among them.
//
// The skipping producer is first primed with a request of sequences 1-4,
// recorded like any produce. Every event is recorded as a produce whose
// completion is the request's outcome: acknowledged with its result, a
// definite failure when the server answered a refusal, indeterminate when
// it answered UNKNOWN_OUTCOME or gave no answer. failed-write-never-read
// then catches a refusal that hid a write (defect 5: a refused record's
// siblings appended, a spanning request answered with one part's refusal
// after another part committed).
type mixedWorker struct {
	process    int
	cluster    *Cluster
	topic      string
	partitions uint32
	rng        *rand.Rand
}

func (w *mixedWorker) run(ctx context.Context, rec *Recorder) {
	for k := 0; ; k++ {
		if !sleepCtx(ctx, time.Second) {
			return
		}
		w.once(ctx, rec, k)
	}
}

// tenantOn returns a fresh tenant name for request k that routes to a
// partition other than avoid (any partition when avoid is negative).
func (w *mixedWorker) tenantOn(k int, role string, avoid int64) (string, uint32) {
	for j := 0; ; j++ {
		t := fmt.Sprintf("mixed-%d-%d-%s%d", w.process, k, role, j)
		p := client.PartitionForTenant(t, w.partitions)
		if int64(p) != avoid || w.partitions == 1 {
			return t, p
		}
	}
}

func (w *mixedWorker) once(ctx context.Context, rec *Recorder, k int) {
	node := w.cluster.Nodes[w.rng.IntN(len(w.cluster.Nodes))]
	conn, err := dialNode(node.GRPCAddr, w.cluster.TLS())
	if err != nil {
		return
	}
	defer conn.Close()
	hc := heraldpb.NewHeraldClient(conn)

	kind := []string{"spanning", "bad-sequence", "invalid"}[k%3]
	req := &heraldpb.ProduceRequest{Topic: w.topic}
	plain := func(tenant string, from int) {
		for i := range mixedEventsPerPart {
			id := fmt.Sprintf("m%d-%d-%d", w.process, k, from+i)
			req.Events = append(req.Events, &heraldpb.Event{EventId: id, TenantId: tenant, Payload: []byte(id)})
		}
	}
	switch kind {
	case "spanning", "bad-sequence":
		tp, pp := w.tenantOn(k, "p", -1)
		pid, epoch, ok := w.prime(ctx, rec, hc, node, k, tp, pp)
		if !ok {
			return
		}
		if kind == "spanning" {
			ta, _ := w.tenantOn(k, "a", int64(pp))
			plain(ta, 0)
		} else {
			plain(w.tenantSharing(k, pp), 0)
		}
		gap := uint64(1 + w.rng.IntN(5))
		for i := range mixedEventsPerPart {
			id := fmt.Sprintf("m%d-%d-%d", w.process, k, mixedEventsPerPart+i)
			req.Events = append(req.Events, &heraldpb.Event{EventId: id, TenantId: tp, Payload: []byte(id),
				ProducerId: pid, ProducerEpoch: epoch, ProducerSeq: mixedPrimeEvents + 1 + gap + uint64(i)})
		}
		w.rng.Shuffle(len(req.Events), func(i, j int) { req.Events[i], req.Events[j] = req.Events[j], req.Events[i] })
		// Keep each producer's sequences ascending within the request.
		seq := mixedPrimeEvents + 1 + gap
		for _, e := range req.Events {
			if e.GetProducerId() != "" {
				e.ProducerSeq = seq
				seq++
			}
		}
	case "invalid":
		t, _ := w.tenantOn(k, "a", -1)
		plain(t, 0)
		req.Events[w.rng.IntN(len(req.Events))].TenantId = "" // breaks the contract
	}
	w.send(rec, hc, node, kind, req)
}

// mixedPrimeEvents is the length of the priming request.
const mixedPrimeEvents = 4

// tenantSharing returns a fresh tenant name that routes to partition p.
func (w *mixedWorker) tenantSharing(k int, p uint32) string {
	for j := 0; ; j++ {
		t := fmt.Sprintf("mixed-%d-%d-s%d", w.process, k, j)
		if client.PartitionForTenant(t, w.partitions) == p {
			return t
		}
	}
}

// prime takes a producer id and commits its sequences 1-4 for tenant;
// ok is false when that did not certainly commit.
func (w *mixedWorker) prime(ctx context.Context, rec *Recorder, hc heraldpb.HeraldClient, node Node, k int, tenant string, p uint32) (pid string, epoch uint64, ok bool) {
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	ir, err := hc.InitProducer(ictx, &heraldpb.InitProducerRequest{})
	cancel()
	if err != nil {
		return "", 0, false
	}
	pid, epoch = ir.GetProducerId(), ir.GetProducerEpoch()
	req := &heraldpb.ProduceRequest{Topic: w.topic}
	for i := range mixedPrimeEvents {
		id := fmt.Sprintf("m%d-%d-prime%d", w.process, k, i)
		req.Events = append(req.Events, &heraldpb.Event{EventId: id, TenantId: tenant, Payload: []byte(id),
			ProducerId: pid, ProducerEpoch: epoch, ProducerSeq: uint64(i + 1)})
	}
	return pid, epoch, w.send(rec, hc, node, "prime", req) == TypeOK
}

// send records req's events as produces, sends it once and records each
// event's outcome; it returns the outcome's type.
func (w *mixedWorker) send(rec *Recorder, hc heraldpb.HeraldClient, node Node, kind string, req *heraldpb.ProduceRequest) string {
	invokes := make([]Op, len(req.Events))
	for i, e := range req.Events {
		invokes[i] = rec.Record(Op{Type: TypeInvoke, F: FProduce, Process: w.process, Tenant: e.GetTenantId(), EventID: e.GetEventId(), Partition: client.PartitionForTenant(e.GetTenantId(), w.partitions)})
	}
	pctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	resp, err := hc.Produce(pctx, req)
	cancel()
	now := rec.Now()
	typ, msg := mixedOutcome(err)
	if err == nil && len(resp.GetResults()) != len(req.Events) {
		typ, msg = TypeInfo, fmt.Sprintf("%d results for %d events", len(resp.GetResults()), len(req.Events))
	}
	for i, inv := range invokes {
		done := Op{Type: typ, F: FProduce, Process: w.process, Tenant: inv.Tenant, EventID: inv.EventID, Partition: inv.Partition,
			Node: node.ID, Time: now, LatencyNs: now - inv.Time, Error: kind + ": " + msg}
		if typ == TypeOK {
			r := resp.GetResults()[i]
			done.Partition, done.Offset, done.Sequence, done.Duplicate, done.Error = r.GetPartition(), r.GetOffset(), r.GetSequence(), r.GetDuplicate(), ""
		}
		rec.Record(done)
	}
	return typ
}

// mixedOutcome classifies a raw Produce answer the way a client must read
// it: nil is acknowledged; UNKNOWN_OUTCOME, a timeout or no answer may have
// been written; any other answer from the server is its claim that nothing
// was written.
func mixedOutcome(err error) (typ, msg string) {
	if err == nil {
		return TypeOK, ""
	}
	msg = err.Error()
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Unknown, codes.Internal:
		// No answer, or an answer that does not say nothing was written.
		if !errors.Is(client.FromStatus(err), client.ErrNoLeader) && !errors.Is(client.FromStatus(err), client.ErrNotLeader) {
			return TypeInfo, msg
		}
	}
	if errors.Is(client.FromStatus(err), client.ErrUnknownOutcome) {
		return TypeInfo, msg
	}
	return TypeFail, msg
}
