package jepsen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldpb"
)

// hijackWorker, every few seconds: a victim producer (InitProducer) sends
// 10 events (sequences 1–10); a hijacker sends 10 events with the victim's
// producer id, a guessed epoch (the victim's + 1) and sequences 11–20;
// then the victim sends its own sequences 11–20. Every event of both is
// recorded as a produce, so no-lost-write, one-event-per-position and
// same-order catch a victim's acknowledged event that vanished as a
// "duplicate" of the hijacker's.
type hijackWorker struct {
	process    int // the victim; the hijacker is process+1
	cluster    *Cluster
	topic      string
	partitions uint32
	rng        *rand.Rand
}

func (w *hijackWorker) run(ctx context.Context, rec *Recorder) {
	for k := 0; ; k++ {
		if !sleepCtx(ctx, 3*time.Second) {
			return
		}
		w.once(ctx, rec, k)
	}
}

func (w *hijackWorker) once(ctx context.Context, rec *Recorder, k int) {
	node := w.cluster.Nodes[w.rng.IntN(len(w.cluster.Nodes))]
	conn, err := dialNode(node.GRPCAddr, w.cluster.TLS())
	if err != nil {
		return
	}
	defer conn.Close()
	hc := heraldpb.NewHeraldClient(conn)
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	ir, err := hc.InitProducer(ictx, &heraldpb.InitProducerRequest{})
	cancel()
	if err != nil {
		return
	}
	pid, epoch := ir.GetProducerId(), ir.GetProducerEpoch()
	tenant := fmt.Sprintf("hijack-%d", k)
	send := func(process int, prefix string, epoch uint64, seq0 int) {
		part := client.PartitionForTenant(tenant, w.partitions)
		req := &heraldpb.ProduceRequest{Topic: w.topic}
		var invs []Op
		for i := range 10 {
			id := fmt.Sprintf("%s%d-%d-%d", prefix, w.process, k, seq0+i)
			req.Events = append(req.Events, &heraldpb.Event{EventId: id, TenantId: tenant, Payload: []byte(id), ProducerId: pid, ProducerEpoch: epoch, ProducerSeq: uint64(seq0 + i)})
			invs = append(invs, rec.Record(Op{Type: TypeInvoke, F: FProduce, Process: process, Tenant: tenant, EventID: id, Partition: part}))
		}
		pctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
		resp, err := hc.Produce(pctx, req)
		cancel()
		now := rec.Now()
		for i, inv := range invs {
			done := Op{F: FProduce, Process: process, Tenant: tenant, EventID: inv.EventID, Partition: part, Time: now, LatencyNs: now - inv.Time}
			switch {
			case err == nil && len(resp.GetResults()) == len(invs):
				r := resp.GetResults()[i]
				done.Type, done.Partition, done.Offset, done.Sequence, done.Duplicate = TypeOK, r.GetPartition(), r.GetOffset(), r.GetSequence(), r.GetDuplicate()
			case err != nil && status.Code(err) != codes.Unavailable && status.Code(err) != codes.DeadlineExceeded && status.Code(err) != codes.Unknown:
				done.Type, done.Error = TypeFail, err.Error()
			default:
				done.Type, done.Error = TypeInfo, fmt.Sprint(err)
			}
			rec.Record(done)
		}
	}
	send(w.process, "v", epoch, 1)
	send(w.process+1, "h", epoch+1, 11) // the hijacker's guess
	send(w.process, "v", epoch, 11)
}
