package client

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/heraldlog/herald/client/heraldpb"
)

func topicInfo(name string, leaders ...string) *heraldpb.TopicInfo {
	t := &heraldpb.TopicInfo{Config: &heraldpb.TopicConfig{Name: name, Partitions: uint32(len(leaders))}}
	for i, id := range leaders {
		t.Partitions = append(t.Partitions, &heraldpb.PartitionInfo{Index: uint32(i), LeaderId: id})
	}
	return t
}

func TestMetadataCacheRoutes(t *testing.T) {
	m := newMetadataCache([]string{"seed:1"})
	m.update(&heraldpb.MetadataResponse{
		Nodes:              []*heraldpb.NodeInfo{{Id: "n1", GrpcAddr: "h:1"}, {Id: "n2", GrpcAddr: "h:2"}},
		Topics:             []*heraldpb.TopicInfo{topicInfo("a", "n1", "n2", ""), topicInfo("b", "n2")},
		ControllerLeaderId: "n1",
	}, nil)

	n, ok := m.partitions("a")
	assert.True(t, ok)
	assert.Equal(t, uint32(3), n)
	assert.Equal(t, "h:1", m.leader("a", 0), "leader address resolved from the node list")
	assert.Equal(t, "h:2", m.leader("a", 1))
	assert.Equal(t, "", m.leader("a", 2), "no leader")
	assert.Equal(t, "", m.leader("a", 9), "out of range")
	assert.Equal(t, "n1", m.controllerLeader())

	m.setLeader("a", 2, "h:1")
	assert.Equal(t, "h:1", m.leader("a", 2))
	m.forgetLeader("a", 2, "h:2") // stale: another request learnt h:1 since
	assert.Equal(t, "h:1", m.leader("a", 2))
	m.forgetLeader("a", 2, "h:1")
	assert.Equal(t, "", m.leader("a", 2))

	// A partial answer replaces only the topics asked for.
	m.update(&heraldpb.MetadataResponse{Topics: []*heraldpb.TopicInfo{topicInfo("b", "n1")}}, []string{"b", "gone"})
	assert.Equal(t, "h:1", m.leader("b", 0))
	_, ok = m.partitions("a")
	assert.True(t, ok, "topics not asked for stay")
	// A full answer replaces the list.
	m.update(&heraldpb.MetadataResponse{Topics: []*heraldpb.TopicInfo{topicInfo("c", "n2")}}, nil)
	_, ok = m.partitions("a")
	assert.False(t, ok)

	assert.Equal(t, []string{"seed:1", "h:1", "h:2"}, m.servers())
	for range 10 {
		assert.NotEqual(t, "h:1", m.nextServer("h:1"))
	}
	single := newMetadataCache([]string{"only:1"})
	assert.Equal(t, "only:1", single.nextServer("only:1"), "the only server is used even when it failed")
}

func TestMetadataCacheKeepsTheOrdering(t *testing.T) {
	m := newMetadataCache([]string{"seed:1"})
	info := topicInfo("k", "", "")
	info.Config.Ordering = heraldpb.Ordering_PER_KEY
	m.updateTopic(info)

	s, ok := m.shape("k")
	assert.True(t, ok)
	assert.Equal(t, topicShape{partitions: 2, ordering: heraldpb.Ordering_PER_KEY}, s)
	assert.Equal(t, PartitionFor(heraldpb.Ordering_PER_KEY, "acme", []byte("x"), "", 2), s.partitionFor(&heraldpb.Event{TenantId: "acme", Key: []byte("x")}))

	m.forgetTopic("k")
	_, ok = m.shape("k")
	assert.False(t, ok)
}
