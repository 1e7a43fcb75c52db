package heraldtest

import (
	"context"
	"fmt"
	"time"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldpb"
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
		return nil, client.InvalidArgument("name", "a topic needs a name")
	case cfg.GetPartitions() == 0:
		return nil, client.InvalidArgument("partitions", "at least one partition is required")
	}
	if _, ok := c.mu.topics[cfg.GetName()]; ok {
		return nil, client.TopicExists(cfg.GetName())
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
		return nil, client.TopicNotFound(req.GetName())
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
		return nil, client.TopicNotFound(req.GetTopic())
	}
	if len(req.GetEvents()) == 0 {
		return &heraldpb.ProduceResponse{}, nil
	}
	partition := client.PartitionForTenant(req.GetEvents()[0].GetTenantId(), t.config.GetPartitions())
	maxBytes := t.config.GetMaxEventBytes()
	if maxBytes == 0 {
		maxBytes = defaultMaxEventBytes
	}
	for _, e := range req.GetEvents() {
		if e.GetTenantId() == "" {
			return nil, client.InvalidArgument("tenant_id", "every event needs a tenant id")
		}
		if p := client.PartitionForTenant(e.GetTenantId(), t.config.GetPartitions()); p != partition {
			// The real server accepts mixed requests; the fake insists on
			// the SDK's grouping so that tests catch a routing bug.
			return nil, client.InvalidArgument("events", "fake: events for partitions %d and %d in one request", partition, p)
		}
		if size := uint64(len(e.GetPayload())); size > maxBytes {
			return nil, client.PayloadTooLarge(size, maxBytes)
		}
	}
	if err := c.leaderCheckLocked(s.node, t, partition); err != nil {
		return nil, err
	}
	resp := &heraldpb.ProduceResponse{}
	now := time.Now().UnixNano()
	for _, e := range req.GetEvents() {
		offset := uint64(len(t.logs[partition]))
		var sequence uint64 = 1
		for _, prev := range t.logs[partition] {
			if prev.GetTenantId() == e.GetTenantId() {
				sequence++
			}
		}
		stored := &heraldpb.Event{
			EventId: e.GetEventId(), TenantId: e.GetTenantId(), Key: e.GetKey(), Offset: offset, Sequence: sequence,
			CausationId: e.GetCausationId(), Payload: e.GetPayload(), ProducedAtUnixNano: now, Partition: partition,
		}
		if stored.EventId == "" {
			stored.EventId = fmt.Sprintf("evt-%d-%d", partition, offset)
		}
		t.logs[partition] = append(t.logs[partition], stored)
		resp.Results = append(resp.Results, &heraldpb.ProduceResult{Partition: partition, Offset: offset, Sequence: sequence, EventId: stored.EventId})
	}
	return resp, nil
}

func (s *service) Fetch(_ context.Context, req *heraldpb.FetchRequest) (*heraldpb.FetchResponse, error) {
	c := s.node.cluster
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.mu.topics[req.GetTopic()]
	if !ok {
		return nil, client.TopicNotFound(req.GetTopic())
	}
	if req.GetPartition() >= t.config.GetPartitions() {
		return nil, client.PartitionNotFound(req.GetTopic(), req.GetPartition())
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
			return nil, client.InvalidArgument("tenant_id", "a sequence read needs a tenant")
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
	case *heraldpb.FetchRequest_Offset:
		if start.Offset > high {
			return nil, client.OffsetOutOfRange(start.Offset, 0, high)
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
		return client.NoLeader(fmt.Sprintf("%s/%d", t.config.GetName(), partition))
	case leader != node.index():
		return client.NotLeader(c.Nodes[leader].ID, c.Nodes[leader].Addr)
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
