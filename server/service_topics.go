package server

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	"github.com/heraldlog/herald/server/controller"
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
	// topicInUseWindow: a topic that received an event this recently is in
	// use, and DeleteTopic refuses it unless forced.
	topicInUseWindow = time.Minute
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
		if err := n.checkDeadLetterTopic(lookupContext(ctx), cfg.Name, cfg.GetDeadLetterTopic()); err != nil {
			return nil, err
		}
		res, err := n.proposeController(&controller.CreateTopic{
			Name:              cfg.Name,
			Partitions:        cfg.Partitions,
			ReplicationFactor: cfg.ReplicationFactor,
			MaxEventBytes:     cfg.MaxEventBytes,
			CreatedAtUnixNano: time.Now().UnixNano(),
			Nodes:             nodeIDs,
			Contract:          contractFromConfig(cfg),
		})
		if err != nil {
			return nil, err
		}
		t, ok := res.(*controller.Topic)
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
func (n *Node) waitPartitionLeaders(ctx context.Context, t *controller.Topic) {
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
	for _, t := range s.node.controllerFSM.Topics() {
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
		for _, t := range n.controllerFSM.Topics() {
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
func (n *Node) lookupTopic(ctx context.Context, name string) (*controller.Topic, error) {
	if name == "" {
		return nil, wire.InvalidArgument("topic", "topic name is required")
	}
	if t, ok := n.controllerFSM.Topic(name); ok {
		return t, nil
	}
	// "Not found" only once this node's registry has caught up with the
	// controller leader's: right after a restart, or before a create
	// acknowledged elsewhere has been applied here, it could be wrong.
	if err := n.syncRegistry(ctx); err != nil {
		return nil, err
	}
	if t, ok := n.controllerFSM.Topic(name); ok {
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
func (n *Node) topicInfoWithLeaders(_ context.Context, t *controller.Topic) *heraldpb.TopicInfo {
	info := topicInfo(t)
	for _, p := range info.Partitions {
		if r := n.replica(p.GroupId); r != nil {
			p.LeaderAddr, p.LeaderId = r.Leader()
		}
	}
	return info
}

func (s *heraldService) AlterTopic(ctx context.Context, req *heraldpb.AlterTopicRequest) (*heraldpb.AlterTopicResponse, error) {
	n := s.node
	return controllerCall(ctx, n, "AlterTopic", func() (*heraldpb.AlterTopicResponse, error) {
		cfg := req.GetConfig()
		cur, ok := n.controllerFSM.Topic(cfg.GetName())
		if !ok {
			return nil, wire.TopicNotFound(cfg.GetName())
		}
		if len(req.GetFields()) == 0 {
			return nil, wire.InvalidArgument("fields", "name at least one field to alter")
		}
		// Validate the altered topic as a whole, as create would.
		merged := contractFromConfig(cfg)
		next := cur.Contract
		if err := alterContract(&next, merged, req.GetFields()); err != nil {
			return nil, err
		}
		altered := *cur
		altered.Contract = next
		if err := validateContract(topicInfo(&altered).GetConfig()); err != nil {
			return nil, err
		}
		if err := n.checkDeadLetterTopic(lookupContext(ctx), cur.Name, next.DeadLetterTopic); err != nil {
			return nil, err
		}
		res, err := n.proposeController(&controller.AlterTopic{Name: cfg.GetName(), Fields: req.GetFields(), Contract: merged})
		if err != nil {
			return nil, err
		}
		done := res.(*controller.Topic)
		// Acknowledged only once every partition refuses calls checked
		// against the previous contract (contract_fence.go).
		if err := n.fenceContract(ctx, done); err != nil {
			n.logger.Warn("topic altered, contract not yet fenced on every partition", "topic", done.Name, "version", done.ContractVersion, "err", err)
			return nil, wire.UnknownOutcome("topic %s altered in the registry (contract version %d), but not every partition refuses the old contract yet (%v); the nodes keep fencing it, and altering again is harmless", done.Name, done.ContractVersion, err)
		}
		n.logger.Info("topic altered", "topic", cfg.GetName(), "fields", req.GetFields(), "contract_version", done.ContractVersion)
		return &heraldpb.AlterTopicResponse{Topic: n.topicInfoWithLeaders(ctx, done)}, nil
	}, func(ctx context.Context, hc heraldpb.HeraldClient) (*heraldpb.AlterTopicResponse, error) {
		return hc.AlterTopic(ctx, req)
	})
}

func (s *heraldService) DeleteTopic(ctx context.Context, req *heraldpb.DeleteTopicRequest) (*heraldpb.DeleteTopicResponse, error) {
	n := s.node
	return controllerCall(ctx, n, "DeleteTopic", func() (*heraldpb.DeleteTopicResponse, error) {
		t, ok := n.controllerFSM.Topic(req.GetName())
		if !ok {
			return nil, wire.TopicNotFound(req.GetName())
		}
		if err := n.checkNotDeadLetterTarget(t.Name); err != nil {
			return nil, err
		}
		if !req.GetForce() {
			if last := n.lastAppend(ctx, t); last > 0 && time.Since(time.Unix(0, last)) < topicInUseWindow {
				return nil, wire.TopicInUse(t.Name, last)
			}
		}
		if _, err := n.proposeController(&controller.DeleteTopic{Name: t.Name}); err != nil {
			return nil, err
		}
		n.logger.Info("topic deleted", "topic", t.Name, "forced", req.GetForce())
		return &heraldpb.DeleteTopicResponse{}, nil
	}, func(ctx context.Context, hc heraldpb.HeraldClient) (*heraldpb.DeleteTopicResponse, error) {
		return hc.DeleteTopic(ctx, req)
	})
}

// lastAppend returns the newest produce time over the topic's partitions
// as their replicas report it (0 when nothing answers or nothing was produced).
func (n *Node) lastAppend(ctx context.Context, t *controller.Topic) int64 {
	groups := make(map[uint64]bool)
	for _, p := range t.Partitions {
		groups[p.GroupID] = true
	}
	var last int64
	for _, st := range n.gatherStatus(ctx) {
		for _, g := range st.GetGroups() {
			if groups[g.GetGroupId()] && g.GetLastAppendUnixNano() > last {
				last = g.GetLastAppendUnixNano()
			}
		}
	}
	return last
}

// validateContract checks the contract fields of a topic config.
func validateContract(c *heraldpb.TopicConfig) error {
	var errs []error
	if _, ok := heraldpb.Ordering_name[int32(c.Ordering)]; !ok {
		errs = append(errs, wire.InvalidArgument("ordering", "unknown ordering %d", c.Ordering))
	}
	for name, v := range map[string]int64{"retention_age_ms": c.RetentionAgeMs, "default_ttl_ms": c.DefaultTtlMs, "max_ttl_ms": c.MaxTtlMs, "dedupe_window_ms": c.DedupeWindowMs} {
		if v < 0 {
			errs = append(errs, wire.InvalidArgument(name, "%s must not be negative", name))
		}
	}
	if c.MaxTtlMs > 0 && c.DefaultTtlMs > c.MaxTtlMs {
		errs = append(errs, wire.InvalidArgument("default_ttl_ms", "default TTL %v is above the maximum TTL %v", time.Duration(c.DefaultTtlMs)*time.Millisecond, time.Duration(c.MaxTtlMs)*time.Millisecond))
	}
	for _, f := range c.RequiredFields {
		if !wire.IsEnvelopeField(f) {
			errs = append(errs, wire.InvalidArgument("required_fields", "%q cannot be required (one of %s)", f, strings.Join(wire.EnvelopeFields(), ", ")))
		}
	}
	if len(c.SchemaVersions) > 0 && c.Schema == "" {
		errs = append(errs, wire.InvalidArgument("schema_versions", "schema versions need a schema name"))
	}
	errs = append(errs, validateProtectedGroups(c.GetProtectedGroups())...)
	if len(errs) > 0 {
		// The first names the field for the error's metadata; the message
		// lists every problem.
		return wire.InvalidArgument(fieldOf(errs[0]), "%v", errors.Join(errs...))
	}
	return nil
}

// protectedGroupsMax bounds a topic's protected groups: the lag guard
// reads each one's position on every partition it leads, every tick.
const protectedGroupsMax = 8

// validateProtectedGroups checks a topic's protected groups: each names a
// valid group once, with a slow lag, a pause lag or both, the pause lag
// above the slow lag. The groups need not exist.
func validateProtectedGroups(groups []*heraldpb.ProtectedGroup) []error {
	const field = "protected_groups"
	var errs []error
	if len(groups) > protectedGroupsMax {
		errs = append(errs, wire.InvalidArgument(field, "%d protected groups, at most %d", len(groups), protectedGroupsMax))
	}
	seen := make(map[string]bool, len(groups))
	for _, g := range groups {
		name := g.GetGroup()
		switch {
		case validateGroupName(name) != nil:
			errs = append(errs, wire.InvalidArgument(field, "protected group: invalid consumer group name %q: 1-200 characters of letters, digits, '.', '_' or '-', starting with a letter or digit", name))
			continue
		case seen[name]:
			errs = append(errs, wire.InvalidArgument(field, "protected group %q is named twice", name))
			continue
		}
		seen[name] = true
		slow, pause := g.GetSlowLag(), g.GetPauseLag()
		switch {
		case slow == 0 && pause == 0:
			errs = append(errs, wire.InvalidArgument(field, "protected group %q needs a slow lag, a pause lag or both", name))
		case slow > 0 && pause > 0 && pause <= slow:
			errs = append(errs, wire.InvalidArgument(field, "protected group %q: pause lag %d must be above slow lag %d", name, pause, slow))
		}
	}
	return errs
}

func fieldOf(err error) string {
	var e *wire.Error
	if errors.As(err, &e) {
		return e.Metadata[wire.MetadataField]
	}
	return ""
}
