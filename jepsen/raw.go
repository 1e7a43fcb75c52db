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

// resendEvents is the size of a resent idempotent request: more than the
// 1,024 events of one (partition, tenant) a request once deduplicated.
const resendEvents = 2500

// resendWorker sends, every few seconds, one idempotent Produce request of
// resendEvents events for one tenant straight over gRPC (heraldpb), then
// resends the identical request (same producer id, epoch and sequences).
// Each call is recorded as an FResend op (checked by idempotent-resend);
// every event is recorded as a produce (acknowledged when either call
// returned its result), so no-duplicate and one-event-per-position catch
// an event stored twice in the final logs.
type resendWorker struct {
	process    int
	cluster    *Cluster
	topic      string
	partitions uint32
	rng        *rand.Rand
}

func (w *resendWorker) run(ctx context.Context, rec *Recorder) {
	for k := 0; ; k++ {
		if !sleepCtx(ctx, 5*time.Second) {
			return
		}
		w.once(ctx, rec, k)
	}
}

func (w *resendWorker) once(ctx context.Context, rec *Recorder, k int) {
	node := w.cluster.Nodes[w.rng.IntN(len(w.cluster.Nodes))]
	conn, err := dialNode(node.GRPCAddr, w.cluster.TLS())
	if err != nil {
		return
	}
	defer conn.Close()
	hc := heraldpb.NewHeraldClient(conn)
	// InitProducer where the build has it; an older build takes any id.
	pid, epoch := fmt.Sprintf("jepsen-resend-%d-%d", w.process, k), uint64(0)
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	ir, err := hc.InitProducer(ictx, &heraldpb.InitProducerRequest{})
	cancel()
	switch {
	case err == nil:
		pid, epoch = ir.GetProducerId(), ir.GetProducerEpoch()
	case status.Code(err) != codes.Unimplemented:
		return
	}
	tenant := fmt.Sprintf("resend-%d", k)
	part := client.PartitionForTenant(tenant, w.partitions)
	req := &heraldpb.ProduceRequest{Topic: w.topic}
	for i := range resendEvents {
		id := fmt.Sprintf("r%d-%d-%d", w.process, k, i)
		req.Events = append(req.Events, &heraldpb.Event{EventId: id, TenantId: tenant, Payload: []byte(id),
			ProducerId: pid, ProducerEpoch: epoch, ProducerSeq: uint64(i + 1)})
	}
	invokes := make([]Op, resendEvents)
	for i, e := range req.Events {
		invokes[i] = rec.Record(Op{Type: TypeInvoke, F: FProduce, Process: w.process, Tenant: tenant, EventID: e.GetEventId(), Partition: part})
	}
	var results []*heraldpb.ProduceResult
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ { // the send, then the identical resend
		pctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := hc.Produce(pctx, req)
		cancel()
		note := Op{Type: TypeOK, F: FResend, Process: w.process, Tenant: tenant, Node: node.ID, From: uint64(attempt), Partition: part}
		if err == nil && len(resp.GetResults()) == resendEvents {
			results = resp.GetResults()
			for _, r := range results {
				if r.GetDuplicate() {
					note.Dups++
				}
			}
			note.Offset = results[0].GetOffset()
		} else {
			if err == nil {
				err = fmt.Errorf("%d results for %d events", len(resp.GetResults()), resendEvents)
			}
			lastErr = err
			note.Type, note.Error = resendErrorType(err), err.Error()
		}
		rec.Record(note)
	}
	now := rec.Now()
	for i, inv := range invokes {
		done := Op{F: FProduce, Process: w.process, Tenant: tenant, EventID: inv.EventID, Partition: part, Time: now, LatencyNs: now - inv.Time}
		if results != nil {
			r := results[i]
			done.Type, done.Partition, done.Offset, done.Sequence, done.Duplicate = TypeOK, r.GetPartition(), r.GetOffset(), r.GetSequence(), r.GetDuplicate()
		} else {
			done.Type, done.Error = TypeInfo, fmt.Sprint(lastErr) // may have been written
		}
		rec.Record(done)
	}
}

// resendErrorType classifies a failed send or resend: TypeFail only for
// an answer that refuses the request. A transport failure or timeout, a
// node without a leader for the partition at that moment (an election
// under faults or load: refused before the request was looked at) and an
// unknown outcome (leadership lost while the resend was committing, a
// forward cut short) say nothing of whether the resend would have been
// recognised: TypeInfo, inconclusive.
func resendErrorType(err error) string {
	if c := status.Code(err); c == codes.Unavailable || c == codes.DeadlineExceeded || c == codes.Canceled {
		return TypeInfo
	}
	if ce := client.FromStatus(err); errors.Is(ce, client.ErrNotLeader) || errors.Is(ce, client.ErrNoLeader) || errors.Is(ce, client.ErrUnknownOutcome) {
		return TypeInfo
	}
	return TypeFail
}

// checkResend: the identical resend of an acknowledged idempotent request
// returns the first call's results, every one marked duplicate, at the
// same offsets; it is not refused (an outcome other than unavailable or a
// timeout) and stores nothing anew.
func checkResend(h History) Verdict {
	v := Verdict{Name: CheckResend}
	first := map[string]Op{}
	n := 0
	for _, op := range h {
		if op.F != FResend {
			continue
		}
		n++
		key := fmt.Sprintf("%d/%s", op.Process, op.Tenant)
		if op.From == 0 {
			first[key] = op
			continue
		}
		f, ok := first[key]
		if !ok || f.Type != TypeOK {
			continue
		}
		switch op.Type {
		case TypeFail:
			v.add("resend of the acknowledged request of %d events for tenant %s (op %d, offsets from %d) refused (op %d via %s): %s", resendEvents, op.Tenant, f.Index, f.Offset, op.Index, op.Node, op.Error)
		case TypeOK:
			if op.Dups != resendEvents || op.Offset != f.Offset {
				v.add("resend of the acknowledged request of %d events for tenant %s (op %d, offsets from %d) answered %d duplicates, offsets from %d (op %d via %s): stored again", resendEvents, op.Tenant, f.Index, f.Offset, op.Dups, op.Offset, op.Index, op.Node)
			}
		}
	}
	if n == 0 {
		v.Status, v.Note = StatusSkipped, "no resends"
		return v
	}
	v.Status = StatusPass
	if v.Violations > 0 {
		v.Status = StatusFail
	}
	return v
}
