package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"

	hraft "github.com/hashicorp/raft"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldpb"
)

// The controller is Raft group 0, on every initial node. Its state machine
// holds the registry: topics and the placement of their partitions. Its
// commands and snapshots are JSON with a version number (low volume,
// readable with any tool); fields are only ever added.

const (
	controllerGroupID       uint64 = 0
	controllerFormatVersion        = 1
)

type topicRecord struct {
	Name              string            `json:"name"`
	Partitions        []partitionRecord `json:"partitions"`
	ReplicationFactor uint32            `json:"replication_factor"`
	MaxEventBytes     uint64            `json:"max_event_bytes"`
	CreatedAtUnixNano int64             `json:"created_at_unix_nano"`
}

type partitionRecord struct {
	Index   uint32 `json:"index"`
	GroupID uint64 `json:"group_id"`
	// Replicas are node ids; the first is the preferred leader, and the
	// reconciler moves leadership there when it can.
	Replicas []string `json:"replicas"`
}

type registry struct {
	Version     int                     `json:"version"`
	Topics      map[string]*topicRecord `json:"topics"`
	NextGroupID uint64                  `json:"next_group_id"`
}

type controllerCommand struct {
	Version     int                 `json:"version"`
	Op          string              `json:"op"`
	CreateTopic *createTopicCommand `json:"create_topic,omitempty"`
}

const opCreateTopic = "create_topic"

type createTopicCommand struct {
	Name              string `json:"name"`
	Partitions        uint32 `json:"partitions"`
	ReplicationFactor uint32 `json:"replication_factor"`
	MaxEventBytes     uint64 `json:"max_event_bytes"`
	CreatedAtUnixNano int64  `json:"created_at_unix_nano"`
	// Nodes are the ids placement may choose from, sorted, as the leader saw
	// the cluster when it proposed; apply places deterministically from them.
	Nodes []string `json:"nodes"`
}

// controllerFSM is the registry state machine. Apply, Snapshot and Restore
// run on raft's FSM goroutine; readers (the services, the reconciler) take
// copies under mu.
type controllerFSM struct {
	mu struct {
		sync.RWMutex
		reg registry
	}
	// changed gets a token after every change (capacity 1; never blocks).
	changed chan struct{}
	// waiters are woken (closed) after every change.
	waitMu  sync.Mutex
	waiters chan struct{}
}

var _ hraft.FSM = (*controllerFSM)(nil)

func newControllerFSM() *controllerFSM {
	f := &controllerFSM{changed: make(chan struct{}, 1), waiters: make(chan struct{})}
	f.mu.reg = registry{Version: controllerFormatVersion, Topics: map[string]*topicRecord{}, NextGroupID: 1}
	return f
}

func (f *controllerFSM) signal() {
	select {
	case f.changed <- struct{}{}:
	default:
	}
	f.waitMu.Lock()
	close(f.waiters)
	f.waiters = make(chan struct{})
	f.waitMu.Unlock()
}

// changedCh returns a channel closed at the next registry change.
func (f *controllerFSM) changedCh() <-chan struct{} {
	f.waitMu.Lock()
	defer f.waitMu.Unlock()
	return f.waiters
}

func (f *controllerFSM) Apply(l *hraft.Log) interface{} {
	if l.Type != hraft.LogCommand {
		return nil
	}
	var cmd controllerCommand
	if err := json.Unmarshal(l.Data, &cmd); err != nil {
		// Every replica fails the same way on the same bytes; the registry
		// stays unchanged everywhere, so refuse the entry rather than stop.
		return fmt.Errorf("controller: undecodable command at index %d: %w", l.Index, err)
	}
	switch cmd.Op {
	case opCreateTopic:
		res := f.applyCreateTopic(cmd.CreateTopic)
		f.signal()
		return res
	default:
		return fmt.Errorf("controller: unknown op %q at index %d", cmd.Op, l.Index)
	}
}

func (f *controllerFSM) applyCreateTopic(c *createTopicCommand) interface{} {
	if c == nil {
		return errors.New("controller: create_topic without a body")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.mu.reg.Topics[c.Name]; ok {
		return client.TopicExists(c.Name)
	}
	if len(c.Nodes) == 0 || int(c.ReplicationFactor) > len(c.Nodes) || c.ReplicationFactor == 0 {
		return client.InvalidArgument("replication_factor", "replication factor %d needs as many nodes; the cluster has %d", c.ReplicationFactor, len(c.Nodes))
	}
	t := &topicRecord{
		Name:              c.Name,
		ReplicationFactor: c.ReplicationFactor,
		MaxEventBytes:     c.MaxEventBytes,
		CreatedAtUnixNano: c.CreatedAtUnixNano,
	}
	n := uint64(len(c.Nodes))
	for i := uint32(0); i < c.Partitions; i++ {
		gid := f.mu.reg.NextGroupID
		f.mu.reg.NextGroupID++
		// Rotating the first replica by group id spreads preferred leaders
		// (and so leaders) over the nodes, across topics too.
		start := gid % n
		replicas := make([]string, c.ReplicationFactor)
		for k := range replicas {
			replicas[k] = c.Nodes[(start+uint64(k))%n]
		}
		t.Partitions = append(t.Partitions, partitionRecord{Index: i, GroupID: gid, Replicas: replicas})
	}
	f.mu.reg.Topics[c.Name] = t
	return cloneTopic(t)
}

func (f *controllerFSM) Snapshot() (hraft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	data, err := json.Marshal(&f.mu.reg)
	if err != nil {
		return nil, err
	}
	return controllerSnapshot(data), nil
}

func (f *controllerFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var reg registry
	if err := json.NewDecoder(rc).Decode(&reg); err != nil {
		return fmt.Errorf("controller: restore: %w", err)
	}
	if reg.Version > controllerFormatVersion {
		return fmt.Errorf("controller: snapshot format %d is newer than this binary's %d", reg.Version, controllerFormatVersion)
	}
	if reg.Topics == nil {
		reg.Topics = map[string]*topicRecord{}
	}
	f.mu.Lock()
	f.mu.reg = reg
	f.mu.Unlock()
	f.signal()
	return nil
}

type controllerSnapshot []byte

func (s controllerSnapshot) Persist(sink hraft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s controllerSnapshot) Release() {}

// topic returns a copy of one topic.
func (f *controllerFSM) topic(name string) (*topicRecord, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	t, ok := f.mu.reg.Topics[name]
	if !ok {
		return nil, false
	}
	return cloneTopic(t), true
}

// topics returns copies of every topic, sorted by name.
func (f *controllerFSM) topics() []*topicRecord {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]*topicRecord, 0, len(f.mu.reg.Topics))
	for _, t := range f.mu.reg.Topics {
		out = append(out, cloneTopic(t))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// assignment is one partition replica placed on a node.
type assignment struct {
	Topic     string
	Partition partitionRecord
}

// assignedTo lists the partitions with a replica on node.
func (f *controllerFSM) assignedTo(node string) []assignment {
	var out []assignment
	for _, t := range f.topics() {
		for _, p := range t.Partitions {
			for _, r := range p.Replicas {
				if r == node {
					out = append(out, assignment{Topic: t.Name, Partition: p})
					break
				}
			}
		}
	}
	return out
}

func cloneTopic(t *topicRecord) *topicRecord {
	c := *t
	c.Partitions = make([]partitionRecord, len(t.Partitions))
	for i, p := range t.Partitions {
		c.Partitions[i] = partitionRecord{Index: p.Index, GroupID: p.GroupID, Replicas: append([]string(nil), p.Replicas...)}
	}
	return &c
}

// topicInfo converts a topic to the wire form; leaders are filled by the caller.
func (t *topicRecord) info() *heraldpb.TopicInfo {
	info := &heraldpb.TopicInfo{
		Config: &heraldpb.TopicConfig{
			Name:              t.Name,
			Partitions:        uint32(len(t.Partitions)),
			ReplicationFactor: t.ReplicationFactor,
			MaxEventBytes:     t.MaxEventBytes,
		},
		CreatedAtUnixNano: t.CreatedAtUnixNano,
	}
	for _, p := range t.Partitions {
		info.Partitions = append(info.Partitions, &heraldpb.PartitionInfo{
			Index:    p.Index,
			GroupId:  p.GroupID,
			Replicas: append([]string(nil), p.Replicas...),
		})
	}
	return info
}

// topicFromInfo is the inverse of info, for topics learnt from the
// controller leader before the local registry has caught up.
func topicFromInfo(info *heraldpb.TopicInfo) *topicRecord {
	t := &topicRecord{
		Name:              info.GetConfig().GetName(),
		ReplicationFactor: info.GetConfig().GetReplicationFactor(),
		MaxEventBytes:     info.GetConfig().GetMaxEventBytes(),
		CreatedAtUnixNano: info.GetCreatedAtUnixNano(),
	}
	for _, p := range info.GetPartitions() {
		t.Partitions = append(t.Partitions, partitionRecord{Index: p.GetIndex(), GroupID: p.GetGroupId(), Replicas: append([]string(nil), p.GetReplicas()...)})
	}
	return t
}
