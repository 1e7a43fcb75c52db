package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	heraldlog "github.com/heraldlog/herald/log"
	"github.com/heraldlog/herald/partition"
)

// Fetch limits.
const (
	fetchEventsDefault = 500
	fetchEventsMax     = 10_000
	fetchBytesDefault  = 4 << 20
	fetchBytesMax      = 16 << 20
	// fetchScanRecordsMax bounds the records one tenant-filtered offset
	// scan reads, however few of them belong to the tenant.
	fetchScanRecordsMax = 50_000
	// fetchWaitMax caps a long poll (FetchRequest.max_wait_ms).
	fetchWaitMax = 30 * time.Second
)

// Fetch serves a read of one partition (docs/protocol.md, "Fetch"), from
// this node's replica when its answer is authoritative, else forwarded.
// It draws on the node limits (limits.go): a long poll counts against
// long_polls, and every read (a forwarded one included: its answer comes
// back through here) reserves the fetch's max_bytes of fetch_bytes first.
func (s *heraldService) Fetch(ctx context.Context, req *heraldpb.FetchRequest) (*heraldpb.FetchResponse, error) {
	n := s.node
	if req.GetMaxWaitMs() > 0 && req.GetPosition() != heraldpb.StartPosition_LATEST {
		release, err := n.limits.acquireLongPoll(ctx)
		if err != nil {
			return nil, err
		}
		defer release()
	}
	hold := n.limits.fetchHold(req)
	defer hold.release()
	t, err := n.lookupTopic(ctx, req.GetTopic())
	if err != nil {
		return nil, err
	}
	if int(req.GetPartition()) >= len(t.Partitions) {
		return nil, wire.PartitionNotFound(t.Name, req.GetPartition())
	}
	if _, ok := req.GetStart().(*heraldpb.FetchRequest_Sequence); ok && req.GetTenantId() == "" {
		return nil, wire.InvalidArgument("tenant_id", "a fetch from a tenant sequence needs tenant_id")
	}
	p := t.Partitions[req.GetPartition()]
	r := n.replica(p.GroupID)
	latest := req.GetPosition() == heraldpb.StartPosition_LATEST
	behind := false
	if r != nil && (!latest || r.IsLeader()) {
		resp, delivered, err := n.readLocal(ctx, r, p.Index, req, hold)
		switch {
		case err == nil:
			n.metrics.fetchedEvents.WithLabelValues(t.Name).Add(float64(delivered))
			return resp, nil
		case !errors.Is(err, errReplicaBehind):
			return nil, err
		}
		// This replica is behind the offset asked for, which the leader may
		// have acknowledged: never "out of range" from here. The leader (or
		// another replica) answers.
		behind = true
		n.metrics.fetchBehind.Inc()
	}
	if isForwarded(ctx) {
		if r != nil {
			addr, id := r.Leader()
			return nil, wire.NotLeader(id, addr)
		}
		return nil, wire.NotLeader("", "")
	}
	// Forward: to the leader for "latest", else to any replica that answers.
	var targets []string
	if r != nil {
		if addr, _ := r.Leader(); addr != "" {
			targets = append(targets, addr)
		}
	}
	nodes := n.nodes()
	for _, id := range p.Replicas {
		if id != n.cfg.NodeID && nodes[id] != "" {
			targets = append(targets, nodes[id])
		}
	}
	var lastErr error = wire.NoLeader(fmt.Sprintf("partition %d of %s", p.Index, t.Name))
	if behind {
		lastErr = wire.NoLeader(fmt.Sprintf("partition %d of %s (this replica is behind the offset asked for)", p.Index, t.Name))
	}
	// The answer comes back through this node: reserve for it before
	// asking, except for a long poll, which would hold the reservation
	// while it waits at the other node; its answer is reserved for when
	// it arrives (a read refused then is simply asked again).
	longPoll := req.GetMaxWaitMs() > 0
	if !longPoll {
		if err := hold.reserve(ctx); err != nil {
			return nil, err
		}
	}
	for _, addr := range targets {
		hc, err := n.peers.herald(addr)
		if err != nil {
			lastErr = err
			continue
		}
		n.metrics.forwarded.WithLabelValues("Fetch").Inc()
		resp, err := hc.Fetch(forwardContext(ctx), req)
		if err == nil {
			if longPoll && len(resp.GetEvents()) > 0 {
				if err := hold.reserve(ctx); err != nil {
					return nil, err
				}
			}
			return resp, nil
		}
		lastErr = wire.FromStatus(err)
		var nl *wire.NotLeaderError
		if !errors.Is(lastErr, wire.ErrUnavailable) && !errors.As(lastErr, &nl) && !errors.Is(lastErr, wire.ErrNoLeader) {
			return nil, lastErr
		}
	}
	return nil, lastErr
}

// errReplicaBehind reports that the local replica could not answer a
// fetch: it is behind the offset asked for (a follower, or a leader that
// could not confirm it has applied everything acknowledged), so another
// replica must answer.
var errReplicaBehind = errors.New("server: replica behind the offset asked for")

// readLocal serves a fetch from the local replica when its answer is
// authoritative, else fails with errReplicaBehind.
//
// Everything below a replica's high watermark is committed, so any replica
// may serve it. Two answers depend on knowing where the partition ends,
// which only a leader that has applied everything acknowledged knows: the
// LATEST position, and "out of range" above the high watermark. A leader's
// high watermark alone is not enough (a new leader applies the previous
// term's entries after its first commit; a restarted one replays its log
// after it may already have been elected): the 10-minute jepsen runs
// (seeds 1-3) read acknowledged offsets answered out of range by such
// leaders. So a leader confirms with Replica.CatchUp (a read index) before
// either answer, and a follower never gives them.
func (n *Node) readLocal(ctx context.Context, r *partition.Replica, index uint32, req *heraldpb.FetchRequest, hold *fetchHold) (*heraldpb.FetchResponse, int, error) {
	if req.GetPosition() == heraldpb.StartPosition_LATEST {
		if err := n.leaderCatchUp(ctx, r); err != nil {
			return nil, 0, err
		}
		// A LATEST answer carries no event: nothing to reserve.
		return readReplica(r, index, req)
	}
	resp, delivered, err := n.readWaiting(ctx, r, index, req, hold)
	if !aboveHigh(err) {
		return resp, delivered, err
	}
	if !r.IsLeader() {
		return nil, 0, errReplicaBehind
	}
	if err := n.leaderCatchUp(ctx, r); err != nil {
		return nil, 0, err
	}
	// Caught up: what is still above the high watermark is out of range.
	return readHeld(ctx, hold, r, index, req)
}

// readHeld is readReplica within the fetch's reservation of the node's
// fetch budget: taken before the read, given back at once when the read
// delivers nothing (so that a long poll holds no bytes while it waits),
// else kept until the fetch returns.
func readHeld(ctx context.Context, hold *fetchHold, r *partition.Replica, index uint32, req *heraldpb.FetchRequest) (*heraldpb.FetchResponse, int, error) {
	if err := hold.reserve(ctx); err != nil {
		return nil, 0, err
	}
	resp, delivered, err := readReplica(r, index, req)
	if delivered == 0 {
		hold.release()
	}
	return resp, delivered, err
}

// leaderCatchUp runs Replica.CatchUp, counting its outcome; any failure is
// errReplicaBehind (another replica, or the caller's retry, answers).
func (n *Node) leaderCatchUp(ctx context.Context, r *partition.Replica) error {
	if err := r.CatchUp(ctx); err != nil {
		n.metrics.fetchCatchUps.WithLabelValues("failed").Inc()
		n.logger.Debug("fetch: leader could not confirm it has applied everything acknowledged",
			"group", r.GroupID(), "err", err)
		return fmt.Errorf("%w: %v", errReplicaBehind, err)
	}
	n.metrics.fetchCatchUps.WithLabelValues("caught_up").Inc()
	return nil
}

// readWaiting serves a fetch from the local replica, long-polling up to
// req.MaxWaitMs (capped at fetchWaitMax) while the read finds nothing new:
// no event and no progress (a tenant-filtered scan that skipped other
// tenants' events is progress, answered at once). It wakes when the
// replica applies entries, when ctx ends (answering what it has) or when
// the node closes. It holds no lock while it waits.
func (n *Node) readWaiting(ctx context.Context, r *partition.Replica, index uint32, req *heraldpb.FetchRequest, hold *fetchHold) (*heraldpb.FetchResponse, int, error) {
	wait := min(time.Duration(req.GetMaxWaitMs())*time.Millisecond, fetchWaitMax)
	if wait <= 0 || req.GetPosition() == heraldpb.StartPosition_LATEST {
		return readHeld(ctx, hold, r, index, req)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		// Take the channel before reading: an apply between the read and
		// the wait closes it, so no growth is missed.
		changed := r.Changed()
		resp, delivered, err := readHeld(ctx, hold, r, index, req)
		// A follower behind the offset asked for waits for it like for an
		// empty read; if it never comes, the error goes back to Fetch,
		// which asks another replica rather than answer "out of range".
		notYet := aheadOfFollower(r, err)
		if !notYet && (err != nil || delivered > 0 || madeProgress(req, resp)) {
			return resp, delivered, err
		}
		select {
		case <-changed:
			continue
		case <-timer.C:
		case <-ctx.Done():
		case <-n.stop:
		}
		if notYet {
			return nil, 0, err
		}
		return resp, 0, nil
	}
}

// aheadOfFollower reports whether err is a read past this replica's high
// watermark while it is not the leader: the offset may well be committed
// (acknowledged by the leader) and not applied here yet. Only a caught-up
// leader may call an offset above it out of range (readLocal); below the
// low watermark is out of range anywhere.
func aheadOfFollower(r *partition.Replica, err error) bool {
	return aboveHigh(err) && !r.IsLeader()
}

// aboveHigh reports whether err is an out-of-range read past the high
// watermark (not below the low one).
func aboveHigh(err error) bool {
	var oor *wire.OffsetOutOfRangeError
	return errors.As(err, &oor) && oor.Requested > oor.High
}

// madeProgress reports whether an empty answer still moved the read on
// (a tenant-filtered offset scan past other tenants' events).
func madeProgress(req *heraldpb.FetchRequest, resp *heraldpb.FetchResponse) bool {
	start, ok := req.GetStart().(*heraldpb.FetchRequest_Offset)
	return ok && resp.GetNextOffset() > start.Offset
}

// readReplica serves a fetch from the local replica (its read calls, which
// answer the partition's errors). Only committed entries are ever applied,
// so everything below the replica's high watermark may be served by any
// replica.
//
// It returns the response and how many events it carries: they are already
// encoded, in the response's unknown fields, not in resp.Events.
func readReplica(r *partition.Replica, index uint32, req *heraldpb.FetchRequest) (*heraldpb.FetchResponse, int, error) {
	maxEvents := int(req.GetMaxEvents())
	if maxEvents == 0 {
		maxEvents = fetchEventsDefault
	}
	maxEvents = min(maxEvents, fetchEventsMax)
	maxBytes := int(req.GetMaxBytes())
	if maxBytes == 0 {
		maxBytes = fetchBytesDefault
	}
	maxBytes = min(maxBytes, fetchBytesMax)

	resp := &heraldpb.FetchResponse{}
	tenant := req.GetTenantId()
	var records []heraldlog.Record
	var err error
	switch start := req.GetStart().(type) {
	case *heraldpb.FetchRequest_Sequence:
		records, err = r.ReadTenant(tenant, max(start.Sequence, 1), maxEvents, maxBytes)
		resp.NextSequence = max(start.Sequence, 1)
	case *heraldpb.FetchRequest_Offset:
		records, resp.NextOffset, err = readOffsets(r, start.Offset, tenant, maxEvents, maxBytes)
	case *heraldpb.FetchRequest_TimeUnixNano:
		var from uint64
		if from, err = r.OffsetForTime(start.TimeUnixNano); err == nil {
			records, resp.NextOffset, err = readOffsets(r, from, tenant, maxEvents, maxBytes)
		}
	case *heraldpb.FetchRequest_Position:
		switch start.Position {
		case heraldpb.StartPosition_LATEST:
			resp.NextOffset = r.HighWatermark()
			if tenant != "" {
				resp.NextSequence, err = r.NextSequence(tenant)
			}
		case heraldpb.StartPosition_EARLIEST:
			if tenant != "" {
				records, err = r.ReadTenant(tenant, 1, maxEvents, maxBytes)
				resp.NextSequence = 1
			} else {
				records, resp.NextOffset, err = readOffsets(r, r.LowWatermark(), "", maxEvents, maxBytes)
			}
		default:
			return nil, 0, wire.InvalidArgument("position", "unknown start position %v", start.Position)
		}
	default:
		return nil, 0, wire.InvalidArgument("start", "a fetch needs a start: offset, sequence or position")
	}
	if err != nil {
		return nil, 0, readError(err)
	}
	resp.HighWatermark = r.HighWatermark()
	resp.LowWatermark = r.LowWatermark()
	now := time.Now().UnixNano()
	var events []byte
	delivered := 0
	for i := range records {
		rec := &records[i]
		if rec.ExpireAtUnixNano != 0 && rec.ExpireAtUnixNano <= now {
			// Past its TTL: never delivered, even before retention removes it.
			continue
		}
		events = appendWireEvent(events, rec, index)
		delivered++
	}
	// The events travel as the response's unknown fields, already encoded
	// (appendWireEvent): the client decodes them as FetchResponse.events.
	resp.ProtoReflect().SetUnknown(events)
	if len(records) > 0 {
		last := records[len(records)-1]
		if tenant != "" {
			resp.NextSequence = last.Sequence + 1
		}
		if resp.NextOffset < last.Offset+1 {
			resp.NextOffset = last.Offset + 1
		}
	}
	return resp, delivered, nil
}

// readOffsets reads from an offset, keeping only tenant's records when
// tenant is set; it returns where the next read should start.
func readOffsets(r *partition.Replica, from uint64, tenant string, maxEvents, maxBytes int) ([]heraldlog.Record, uint64, error) {
	if tenant == "" {
		recs, err := r.Read(from, maxEvents, maxBytes)
		next := from
		if len(recs) > 0 {
			next = recs[len(recs)-1].Offset + 1
		}
		return recs, next, err
	}
	var out []heraldlog.Record
	next, scanned, bytes := from, 0, 0
	for len(out) < maxEvents && scanned < fetchScanRecordsMax && bytes < maxBytes {
		page, err := r.Read(next, min(1000, fetchScanRecordsMax-scanned), maxBytes)
		if err != nil {
			return nil, next, err
		}
		if len(page) == 0 {
			break
		}
		for _, rec := range page {
			next = rec.Offset + 1
			scanned++
			if rec.Tenant != tenant {
				continue
			}
			out = append(out, rec)
			bytes += len(rec.Body)
			if len(out) == maxEvents || bytes >= maxBytes {
				return out, next, nil
			}
		}
	}
	return out, next, nil
}

// readError maps the replica's read errors to the wire errors.
func readError(err error) error {
	var oor *partition.OffsetOutOfRangeError
	var ce *partition.CorruptionError
	switch {
	case errors.As(err, &oor):
		return wire.OffsetOutOfRange(oor.Requested, oor.Low, oor.High)
	case errors.As(err, &ce):
		return wire.Corruption(ce.Partition, ce.Offset, "%s", ce.Reason)
	default:
		return err
	}
}
