package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"
	hraft "github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	"github.com/heraldlog/herald/partition"
	"github.com/heraldlog/herald/server/controller"
)

// produceEventsMax bounds the events of one produce request, so that its
// response fits a client's default 4 MiB receive limit: one ProduceResult
// is at most ~291 bytes encoded (an event id of idBytesMax bytes), so
// 10,000 of them stay under 3 MiB. A larger request used to commit and then
// fail to deliver its answer (ResourceExhausted on the client), which read
// as a refusal.
const produceEventsMax = 10_000

var deterministic = proto.MarshalOptions{Deterministic: true}

func (s *heraldService) Produce(ctx context.Context, req *heraldpb.ProduceRequest) (*heraldpb.ProduceResponse, error) {
	n := s.node
	t, err := n.lookupTopic(ctx, req.GetTopic())
	if err != nil {
		return nil, err
	}
	events := req.GetEvents()
	if len(events) == 0 {
		return nil, wire.InvalidArgument("events", "a produce request needs at least one event")
	}
	if tenant, wait, ok := n.quotaBlocks.blocked(events); ok {
		return nil, n.refuseAtDoor(ctx, req, tenant, wait)
	}
	release, err := n.limits.acquireProduce(ctx, proto.Size(req))
	if err != nil {
		return nil, err
	}
	defer release()
	if len(events) > produceEventsMax {
		return nil, wire.InvalidArgument("events", "%d events in one request; the limit is %d", len(events), produceEventsMax)
	}
	// Validate everything before anything is proposed: a bad event fails
	// the whole request and nothing is written.
	byPartition, err := n.planProduce(ctx, t, events)
	var contractErr *contractRefusal
	if errors.As(err, &contractErr) {
		// Refused by this node's copy of the topic's contract: confirm it
		// against the registry as of now, since an alter acknowledged
		// through another node may not be applied here yet.
		if err := n.syncRegistry(ctx); err != nil {
			return nil, err
		}
		if t, err = n.lookupTopic(ctx, req.GetTopic()); err != nil {
			return nil, err
		}
		byPartition, err = n.planProduce(ctx, t, events)
	}
	if errors.As(err, &contractErr) {
		return nil, contractErr.err
	}
	if err != nil {
		return nil, err
	}

	results := make([]*heraldpb.ProduceResult, len(events))
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		committed []uint32    // partitions whose part committed
		failed    []partError // the others
		throttle  time.Duration
	)
	for pidx, idxs := range byPartition {
		wg.Add(1)
		go func(p controller.Partition, idxs []int) {
			defer wg.Done()
			sub := make([]*heraldpb.Event, len(idxs))
			for j, i := range idxs {
				sub[j] = events[i]
			}
			assigned, pause, err := n.produceToPartitionChecked(ctx, t, p, sub)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = append(failed, partError{p.Index, err})
				return
			}
			committed = append(committed, p.Index)
			throttle = max(throttle, pause)
			for j, i := range idxs {
				results[i] = &heraldpb.ProduceResult{
					Partition: p.Index,
					Offset:    assigned[j].Offset,
					Sequence:  assigned[j].Sequence,
					EventId:   events[i].EventId,
					Duplicate: assigned[j].Duplicate,
				}
			}
		}(t.Partitions[pidx], idxs)
	}
	wg.Wait()
	if err := partsOutcome(committed, failed); err != nil {
		return nil, err
	}
	dups := 0
	for _, r := range results {
		if r.Duplicate {
			dups++
		}
	}
	n.metrics.producedEvents.WithLabelValues(t.Name).Add(float64(len(events) - dups))
	n.metrics.duplicates.WithLabelValues(t.Name).Add(float64(dups))
	return &heraldpb.ProduceResponse{Results: results, ThrottleMs: throttleMs(throttle)}, nil
}

// throttleMaxMs caps the throttle hint of one reply.
const throttleMaxMs = 30_000

// throttleMs is a throttle hint in whole milliseconds, rounded up, capped.
func throttleMs(d time.Duration) uint32 {
	if d <= 0 {
		return 0
	}
	return uint32(min((d+time.Millisecond-1)/time.Millisecond, throttleMaxMs))
}

// validateEvent checks one event of a produce request.
func validateEvent(i int, ev *heraldpb.Event, maxEventBytes uint64) error {
	if ev == nil {
		return wire.InvalidArgument(fmt.Sprintf("events[%d]", i), "event %d is empty", i)
	}
	if ev.TenantId == "" {
		return wire.InvalidArgument(fmt.Sprintf("events[%d].tenant_id", i), "event %d has no tenant_id", i)
	}
	if len(ev.TenantId) > tenantBytesMax {
		return wire.InvalidArgument(fmt.Sprintf("events[%d].tenant_id", i), "tenant_id of event %d is %d bytes; the limit is %d", i, len(ev.TenantId), tenantBytesMax)
	}
	for field, v := range map[string]string{"event_id": ev.EventId, "producer_id": ev.ProducerId} {
		if len(v) > idBytesMax {
			return wire.InvalidArgument(fmt.Sprintf("events[%d].%s", i, field), "%s of event %d is %d bytes; the limit is %d", field, i, len(v), idBytesMax)
		}
	}
	if uint64(len(ev.Payload)) > maxEventBytes {
		return wire.PayloadTooLarge(uint64(len(ev.Payload)), maxEventBytes)
	}
	if env := proto.Size(ev) - len(ev.Payload); env > envelopeBytesMax {
		return wire.InvalidArgument(fmt.Sprintf("events[%d]", i), "envelope of event %d (everything but the payload) is %d bytes; the limit is %d", i, env, envelopeBytesMax)
	}
	return nil
}

// contractRefusal wraps a refusal decided by a topic's contract (as
// opposed to the event alone), which the node confirms against a synced
// registry before answering it.
type contractRefusal struct{ err error }

func (e *contractRefusal) Error() string { return e.err.Error() }
func (e *contractRefusal) Unwrap() error { return e.err }

// planProduce validates every event of a request against t and groups the
// events' indices by partition. A refusal by the contract is a
// *contractRefusal.
func (n *Node) planProduce(ctx context.Context, t *controller.Topic, events []*heraldpb.Event) (map[uint32][]int, error) {
	byPartition := make(map[uint32][]int)
	producerSeqs := make(map[producerKey]uint64) // last producer_seq seen in this request
	for i, ev := range events {
		if err := validateEvent(i, ev, t.MaxEventBytes); err != nil {
			return nil, err
		}
		if err := n.checkContract(ctx, i, t, ev); err != nil {
			return nil, &contractRefusal{err}
		}
		if ev.EventId == "" {
			id, err := uuid.NewV7()
			if err != nil {
				return nil, err
			}
			ev.EventId = id.String()
		}
		p := wire.PartitionFor(heraldpb.Ordering(t.Ordering), ev.TenantId, ev.Key, ev.EventId, uint32(len(t.Partitions)))
		if ev.ProducerId != "" {
			if ev.ProducerSeq == 0 {
				return nil, wire.InvalidArgument(fmt.Sprintf("events[%d].producer_seq", i), "event %d has a producer_id but no producer_seq (they start at 1)", i)
			}
			k := producerKey{ev.TenantId, p, ev.ProducerId}
			if last, ok := producerSeqs[k]; ok && ev.ProducerSeq != last+1 {
				return nil, wire.InvalidArgument(fmt.Sprintf("events[%d].producer_seq", i), "producer %s sequences must be consecutive within a request: %d follows %d", ev.ProducerId, ev.ProducerSeq, last)
			}
			producerSeqs[k] = ev.ProducerSeq
		}
		byPartition[p] = append(byPartition[p], i)
	}
	return byPartition, nil
}

// contractRetriesMax bounds how often one part of a produce request is
// checked again and resent after its partition refused it as checked
// against an older contract.
const contractRetriesMax = 3

// produceToPartitionChecked is produceToPartition for a part checked
// against t: when the partition refuses it as checked against an older
// contract (nothing written), the node syncs its registry, checks the
// events against the topic's current contract and resends them.
func (n *Node) produceToPartitionChecked(ctx context.Context, t *controller.Topic, p controller.Partition, events []*heraldpb.Event) ([]partition.Assigned, time.Duration, error) {
	assigned, throttle, err := n.produceToPartition(ctx, t, p, events)
	for attempt := 0; errors.Is(err, partition.ErrContractChanged); attempt++ {
		n.metrics.contractRechecks.Inc()
		if attempt == contractRetriesMax {
			return nil, 0, wire.NoLeader(fmt.Sprintf("partition %d of %s: the topic's contract kept changing while the request was checked; nothing written", p.Index, t.Name))
		}
		if err := n.syncRegistry(ctx); err != nil {
			return nil, 0, err
		}
		cur, ok := n.controllerFSM.Topic(t.Name)
		if !ok || int(p.Index) >= len(cur.Partitions) || cur.Partitions[p.Index].GroupID != p.GroupID {
			return nil, 0, wire.TopicNotFound(t.Name) // deleted (and perhaps created anew) meanwhile
		}
		for i, ev := range events {
			if err := n.checkContract(ctx, i, cur, ev); err != nil {
				return nil, 0, err
			}
		}
		t = cur
		assigned, throttle, err = n.produceToPartition(ctx, t, p, events)
	}
	return assigned, throttle, err
}

// produceToPartition appends events to one partition: through the local
// replica when it leads, else by forwarding to the leader (at most two
// hops: a forwarded request is never forwarded again).
func (n *Node) produceToPartition(ctx context.Context, t *controller.Topic, p controller.Partition, events []*heraldpb.Event) ([]partition.Assigned, time.Duration, error) {
	topic := t.Name
	forwarded := isForwarded(ctx)
	if r := n.replica(p.GroupID); r != nil {
		if r.IsLeader() {
			// One produce call: the partition checks the producer rules and
			// the contract fence for all of it before appending any of it.
			assigned, throttle, err := r.Produce(ctx, t.ContractVersion, encodeRecords(events, t))
			if err == nil {
				return assigned, throttle, nil
			}
			if errors.Is(err, partition.ErrContractChanged) {
				return nil, 0, err // produceToPartitionChecked checks again and resends
			}
			var quota *partition.QuotaError
			if errors.As(err, &quota) {
				n.quotaBlocks.block(quota.Tenant, quota.RetryAfter)
			}
			if !errors.Is(err, partition.ErrNotLeader) {
				return nil, 0, partitionError(err)
			}
			// Lost leadership before proposing: safe to send to the new leader.
		}
		addr, id := r.Leader()
		if addr == "" {
			return nil, 0, wire.NoLeader(fmt.Sprintf("partition %d of %s", p.Index, topic))
		}
		if forwarded || id == n.cfg.NodeID {
			return nil, 0, wire.NotLeader(id, addr)
		}
		return n.forwardProduce(ctx, topic, addr, events)
	}
	if forwarded {
		return nil, 0, wire.NotLeader("", "")
	}
	// No replica here: send to the preferred leader, which forwards once
	// more to the actual leader if needed.
	addr := n.nodes()[p.Replicas[0]]
	if addr == "" {
		return nil, 0, wire.NoLeader(fmt.Sprintf("partition %d of %s", p.Index, topic))
	}
	return n.forwardProduce(ctx, topic, addr, events)
}

func (n *Node) forwardProduce(ctx context.Context, topic, addr string, events []*heraldpb.Event) ([]partition.Assigned, time.Duration, error) {
	n.metrics.forwarded.WithLabelValues("Produce").Inc()
	hc, err := n.peers.herald(addr)
	if err != nil {
		return nil, 0, err
	}
	fctx, sent := wire.TrackSent(forwardContext(ctx))
	resp, err := hc.Produce(fctx, &heraldpb.ProduceRequest{Topic: topic, Events: events})
	if err != nil {
		err = wire.FromStatus(err)
		var nl *wire.NotLeaderError
		switch {
		case errors.As(err, &nl), errors.Is(err, wire.ErrNoLeader), errors.Is(err, wire.ErrUnknownOutcome):
			return nil, 0, err
		case errors.Is(err, wire.ErrUnavailable) && !sent():
			// Never left this node (the leader it knows is down): nothing
			// was written, the caller may retry once a new leader is known.
			return nil, 0, wire.NoLeader(fmt.Sprintf("partition leader %s unreachable", addr))
		case errors.Is(err, wire.ErrUnavailable):
			// The peer may have received it before the connection broke.
			return nil, 0, wire.UnknownOutcome("forwarding to %s: %v", addr, err)
		default:
			return nil, 0, err
		}
	}
	if len(resp.GetResults()) != len(events) {
		return nil, 0, wire.UnknownOutcome("leader %s returned %d results for %d events", addr, len(resp.GetResults()), len(events))
	}
	out := make([]partition.Assigned, len(events))
	for i, r := range resp.GetResults() {
		out[i] = partition.Assigned{Offset: r.GetOffset(), Sequence: r.GetSequence(), Duplicate: r.GetDuplicate()}
	}
	return out, time.Duration(resp.GetThrottleMs()) * time.Millisecond, nil
}

// encodeRecords encodes each event once, without the server-assigned
// fields, as the partition will store it.
func encodeRecords(events []*heraldpb.Event, t *controller.Topic) []partition.Record {
	records := make([]partition.Record, len(events))
	for i, ev := range events {
		ev.Offset, ev.Sequence, ev.ProducedAtUnixNano, ev.Partition = 0, 0, 0, 0
		// Stored with its effective TTL; the request keeps its own, so
		// that a resend checked against a newer contract starts from it.
		// The epoch is a producer's fencing token: not stored (readers see
		// producer_id and producer_seq only).
		ttl, epoch := ev.TtlMs, ev.ProducerEpoch
		ev.TtlMs, ev.ProducerEpoch = effectiveTTL(ttl, t), 0
		data, err := deterministic.Marshal(ev)
		ev.TtlMs, ev.ProducerEpoch = ttl, epoch
		if err != nil {
			// Marshal of a valid message only fails on invalid UTF-8 in
			// string fields, which gRPC decoding already rejects.
			panic(fmt.Sprintf("server: encode event: %v", err))
		}
		records[i] = partition.Record{
			TenantID:       ev.TenantId,
			Event:          data,
			ProducerID:     ev.ProducerId,
			ProducerSeq:    ev.ProducerSeq,
			EventID:        ev.EventId,
			TTLMs:          effectiveTTL(ttl, t),
			DedupeWindowMs: t.DedupeWindowMs,
			ProducerEpoch:  ev.ProducerEpoch,
		}
	}
	return records
}

// effectiveTTL is the event's TTL under the topic's contract: its own, or
// the topic's default, or (when neither is set) the topic's maximum.
func effectiveTTL(ttlMs int64, t *controller.Topic) int64 {
	if ttlMs == 0 {
		ttlMs = t.DefaultTTLMs
	}
	if ttlMs == 0 {
		ttlMs = t.MaxTTLMs
	}
	return ttlMs
}

// producerKey identifies an idempotent producer's sequence space: per
// tenant and partition.
type producerKey struct {
	tenant    string
	partition uint32
	producer  string
}

// checkContract enforces the topic's contract on one event: known tenant,
// schema and version, TTL, required envelope fields.
func (n *Node) checkContract(ctx context.Context, i int, t *controller.Topic, ev *heraldpb.Event) error {
	if !t.AutoTenants {
		if err := n.lookupTenant(ctx, ev.TenantId); err != nil {
			return err
		}
	} else if !tenantIDPattern.MatchString(ev.TenantId) {
		return wire.InvalidArgument(fmt.Sprintf("events[%d].tenant_id", i), "invalid tenant id %q", ev.TenantId)
	} else {
		n.autoCreateTenant(ev.TenantId)
	}
	if ev.Schema != "" && t.Schema != "" && ev.Schema != t.Schema {
		return wire.InvalidArgument(fmt.Sprintf("events[%d].schema", i), "event %d has schema %q; topic %s takes %q", i, ev.Schema, t.Name, t.Schema)
	}
	if len(t.SchemaVersions) > 0 && !slices.Contains(t.SchemaVersions, ev.SchemaVersion) {
		return wire.SchemaVersionNotAllowed(t.Schema, ev.SchemaVersion, t.SchemaVersions)
	}
	if ev.TtlMs < 0 {
		return wire.InvalidArgument(fmt.Sprintf("events[%d].ttl_ms", i), "event %d has a negative TTL", i)
	}
	if t.MaxTTLMs > 0 && effectiveTTL(ev.TtlMs, t) > t.MaxTTLMs {
		return wire.TTLTooLarge(effectiveTTL(ev.TtlMs, t), t.MaxTTLMs)
	}
	for _, f := range t.RequiredFields {
		if !wire.HasEnvelopeField(ev, f) {
			return wire.MissingField(f, "event %d lacks %s, which topic %s requires", i, f, t.Name)
		}
	}
	return nil
}

// queueFullRetryAfter is the retry hint of QUEUE_FULL: about the time a
// leader takes to commit the entries its full queue holds (a few fsyncs of
// the largest entries on a quorum).
const queueFullRetryAfter = 100 * time.Millisecond

// partitionError maps replica errors to the wire errors.
func partitionError(err error) error {
	var ooo *partition.OutOfOrderError
	var fenced *partition.ProducerFencedError
	var full *partition.QueueFullError
	var quota *partition.QuotaError
	var lag *partition.LagError
	switch {
	case errors.As(err, &quota):
		return wire.QuotaExceeded(quota.Tenant, quota.Detail, max(quota.RetryAfter.Milliseconds(), 1))
	case errors.As(err, &lag):
		p := lag.Pressure
		return wire.ConsumerLagExceeded(p.Topic, p.Group, p.Lag, p.PauseLag, lag.RetryAfter.Milliseconds())

	case errors.As(err, &ooo):
		return wire.OutOfOrderSequence(ooo.ProducerID, ooo.Expected, ooo.Got)
	case errors.As(err, &fenced):
		return wire.ProducerFenced(fenced.ProducerID, fenced.Epoch, fenced.CurrentEpoch)
	case errors.Is(err, partition.ErrUnknownProducer):
		return wire.UnknownProducer(err.Error())
	case errors.Is(err, partition.ErrSequenceTooOld):
		return wire.DuplicateSequence(err.Error())
	case errors.Is(err, partition.ErrInvalidRecord), errors.Is(err, partition.ErrEntryTooLarge):
		return wire.InvalidArgument("events", "%v", err)
	case errors.As(err, &full):
		if full.Tenant != "" {
			return wire.TenantQueueFull(full.Tenant, full.QueuedBytes, full.QueueBytesMax, queueFullRetryAfter.Milliseconds())
		}
		return wire.QueueFull(full.QueuedBytes, full.QueueBytesMax, queueFullRetryAfter.Milliseconds())
	case errors.Is(err, partition.ErrUnknownOutcome):
		return wire.UnknownOutcome("%v", err)
	case errors.Is(err, partition.ErrClosed):
		return wire.NoLeader("partition replica is closing")
	default:
		return err // context errors map themselves in wire.Status
	}
}

// classifyRaftError maps a raft.Apply error on a non-partition group.
func classifyRaftError(err error, what string) error {
	switch {
	case errors.Is(err, hraft.ErrNotLeader), errors.Is(err, hraft.ErrEnqueueTimeout):
		return wire.NoLeader(what)
	default:
		return wire.UnknownOutcome("%s: %v", what, err)
	}
}

// partError is the failure of one partition's part of a produce request.
type partError struct {
	partition uint32
	err       error
}

// partsOutcome is the error of a produce request whose parts (one per
// partition) committed or failed independently, or nil when all committed.
// A request is a refusal only when nothing of it can have been written:
// every part failed and none with an unknown outcome. When some part
// committed, or a part's outcome is unknown, the request's outcome is
// UNKNOWN_OUTCOME, naming what committed and what failed: never a refusal
// that hides a write (an idempotent producer's resend then stores the
// missing part once).
func partsOutcome(committed []uint32, failed []partError) error {
	if len(failed) == 0 {
		return nil
	}
	sort.Slice(failed, func(i, j int) bool { return failed[i].partition < failed[j].partition })
	if len(committed) == 0 {
		for _, f := range failed {
			if errors.Is(f.err, wire.ErrUnknownOutcome) {
				return f.err
			}
		}
		return failed[0].err
	}
	slices.Sort(committed)
	return wire.UnknownOutcome("the request's parts on partitions %v committed, the part on partition %d failed: %v",
		committed, failed[0].partition, failed[0].err)
}
