package heraldtest

import (
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// Fake limits, as documented in herald.proto.
const (
	defaultMaxEventBytes = 1 << 20
	defaultFetchEvents   = 500
	fetchEventsMax       = 10_000
)

// service is the default behaviour of a node: a single-copy log per
// partition that only the partition's leader appends to.
type service struct {
	heraldpb.UnimplementedHeraldServer
	node *Node
}

var _ heraldpb.HeraldServer = (*service)(nil)

func (s *service) CreateTopic(_ context.Context, req *heraldpb.CreateTopicRequest) (*heraldpb.CreateTopicResponse, error) {
	c := s.node.cluster
	c.mu.Lock()
	defer c.mu.Unlock()
	cfg := req.GetConfig()
	switch {
	case cfg.GetName() == "":
		return nil, wire.InvalidArgument("name", "a topic needs a name")
	case cfg.GetPartitions() == 0:
		return nil, wire.InvalidArgument("partitions", "at least one partition is required")
	}
	if _, ok := c.mu.topics[cfg.GetName()]; ok {
		return nil, wire.TopicExists(cfg.GetName())
	}
	t := c.createLocked(cfg, nil)
	return &heraldpb.CreateTopicResponse{Topic: c.infoLocked(t)}, nil
}

func (s *service) ListTopics(context.Context, *heraldpb.ListTopicsRequest) (*heraldpb.ListTopicsResponse, error) {
	c := s.node.cluster
	c.mu.Lock()
	defer c.mu.Unlock()
	resp := &heraldpb.ListTopicsResponse{}
	for _, t := range c.mu.topics {
		resp.Topics = append(resp.Topics, c.infoLocked(t))
	}
	return resp, nil
}

func (s *service) DescribeTopic(_ context.Context, req *heraldpb.DescribeTopicRequest) (*heraldpb.DescribeTopicResponse, error) {
	c := s.node.cluster
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.mu.topics[req.GetName()]
	if !ok {
		return nil, wire.TopicNotFound(req.GetName())
	}
	return &heraldpb.DescribeTopicResponse{Topic: c.infoLocked(t)}, nil
}

func (s *service) Metadata(_ context.Context, req *heraldpb.MetadataRequest) (*heraldpb.MetadataResponse, error) {
	c := s.node.cluster
	c.mu.Lock()
	defer c.mu.Unlock()
	resp := &heraldpb.MetadataResponse{ControllerLeaderId: c.nodeIDLocked(c.mu.controllerLeader)}
	for _, n := range c.Nodes {
		resp.Nodes = append(resp.Nodes, &heraldpb.NodeInfo{Id: n.ID, GrpcAddr: n.Addr})
	}
	if len(req.GetTopics()) == 0 {
		for _, t := range c.mu.topics {
			resp.Topics = append(resp.Topics, c.infoLocked(t))
		}
	}
	for _, name := range req.GetTopics() {
		if t, ok := c.mu.topics[name]; ok {
			resp.Topics = append(resp.Topics, c.infoLocked(t))
		}
	}
	return resp, nil
}

func (s *service) Produce(_ context.Context, req *heraldpb.ProduceRequest) (*heraldpb.ProduceResponse, error) {
	c := s.node.cluster
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.mu.topics[req.GetTopic()]
	if !ok {
		return nil, wire.TopicNotFound(req.GetTopic())
	}
	if len(req.GetEvents()) == 0 {
		return &heraldpb.ProduceResponse{}, nil
	}
	route := func(e *heraldpb.Event) uint32 {
		return wire.PartitionFor(t.config.GetOrdering(), e.GetTenantId(), e.GetKey(), e.GetEventId(), t.config.GetPartitions())
	}
	partition := route(req.GetEvents()[0])
	for _, e := range req.GetEvents() {
		if err := c.validateLocked(t, e); err != nil {
			return nil, err
		}
		if p := route(e); p != partition {
			// The real server accepts mixed requests; the fake insists on
			// the SDK's grouping so that tests catch a routing bug.
			return nil, wire.InvalidArgument("events", "fake: events for partitions %d and %d in one request", partition, p)
		}
	}
	if err := c.leaderCheckLocked(s.node, t, partition); err != nil {
		return nil, err
	}
	// Check every idempotent event's sequence before writing any: a
	// request is all or nothing.
	lastSeqs := make(map[producerKey]uint64)
	for _, e := range req.GetEvents() {
		if e.GetProducerId() == "" {
			continue
		}
		if !c.mu.producers[e.GetProducerId()] {
			return nil, wire.InvalidArgument("producer_id", "unknown producer %q", e.GetProducerId())
		}
		if e.GetProducerSeq() == 0 {
			return nil, wire.InvalidArgument("producer_seq", "an idempotent event's sequence starts at 1")
		}
		k := producerKey{partition: partition, tenant: e.GetTenantId(), producer: e.GetProducerId()}
		last, ok := lastSeqs[k]
		if !ok {
			last, ok = t.lastSeqs[k]
		}
		if seq := e.GetProducerSeq(); !ok && seq != 1 {
			return nil, wire.UnknownProducer(fmt.Sprintf("producer %s: sequence %d, a producer the partition does not know starts at 1", e.GetProducerId(), seq))
		}
		if seq := e.GetProducerSeq(); seq > last+1 {
			return nil, wire.OutOfOrderSequence(e.GetProducerId(), last+1, seq)
		}
		lastSeqs[k] = max(last, e.GetProducerSeq())
	}
	resp := &heraldpb.ProduceResponse{}
	now := c.nowLocked()
	for _, e := range req.GetEvents() {
		// A duplicate by producer sequence, else by event id within the
		// dedupe window (which still takes the producer's sequence).
		var original *heraldpb.Event
		if e.GetProducerId() != "" {
			k := producerKey{partition: partition, tenant: e.GetTenantId(), producer: e.GetProducerId()}
			if e.GetProducerSeq() <= t.lastSeqs[k] {
				original = producerOriginal(t.logs[partition], e)
			} else {
				t.lastSeqs[k] = e.GetProducerSeq()
			}
		}
		if original == nil {
			original = c.dedupeLocked(t, partition, e)
		}
		if original != nil {
			resp.Results = append(resp.Results, &heraldpb.ProduceResult{
				Partition: partition, Offset: original.GetOffset(), Sequence: original.GetSequence(), EventId: original.GetEventId(), Duplicate: true,
			})
			continue
		}
		offset := uint64(len(t.logs[partition]))
		var sequence uint64 = 1
		for _, prev := range t.logs[partition] {
			if prev.GetTenantId() == e.GetTenantId() {
				sequence++
			}
		}
		stored := proto.CloneOf(e)
		stored.Offset, stored.Sequence, stored.ProducedAtUnixNano, stored.Partition = offset, sequence, now, partition
		if stored.EventId == "" {
			stored.EventId = fmt.Sprintf("evt-%d-%d", partition, offset)
		}
		t.logs[partition] = append(t.logs[partition], stored)
		t.lastProduce = now
		resp.Results = append(resp.Results, &heraldpb.ProduceResult{Partition: partition, Offset: offset, Sequence: sequence, EventId: stored.EventId})
	}
	return resp, nil
}

// validateLocked applies the topic's rules to one event, as the real
// server does before proposing anything.
func (c *Cluster) validateLocked(t *topic, e *heraldpb.Event) error {
	cfg := t.config
	maxBytes := cfg.GetMaxEventBytes()
	if maxBytes == 0 {
		maxBytes = defaultMaxEventBytes
	}
	if e.GetTenantId() == "" {
		return wire.InvalidArgument("tenant_id", "every event needs a tenant id")
	}
	if size := uint64(len(e.GetPayload())); size > maxBytes {
		return wire.PayloadTooLarge(size, maxBytes)
	}
	if _, known := c.mu.tenants[e.GetTenantId()]; c.mu.enforceTenants && !known && !cfg.GetAutoTenants() {
		return wire.TenantNotFound(e.GetTenantId())
	}
	if e.GetTtlMs() < 0 {
		return wire.InvalidArgument("ttl_ms", "negative ttl %d", e.GetTtlMs())
	}
	if maxTTL := cfg.GetMaxTtlMs(); maxTTL > 0 && e.GetTtlMs() > maxTTL {
		return wire.TTLTooLarge(e.GetTtlMs(), maxTTL)
	}
	if allowed := cfg.GetSchemaVersions(); len(allowed) > 0 && e.GetSchema() != "" && !slices.Contains(allowed, e.GetSchemaVersion()) {
		return wire.SchemaVersionNotAllowed(e.GetSchema(), e.GetSchemaVersion(), allowed)
	}
	for _, field := range cfg.GetRequiredFields() {
		if !wire.HasEnvelopeField(e, field) {
			return wire.MissingField(field, "topic %q requires it", cfg.GetName())
		}
	}
	return nil
}

// dedupeLocked returns the stored event that e repeats by event id within
// the topic's dedupe window, or nil.
func (c *Cluster) dedupeLocked(t *topic, partition uint32, e *heraldpb.Event) *heraldpb.Event {
	window := t.config.GetDedupeWindowMs()
	if window <= 0 || e.GetEventId() == "" {
		return nil
	}
	since := c.mu.lastNow - window*int64(time.Millisecond)
	for _, prev := range t.logs[partition] {
		if prev.GetEventId() == e.GetEventId() && prev.GetProducedAtUnixNano() >= since {
			return prev
		}
	}
	return nil
}

// producerOriginal returns the stored event that e repeats by producer
// sequence. When that sequence was itself an event-id duplicate, nothing
// holds it: the stored event with e's id stands for it.
func producerOriginal(log []*heraldpb.Event, e *heraldpb.Event) *heraldpb.Event {
	for _, prev := range log {
		if prev.GetTenantId() == e.GetTenantId() && prev.GetProducerId() == e.GetProducerId() && prev.GetProducerSeq() == e.GetProducerSeq() {
			return prev
		}
	}
	for _, prev := range log {
		if e.GetEventId() != "" && prev.GetEventId() == e.GetEventId() {
			return prev
		}
	}
	return &heraldpb.Event{} // retention would have dropped it; the fake keeps everything
}

func (s *service) Fetch(_ context.Context, req *heraldpb.FetchRequest) (*heraldpb.FetchResponse, error) {
	c := s.node.cluster
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.mu.topics[req.GetTopic()]
	if !ok {
		return nil, wire.TopicNotFound(req.GetTopic())
	}
	if req.GetPartition() >= t.config.GetPartitions() {
		return nil, wire.PartitionNotFound(req.GetTopic(), req.GetPartition())
	}
	log := t.logs[req.GetPartition()]
	high := uint64(len(log))
	limit := int(req.GetMaxEvents())
	if limit == 0 {
		limit = defaultFetchEvents
	}
	limit = min(limit, fetchEventsMax)
	resp := &heraldpb.FetchResponse{HighWatermark: high, NextOffset: high}

	switch start := req.GetStart().(type) {
	case *heraldpb.FetchRequest_Sequence:
		if req.GetTenantId() == "" {
			return nil, wire.InvalidArgument("tenant_id", "a sequence read needs a tenant")
		}
		resp.NextSequence = start.Sequence
		for _, e := range log {
			if e.GetTenantId() == req.GetTenantId() && e.GetSequence() >= start.Sequence && len(resp.Events) < limit {
				resp.Events = append(resp.Events, e)
				resp.NextSequence = e.GetSequence() + 1
				resp.NextOffset = e.GetOffset() + 1
			}
		}
		return resp, nil
	case *heraldpb.FetchRequest_Position:
		if start.Position == heraldpb.StartPosition_LATEST {
			if err := c.leaderCheckLocked(s.node, t, req.GetPartition()); err != nil {
				return nil, err
			}
			return resp, nil
		}
		return scan(resp, log, 0, req.GetTenantId(), limit), nil
	case *heraldpb.FetchRequest_TimeUnixNano:
		from := high
		for _, e := range log {
			if e.GetProducedAtUnixNano() >= start.TimeUnixNano {
				from = e.GetOffset()
				break
			}
		}
		return scan(resp, log, from, req.GetTenantId(), limit), nil
	case *heraldpb.FetchRequest_Offset:
		if start.Offset > high {
			return nil, wire.OffsetOutOfRange(start.Offset, 0, high)
		}
		return scan(resp, log, start.Offset, req.GetTenantId(), limit), nil
	default:
		return scan(resp, log, 0, req.GetTenantId(), limit), nil
	}
}

// scan fills resp with up to limit events of log from offset on, of tenant
// only when tenant is set.
func scan(resp *heraldpb.FetchResponse, log []*heraldpb.Event, offset uint64, tenant string, limit int) *heraldpb.FetchResponse {
	resp.NextOffset = offset
	for _, e := range log[offset:] {
		if len(resp.Events) == limit {
			break
		}
		resp.NextOffset = e.GetOffset() + 1
		if tenant == "" || e.GetTenantId() == tenant {
			resp.Events = append(resp.Events, e)
			resp.NextSequence = e.GetSequence() + 1
		}
	}
	return resp
}

func (s *service) ClusterStatus(context.Context, *heraldpb.ClusterStatusRequest) (*heraldpb.ClusterStatusResponse, error) {
	c := s.node.cluster
	c.mu.Lock()
	defer c.mu.Unlock()
	resp := &heraldpb.ClusterStatusResponse{ControllerLeaderId: c.nodeIDLocked(c.mu.controllerLeader)}
	for i, n := range c.Nodes {
		state := "Follower"
		if i == c.mu.controllerLeader {
			state = "Leader"
		}
		resp.Nodes = append(resp.Nodes, &heraldpb.NodeStatusInfo{Id: n.ID, GrpcAddr: n.Addr, Reachable: true, ControllerState: state})
	}
	for name, t := range c.mu.topics {
		info := c.infoLocked(t)
		for p, part := range info.GetPartitions() {
			resp.Partitions = append(resp.Partitions, &heraldpb.PartitionStatus{
				Topic: name, Index: part.GetIndex(), GroupId: part.GetGroupId(), Replicas: part.GetReplicas(),
				LeaderId: part.GetLeaderId(), CommitIndex: uint64(len(t.logs[p])), HighWatermark: uint64(len(t.logs[p])),
			})
		}
	}
	return resp, nil
}

// leaderCheckLocked refuses a request for partition unless node leads it.
func (c *Cluster) leaderCheckLocked(node *Node, t *topic, partition uint32) error {
	leader := t.leaders[partition]
	switch {
	case leader < 0:
		return wire.NoLeader(fmt.Sprintf("%s/%d", t.config.GetName(), partition))
	case leader != node.index():
		return wire.NotLeader(c.Nodes[leader].ID, c.Nodes[leader].Addr)
	}
	return nil
}

func (c *Cluster) infoLocked(t *topic) *heraldpb.TopicInfo {
	info := &heraldpb.TopicInfo{Config: t.config, CreatedAtUnixNano: t.created.UnixNano()}
	var replicas []string
	for _, n := range c.Nodes {
		replicas = append(replicas, n.ID)
	}
	for p, leader := range t.leaders {
		part := &heraldpb.PartitionInfo{Index: uint32(p), GroupId: uint64(p + 1), Replicas: replicas}
		if leader >= 0 {
			part.LeaderId = c.Nodes[leader].ID
			part.LeaderAddr = c.Nodes[leader].Addr
		}
		info.Partitions = append(info.Partitions, part)
	}
	return info
}

func (c *Cluster) nodeIDLocked(i int) string {
	if i < 0 || i >= len(c.Nodes) {
		return ""
	}
	return c.Nodes[i].ID
}

// subscribePoll is how often the fake's Subscribe looks for new events
// (it has no apply notifications).
const subscribePoll = time.Millisecond

// Subscribe streams one partition from its start, polling the partition's
// log; it honours the start and sends heartbeats, not credit (the fake's
// subscribers are the SDK's, which grant ahead).
func (s *service) Subscribe(stream heraldpb.Herald_SubscribeServer) error {
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	start := req.GetStart()
	if start == nil {
		return wire.InvalidArgument("start", "the first message of a subscription is its start")
	}
	go func() { // credit grants: read and dropped until the stream ends
		for {
			if _, err := stream.Recv(); err != nil {
				return
			}
		}
	}()
	c := s.node.cluster
	epoch := uint64(start.GetPartition()) + 1
	c.mu.Lock()
	t, ok := c.mu.topics[start.GetTopic()]
	var next uint64
	if ok && start.GetPartition() < t.config.GetPartitions() {
		high := uint64(len(t.logs[start.GetPartition()]))
		switch st := start.GetStart().(type) {
		case *heraldpb.SubscribeStart_Offset:
			next = st.Offset
		case *heraldpb.SubscribeStart_Position:
			if st.Position == heraldpb.StartPosition_LATEST {
				next = high
			}
		}
		if next > high {
			c.mu.Unlock()
			return wire.OffsetOutOfRange(next, 0, high)
		}
	}
	c.mu.Unlock()
	if !ok {
		return wire.TopicNotFound(start.GetTopic())
	}
	if start.GetPartition() >= t.config.GetPartitions() {
		return wire.PartitionNotFound(start.GetTopic(), start.GetPartition())
	}
	heartbeat := time.Duration(max(start.GetHeartbeatMs(), 100)) * time.Millisecond
	lastSent := time.Now()
	for {
		c.mu.Lock()
		log := t.logs[start.GetPartition()]
		high := uint64(len(log))
		var events []*heraldpb.Event
		for _, e := range log[next:min(high, next+100)] {
			events = append(events, e)
		}
		c.mu.Unlock()
		resp := &heraldpb.SubscribeResponse{Partition: start.GetPartition(), Epoch: epoch, HighWatermark: high}
		switch {
		case len(events) > 0:
			next = events[len(events)-1].GetOffset() + 1
			resp.Events, resp.NextOffset = events, next
		case time.Since(lastSent) >= heartbeat:
			resp.NextOffset, resp.Heartbeat = next, true
		default:
			select {
			case <-stream.Context().Done():
				return stream.Context().Err()
			case <-time.After(subscribePoll):
			}
			continue
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
		lastSent = time.Now()
	}
}
