package client

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/heraldlog/herald/client/heraldpb"
)

// topicRoute is what the SDK needs to route a topic's requests.
type topicRoute struct {
	partitions uint32
	ordering   heraldpb.Ordering
	// leaders holds each partition's leader address; "" when unknown.
	leaders []string
}

// topicShape is what routing an event needs: see PartitionFor.
type topicShape struct {
	partitions uint32
	ordering   heraldpb.Ordering
}

// partitionFor routes an event (whose id is set when the ordering needs it).
func (s topicShape) partitionFor(e *heraldpb.Event) uint32 {
	return PartitionFor(s.ordering, e.GetTenantId(), e.GetKey(), e.GetEventId(), s.partitions)
}

// metadataCache holds the cluster's shape as last seen: the nodes, each
// topic's partition count and each partition's leader address. It is fed
// by Metadata answers, topic answers and NOT_LEADER hints, and may be stale
// at any moment: a stale leader costs one redirect, never a wrong answer.
// All methods are safe for concurrent use.
type metadataCache struct {
	seeds []string      // the configured servers; immutable
	turn  atomic.Uint64 // round-robin position over servers()

	mu struct {
		sync.Mutex
		nodes            map[string]string // node id -> gRPC address
		topics           map[string]*topicRoute
		controllerLeader string
	}
}

func newMetadataCache(seeds []string) *metadataCache {
	m := &metadataCache{seeds: slices.Clone(seeds)}
	m.mu.nodes = make(map[string]string)
	m.mu.topics = make(map[string]*topicRoute)
	return m
}

// update records a Metadata answer. requested are the topics asked for:
// when empty the answer covers every topic and replaces the cache's list;
// otherwise requested topics missing from the answer are forgotten.
func (m *metadataCache) update(resp *heraldpb.MetadataResponse, requested []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(resp.GetNodes()) > 0 {
		m.mu.nodes = make(map[string]string, len(resp.GetNodes()))
		for _, n := range resp.GetNodes() {
			m.mu.nodes[n.GetId()] = n.GetGrpcAddr()
		}
	}
	m.mu.controllerLeader = resp.GetControllerLeaderId()
	if len(requested) == 0 {
		m.mu.topics = make(map[string]*topicRoute, len(resp.GetTopics()))
	} else {
		for _, name := range requested {
			delete(m.mu.topics, name)
		}
	}
	for _, t := range resp.GetTopics() {
		m.updateTopicLocked(t)
	}
}

// updateTopic records one topic's description.
func (m *metadataCache) updateTopic(t *heraldpb.TopicInfo) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.updateTopicLocked(t)
}

func (m *metadataCache) updateTopicLocked(t *heraldpb.TopicInfo) {
	name := t.GetConfig().GetName()
	if name == "" {
		return
	}
	count := t.GetConfig().GetPartitions()
	for _, p := range t.GetPartitions() {
		count = max(count, p.GetIndex()+1)
	}
	route := &topicRoute{partitions: count, ordering: t.GetConfig().GetOrdering(), leaders: make([]string, count)}
	for _, p := range t.GetPartitions() {
		addr := p.GetLeaderAddr()
		if addr == "" && p.GetLeaderId() != "" {
			addr = m.mu.nodes[p.GetLeaderId()]
		}
		route.leaders[p.GetIndex()] = addr
	}
	m.mu.topics[name] = route
}

// partitions returns the topic's partition count, if the topic is known.
func (m *metadataCache) partitions(topic string) (uint32, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.mu.topics[topic]
	if !ok {
		return 0, false
	}
	return r.partitions, true
}

// shape returns the topic's partition count and ordering, if the topic is
// known.
func (m *metadataCache) shape(topic string) (topicShape, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.mu.topics[topic]
	if !ok {
		return topicShape{}, false
	}
	return topicShape{partitions: r.partitions, ordering: r.ordering}, true
}

// forgetTopic drops a topic (deleted, or found missing).
func (m *metadataCache) forgetTopic(topic string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.mu.topics, topic)
}

// leader returns the cached leader address of a partition, or "".
func (m *metadataCache) leader(topic string, partition uint32) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.mu.topics[topic]
	if !ok || partition >= r.partitions {
		return ""
	}
	return r.leaders[partition]
}

// setLeader records a partition's leader, as named by a NOT_LEADER answer.
func (m *metadataCache) setLeader(topic string, partition uint32, addr string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.mu.topics[topic]; ok && partition < r.partitions {
		r.leaders[partition] = addr
	}
}

// forgetLeader clears a partition's cached leader if it is still addr (a
// concurrent request may already have learnt a newer one).
func (m *metadataCache) forgetLeader(topic string, partition uint32, addr string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.mu.topics[topic]; ok && partition < r.partitions && r.leaders[partition] == addr {
		r.leaders[partition] = ""
	}
}

// controllerLeader returns the controller leader's node id, or "".
func (m *metadataCache) controllerLeader() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.controllerLeader
}

// servers returns every known address: the seeds, then the nodes' addresses
// in sorted order, without duplicates.
func (m *metadataCache) servers() []string {
	m.mu.Lock()
	nodes := make([]string, 0, len(m.mu.nodes))
	for _, addr := range m.mu.nodes {
		if addr != "" {
			nodes = append(nodes, addr)
		}
	}
	m.mu.Unlock()
	slices.Sort(nodes)
	all := slices.Clone(m.seeds)
	for _, addr := range nodes {
		if !slices.Contains(all, addr) {
			all = append(all, addr)
		}
	}
	return all
}

// nextServer picks a server round-robin, avoiding avoid when there is any
// other choice.
func (m *metadataCache) nextServer(avoid string) string {
	all := m.servers()
	for range len(all) {
		addr := all[m.turn.Add(1)%uint64(len(all))]
		if addr != avoid || len(all) == 1 {
			return addr
		}
	}
	return all[0]
}
