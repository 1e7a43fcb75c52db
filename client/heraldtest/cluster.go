// Package heraldtest runs a fake Herald cluster in the test process: real
// gRPC servers on 127.0.0.1 serving heraldpb.Herald from one shared
// in-memory state, whose answers (leaders, errors, delays) a test controls.
// It exercises clients — the SDK, the CLI — without Raft or storage; it
// says nothing about the real server's behaviour.
package heraldtest

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// Handler answers one RPC in place of the fake's default behaviour. req is
// the request message (for example *heraldpb.ProduceRequest); returning
// an error sends wire.Status(err).
type Handler func(ctx context.Context, req any) (any, error)

// Cluster is a fake cluster. Its methods are safe for concurrent use with
// the RPCs it serves.
type Cluster struct {
	Nodes []*Node

	mu struct {
		sync.Mutex
		topics           map[string]*topic
		tenants          map[string]*heraldpb.Tenant
		controllerLeader int // node index; -1 for none
		// enforceTenants makes Produce refuse events of unregistered
		// tenants on topics without auto_tenants; off by default.
		enforceTenants bool
		producers      map[string]bool // ids given by InitProducer
		lastProducer   int
		lastNow        int64 // the last produced_at stamped, for a clock that always advances
	}
}

// topic is one topic's state; guarded by Cluster.mu.
type topic struct {
	config  *heraldpb.TopicConfig
	leaders []int // node index per partition; -1 for none
	logs    [][]*heraldpb.Event
	created time.Time
	// lastSeqs is the last producer_seq stored per (partition, tenant,
	// producer): the fake's producer dedupe state.
	lastSeqs    map[producerKey]uint64
	lastProduce int64 // Unix nanoseconds of the last append; 0: never
}

// producerKey names one idempotent producer's sequence in a partition.
type producerKey struct {
	partition uint32
	tenant    string
	producer  string
}

// Node is one fake node: a gRPC server with its own overrides.
type Node struct {
	ID, Addr string

	cluster *Cluster
	server  *grpc.Server
	stop    sync.Once

	mu struct {
		sync.Mutex
		handlers map[string]Handler
		calls    map[string]int
	}
}

// NewCluster starts n nodes (ids n1..nN) on 127.0.0.1:0; node 0 leads the
// controller. They stop at the end of the test.
func NewCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	c := &Cluster{}
	c.mu.topics = make(map[string]*topic)
	c.mu.tenants = make(map[string]*heraldpb.Tenant)
	c.mu.producers = make(map[string]bool)
	for i := range n {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("heraldtest: listen: %v", err)
		}
		node := &Node{ID: fmt.Sprintf("n%d", i+1), Addr: lis.Addr().String(), cluster: c}
		node.mu.handlers = make(map[string]Handler)
		node.mu.calls = make(map[string]int)
		node.server = grpc.NewServer(grpc.UnaryInterceptor(node.intercept))
		heraldpb.RegisterHeraldServer(node.server, &service{node: node})
		c.Nodes = append(c.Nodes, node)
		go func() { _ = node.server.Serve(lis) }() // ends when Stop closes the listener
	}
	tb.Cleanup(func() {
		for _, node := range c.Nodes {
			node.Stop()
		}
	})
	return c
}

// Addrs returns every node's address.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	return addrs
}

// CreateTopic declares a topic whose partition p is led by node
// leaders[p % len(leaders)] (by index; -1 for no leader); with no leaders
// given, partitions are spread round-robin.
func (c *Cluster) CreateTopic(name string, partitions uint32, leaders ...int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.createLocked(&heraldpb.TopicConfig{Name: name, Partitions: partitions, ReplicationFactor: uint32(len(c.Nodes))}, leaders)
}

// CreateTopicWith declares a topic with a full configuration (ordering,
// TTLs, schema rules, ...); leaders are as for CreateTopic.
func (c *Cluster) CreateTopicWith(cfg *heraldpb.TopicConfig, leaders ...int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.createLocked(proto.CloneOf(cfg), leaders)
}

// TopicConfig returns a copy of a topic's configuration, or nil.
func (c *Cluster) TopicConfig(name string) *heraldpb.TopicConfig {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.mu.topics[name]
	if !ok {
		return nil
	}
	return proto.CloneOf(t.config)
}

// EnforceTenants makes Produce refuse, with TENANT_NOT_FOUND, the events of
// tenants not created with CreateTenant on topics without auto_tenants, as
// the real registry does. The fake accepts any tenant until then, so that
// tests about other things need not register theirs.
func (c *Cluster) EnforceTenants(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.enforceTenants = on
}

// ExpireProducers forgets every idempotent producer's sequences, as the
// cluster does for a producer idle past its window: its next event is
// refused with UNKNOWN_PRODUCER unless it restarts at 1.
func (c *Cluster) ExpireProducers() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range c.mu.topics {
		clear(t.lastSeqs)
	}
}

// ProducerIDs returns how many producer ids InitProducer gave out.
func (c *Cluster) ProducerIDs() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.mu.producers)
}

// InitProducers returns how many InitProducer calls were answered (new
// ids and new epochs of existing ones).
func (c *Cluster) InitProducers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.lastProducer
}

// nowLocked returns the time to stamp on produced events: the wall clock,
// but always after the last stamp, so that reads by time are exact.
func (c *Cluster) nowLocked() int64 {
	now := max(time.Now().UnixNano(), c.mu.lastNow+1)
	c.mu.lastNow = now
	return now
}

func (c *Cluster) createLocked(cfg *heraldpb.TopicConfig, leaders []int) *topic {
	t := &topic{
		config: cfg, leaders: make([]int, cfg.GetPartitions()), logs: make([][]*heraldpb.Event, cfg.GetPartitions()), created: time.Now(),
		lastSeqs: make(map[producerKey]uint64),
	}
	for p := range t.leaders {
		if len(leaders) > 0 {
			t.leaders[p] = leaders[p%len(leaders)]
		} else {
			t.leaders[p] = p % len(c.Nodes)
		}
	}
	c.mu.topics[cfg.GetName()] = t
	return t
}

// SetLeader makes node (an index; -1 for none) the leader of a partition.
func (c *Cluster) SetLeader(topicName string, partition uint32, node int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.topics[topicName].leaders[partition] = node
}

// SetControllerLeader makes node (an index; -1 for none) the controller leader.
func (c *Cluster) SetControllerLeader(node int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.controllerLeader = node
}

// Events returns a copy of a partition's log.
func (c *Cluster) Events(topicName string, partition uint32) []*heraldpb.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.mu.topics[topicName]
	if !ok {
		return nil
	}
	return append([]*heraldpb.Event(nil), t.logs[partition]...)
}

// Handle makes the node answer method (the RPC's short name, "Produce")
// with h instead of the default; a nil h restores the default.
func (n *Node) Handle(method string, h Handler) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if h == nil {
		delete(n.mu.handlers, method)
		return
	}
	n.mu.handlers[method] = h
}

// Calls returns how many times method reached the node.
func (n *Node) Calls(method string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mu.calls[method]
}

// Stop stops the node at once: its connections drop and its port refuses
// new ones. It is idempotent.
func (n *Node) Stop() {
	n.stop.Do(n.server.Stop)
}

// intercept counts calls, applies overrides and converts errors the way
// the real server does, with wire.Status.
func (n *Node) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	method := info.FullMethod[strings.LastIndex(info.FullMethod, "/")+1:]
	n.mu.Lock()
	n.mu.calls[method]++
	h := n.mu.handlers[method]
	n.mu.Unlock()
	var (
		resp any
		err  error
	)
	if h != nil {
		resp, err = h(ctx, req)
	} else {
		resp, err = handler(ctx, req)
	}
	if err != nil {
		return nil, wire.Status(err).Err()
	}
	return resp, nil
}

// index returns the node's position in the cluster.
func (n *Node) index() int {
	for i, m := range n.cluster.Nodes {
		if m == n {
			return i
		}
	}
	return -1
}

// Default answers req with the node's default behaviour, so that a Handler
// can fail some calls and serve the rest.
func (n *Node) Default(ctx context.Context, req any) (any, error) {
	s := &service{node: n}
	switch r := req.(type) {
	case *heraldpb.CreateTopicRequest:
		return s.CreateTopic(ctx, r)
	case *heraldpb.ListTopicsRequest:
		return s.ListTopics(ctx, r)
	case *heraldpb.DescribeTopicRequest:
		return s.DescribeTopic(ctx, r)
	case *heraldpb.MetadataRequest:
		return s.Metadata(ctx, r)
	case *heraldpb.ProduceRequest:
		return s.Produce(ctx, r)
	case *heraldpb.FetchRequest:
		return s.Fetch(ctx, r)
	case *heraldpb.ClusterStatusRequest:
		return s.ClusterStatus(ctx, r)
	case *heraldpb.AlterTopicRequest:
		return s.AlterTopic(ctx, r)
	case *heraldpb.DeleteTopicRequest:
		return s.DeleteTopic(ctx, r)
	case *heraldpb.CreateTenantRequest:
		return s.CreateTenant(ctx, r)
	case *heraldpb.ListTenantsRequest:
		return s.ListTenants(ctx, r)
	case *heraldpb.DescribeTenantRequest:
		return s.DescribeTenant(ctx, r)
	case *heraldpb.SetTenantQuotaRequest:
		return s.SetTenantQuota(ctx, r)
	case *heraldpb.InitProducerRequest:
		return s.InitProducer(ctx, r)
	}
	return nil, fmt.Errorf("heraldtest: no default for %T", req)
}
