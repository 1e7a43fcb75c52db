package jepsen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/heraldlog/herald/client"
)

// Workload modes (Options.Mode).
const (
	// ModeCareful sends one event per Send, paced, every op checked
	// linearizable too: few events, every one examined closely.
	ModeCareful = "careful"
	// ModeVolume pushes the cluster near its peak with batched idempotent
	// producers, several Sends in flight each, on nodes whose Raft groups
	// snapshot, compact and install snapshots often; every acknowledged
	// event is still checked for loss, duplication, position, sequence,
	// order and convergence (not for linearizability: see
	// checkLinearizable).
	ModeVolume = "volume"
)

// Modes lists the workload modes.
var Modes = []string{ModeCareful, ModeVolume}

// Defaults of the volume mode.
const (
	DefaultBatchEvents = 200
	DefaultInFlight    = 4
	// volumeReadInterval paces each reader in volume mode: every page read
	// is kept in the history, so the readers' share of it stays bounded
	// (3 readers, readPageEventsMax events a page: at most 6,000 events/s).
	volumeReadInterval = 100 * time.Millisecond
	// volumeProduceTimeout bounds one batch Send, retries included.
	volumeProduceTimeout = 15 * time.Second
	// batchEventsMax bounds Options.BatchEvents (one request stays far
	// below the server's request size limit with jepsen's small payloads).
	batchEventsMax = 5000
	// inFlightMax bounds Options.InFlight.
	inFlightMax = 64
)

// Raft tuning of the nodes in volume mode (`herald serve` flags): a group
// snapshots after volumeSnapshotThreshold entries, checked every
// volumeSnapshotInterval, and keeps volumeTrailingLogs entries behind it,
// so that a follower down or cut off for a few seconds under load needs
// InstallSnapshot to catch up.
const (
	volumeSnapshotThreshold = 128
	volumeSnapshotInterval  = time.Second
	volumeTrailingLogs      = 16
)

// volumeServeArgs are the extra `herald serve` flags of volume mode.
func volumeServeArgs() []string {
	return []string{
		"--raft-snapshot-threshold", strconv.Itoa(volumeSnapshotThreshold),
		"--raft-snapshot-interval", volumeSnapshotInterval.String(),
		"--raft-trailing-logs", strconv.Itoa(volumeTrailingLogs),
	}
}

// laggardDown is how long volume mode keeps a node of a "kill:one" fault
// down: long enough, at volume, that its groups fall more than
// volumeTrailingLogs entries behind a snapshot and must install one.
const laggardDown = 12 * time.Second

// volumeSchedule returns faults with every "kill:one" window stretched to
// laggardDown and the faults after it moved later by as much, dropping
// those that no longer end within d. The rest of the schedule (kinds,
// variants, picks) is Schedule's, fixed by the seed.
func volumeSchedule(faults []Fault, d time.Duration) []Fault {
	var out []Fault
	var shift time.Duration
	for _, f := range faults {
		f.At += shift
		if f.Kind == NemesisKill && f.Variant == "one" && f.For < laggardDown {
			shift += laggardDown - f.For
			f.For = laggardDown
		}
		if f.At+f.For > d {
			break
		}
		out = append(out, f)
	}
	return out
}

// batchProducer sends batches of BatchEvents events for one tenant at a
// time through one idempotent Producer, inFlight Sends at once (each from
// its own goroutine; the SDK orders a tenant's requests on its lane), and
// records one FProduceBatch op per Send.
type batchProducer struct {
	process int
	// topic is the topic producer writes, as Op.Topic names it (empty:
	// the live topic).
	topic       string
	producer    *client.Producer
	tenants     []string
	batchEvents int
	inFlight    int
	seed        uint64
}

// run produces until ctx ends; a Send in flight then completes (within
// volumeProduceTimeout) and is recorded.
func (w *batchProducer) run(ctx context.Context, rec *Recorder, partitions uint32) {
	var wg sync.WaitGroup
	for slot := range w.inFlight {
		wg.Add(1)
		go func() { // owned by run: ends with ctx
			defer wg.Done()
			rng := rand.New(rand.NewPCG(w.seed, uint64(w.process)<<8|uint64(slot)))
			for n := 0; ctx.Err() == nil; n++ {
				w.send(rec, partitions, rng, fmt.Sprintf("v%d-%d-%d", w.process, slot, n))
			}
		}()
	}
	wg.Wait()
}

// send sends one batch whose event ids are BatchEventID(prefix, k).
func (w *batchProducer) send(rec *Recorder, partitions uint32, rng *rand.Rand, prefix string) {
	tenant := w.tenants[rng.IntN(len(w.tenants))]
	part := client.PartitionForTenant(tenant, partitions)
	events := make([]*client.Event, w.batchEvents)
	for k := range events {
		id := BatchEventID(prefix, k)
		events[k] = &client.Event{EventId: id, TenantId: tenant, Payload: []byte(id)}
	}
	op := Op{F: FProduceBatch, Process: w.process, Topic: w.topic, Tenant: tenant, EventID: prefix, Partition: part, Count: len(events)}
	inv := rec.Now()
	sendCtx, cancel := context.WithTimeout(context.Background(), volumeProduceTimeout) // not ctx: a Send in flight completes
	res, err := w.producer.Send(sendCtx, events...)
	cancel()
	op.Time = rec.Now()
	op.LatencyNs = op.Time - inv
	if settleBatch(&op, res, len(events), err) {
		rec.noteAcked(w.topic, op.Partition, op.Offset+uint64(op.Count-1))
		if len(op.Offsets) > 0 {
			rec.noteAcked(w.topic, op.Partition, op.Offsets[len(op.Offsets)-1])
		}
	}
	rec.Record(op)
}

// settleBatch completes the op of a batch of n events sent through the
// SDK, from its results and error, and reports whether it was
// acknowledged whole: ok (with its places, describeBatch), info when the
// outcome is unknown (or results are missing), else fail: the SDK reports
// an unknown outcome whenever an attempt may have been applied, so
// anything else was definitely not written.
func settleBatch(op *Op, res []*client.ProduceResult, n int, err error) bool {
	complete := err == nil && len(res) == n
	for _, r := range res {
		complete = complete && r != nil
	}
	switch {
	case complete:
		op.Type = TypeOK
		describeBatch(op, res)
	case err == nil:
		op.Type, op.Error = TypeInfo, "incomplete results"
	case errors.Is(err, client.ErrUnknownOutcome):
		op.Type, op.Error = TypeInfo, err.Error()
	default:
		op.Type, op.Error = TypeFail, err.Error()
	}
	return complete
}

// describeBatch fills the places of an acknowledged batch: Offset and
// Sequence of its first event, and Offsets and Sequences only when the
// events are not consecutive from them.
func describeBatch(op *Op, res []*client.ProduceResult) {
	op.Partition, op.Offset, op.Sequence = res[0].GetPartition(), res[0].GetOffset(), res[0].GetSequence()
	offsetsRun, seqRun := true, true
	for k, r := range res {
		offsetsRun = offsetsRun && r.GetOffset() == op.Offset+uint64(k)
		seqRun = seqRun && r.GetSequence() == op.Sequence+uint64(k)
		if r.GetDuplicate() {
			op.Dups++
		}
	}
	if !offsetsRun {
		op.Offsets = make([]uint64, len(res))
		for k, r := range res {
			op.Offsets[k] = r.GetOffset()
		}
	}
	if !seqRun {
		op.Sequences = make([]uint64, len(res))
		for k, r := range res {
			op.Sequences[k] = r.GetSequence()
		}
	}
}
