package server

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// Topic limits. Names are used in metrics labels and paths, so they are
// restricted to a safe alphabet.
const (
	topicPartitionsMax   = 1024
	maxEventBytesDefault = 1 << 20
	// envelopeBytesMax bounds everything in an event but its payload.
	envelopeBytesMax = 64 << 10
	// maxEventBytesMax keeps payload plus envelope within the log's 16 MiB
	// record limit.
	maxEventBytesMax = 16<<20 - envelopeBytesMax
	tenantBytesMax   = 255
	// idBytesMax bounds event and producer ids (they are index keys).
	idBytesMax = 255
	// topicWaitMax bounds how long CreateTopic waits for partition leaders,
	// and a follower for its registry to learn a topic from the leader.
	topicWaitMax = 10 * time.Second
)

var topicNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$`)

type heraldService struct {
	heraldpb.UnimplementedHeraldServer
	node *Node
}

// validateTopicConfig fills defaults and reports the first problem as an
// INVALID_ARGUMENT naming the field.
func (n *Node) validateTopicConfig(c *heraldpb.TopicConfig, nodes int) error {
	if c == nil {
		return wire.InvalidArgument("config", "topic config is required")
	}
	if !topicNamePattern.MatchString(c.Name) {
		return wire.InvalidArgument("name", "invalid topic name %q: 1-200 characters of letters, digits, '.', '_' or '-', starting with a letter or digit", c.Name)
	}
	if c.Partitions == 0 {
		c.Partitions = 1
	}
	if c.Partitions > topicPartitionsMax {
		return wire.InvalidArgument("partitions", "partitions %d out of range 1..%d", c.Partitions, topicPartitionsMax)
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = uint32(min(3, nodes))
	}
	if int(c.ReplicationFactor) > nodes {
		return wire.InvalidArgument("replication_factor", "replication factor %d is more than the %d nodes in the cluster", c.ReplicationFactor, nodes)
	}
	if c.MaxEventBytes == 0 {
		c.MaxEventBytes = maxEventBytesDefault
	}
	if c.MaxEventBytes > maxEventBytesMax {
		return wire.InvalidArgument("max_event_bytes", "max event bytes %d above the limit %d", c.MaxEventBytes, maxEventBytesMax)
	}
	return validateContract(c)
}

func (s *heraldService) CreateTopic(ctx context.Context, req *heraldpb.CreateTopicRequest) (*heraldpb.CreateTopicResponse, error) {
	n := s.node
	return controllerCall(ctx, n, "CreateTopic", func() (*heraldpb.CreateTopicResponse, error) {
		cfg := req.GetConfig()
		nodeIDs := n.sortedNodeIDs()
		if err := n.validateTopicConfig(cfg, len(nodeIDs)); err != nil {
			return nil, err
		}
		res, err := n.proposeController(controllerCommand{Op: opCreateTopic, CreateTopic: &createTopicCommand{
			Name:              cfg.Name,
			Partitions:        cfg.Partitions,
			ReplicationFactor: cfg.ReplicationFactor,
			MaxEventBytes:     cfg.MaxEventBytes,
			CreatedAtUnixNano: time.Now().UnixNano(),
			Nodes:             nodeIDs,
			topicContract:     contractFromConfig(cfg),
		}})
		if err != nil {
			return nil, err
		}
		t, ok := res.(*topicRecord)
		if !ok {
			return nil, errors.New("server: controller returned no topic")
		}
		n.logger.Info("topic created", "topic", t.Name, "partitions", len(t.Partitions), "replication", t.ReplicationFactor)
		n.waitPartitionLeaders(ctx, t)
		return &heraldpb.CreateTopicResponse{Topic: n.topicInfoWithLeaders(ctx, t)}, nil
	}, func(ctx context.Context, hc heraldpb.HeraldClient) (*heraldpb.CreateTopicResponse, error) {
		return hc.CreateTopic(ctx, req)
	})
}

// waitPartitionLeaders waits (bounded) until every partition of t that has
// a replica here knows a leader, so that a produce right after create
// usually succeeds at once. Partitions without a local replica are not
// waited for; the SDK retries NO_LEADER.
func (n *Node) waitPartitionLeaders(ctx context.Context, t *topicRecord) {
	ctx, cancel := context.WithTimeout(ctx, topicWaitMax)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ready := true
		for _, p := range t.Partitions {
			if !slices.Contains(p.Replicas, n.cfg.NodeID) {
				continue
			}
			r := n.replica(p.GroupID)
			if r == nil {
				ready = false
				break
			}
			if addr, _ := r.Leader(); addr == "" {
				ready = false
				break
			}
		}
		if ready {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (s *heraldService) ListTopics(ctx context.Context, req *heraldpb.ListTopicsRequest) (*heraldpb.ListTopicsResponse, error) {
	if err := s.node.registryRead(ctx, req.GetStale()); err != nil {
		return nil, err
	}
	resp := &heraldpb.ListTopicsResponse{}
	for _, t := range s.node.controllerFSM.topics() {
		resp.Topics = append(resp.Topics, s.node.topicInfoWithLeaders(ctx, t))
	}
	return resp, nil
}

func (s *heraldService) DescribeTopic(ctx context.Context, req *heraldpb.DescribeTopicRequest) (*heraldpb.DescribeTopicResponse, error) {
	if req.GetName() == "" {
		return nil, wire.InvalidArgument("topic", "topic name is required")
	}
	if err := s.node.registryRead(ctx, req.GetStale()); err != nil {
		return nil, err
	}
	t, err := s.node.lookupTopic(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	return &heraldpb.DescribeTopicResponse{Topic: s.node.topicInfoWithLeaders(ctx, t)}, nil
}

func (s *heraldService) Metadata(ctx context.Context, req *heraldpb.MetadataRequest) (*heraldpb.MetadataResponse, error) {
	n := s.node
	if err := n.registryRead(ctx, req.GetStale()); err != nil {
		return nil, err
	}
	resp := &heraldpb.MetadataResponse{}
	nodes := n.nodes()
	for _, id := range n.sortedNodeIDs() {
		resp.Nodes = append(resp.Nodes, &heraldpb.NodeInfo{Id: id, GrpcAddr: nodes[id]})
	}
	resp.ControllerLeaderId, _ = n.controllerLeader()
	if len(req.GetTopics()) == 0 {
		for _, t := range n.controllerFSM.topics() {
			resp.Topics = append(resp.Topics, n.topicInfoWithLeaders(ctx, t))
		}
		return resp, nil
	}
	for _, name := range req.GetTopics() {
		t, err := n.lookupTopic(ctx, name)
		if err != nil {
			return nil, err
		}
		resp.Topics = append(resp.Topics, n.topicInfoWithLeaders(ctx, t))
	}
	return resp, nil
}

// lookupTopic finds a topic in the local registry; a miss is answered only
// after this node's registry has caught up with the controller leader's
// (syncRegistry: a read index, no forwarding of the lookup itself).
func (n *Node) lookupTopic(ctx context.Context, name string) (*topicRecord, error) {
	if name == "" {
		return nil, wire.InvalidArgument("topic", "topic name is required")
	}
	if t, ok := n.controllerFSM.topic(name); ok {
		return t, nil
	}
	// "Not found" only once this node's registry has caught up with the
	// controller leader's: right after a restart, or before a create
	// acknowledged elsewhere has been applied here, it could be wrong.
	if err := n.syncRegistry(ctx); err != nil {
		return nil, err
	}
	if t, ok := n.controllerFSM.topic(name); ok {
		return t, nil
	}
	return nil, wire.TopicNotFound(name)
}

// lookupContext drops the incoming request's metadata, so that a registry
// lookup made on behalf of a forwarded request is not itself taken for a
// second forwarding hop.
func lookupContext(ctx context.Context) context.Context {
	return metadata.NewIncomingContext(ctx, metadata.MD{})
}

// topicInfoWithLeaders fills in partition leaders known from local replicas.
func (n *Node) topicInfoWithLeaders(_ context.Context, t *topicRecord) *heraldpb.TopicInfo {
	info := t.info()
	for _, p := range info.Partitions {
		if r := n.replica(p.GroupId); r != nil {
			p.LeaderAddr, p.LeaderId = r.Leader()
		}
	}
	return info
}
