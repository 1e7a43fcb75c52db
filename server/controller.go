package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"

	hraft "github.com/hashicorp/raft"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
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
	// ContractVersion is the registry's Raft index of the topic's latest
	// alter (0: never altered). Produce stamps it on each call; the alter
	// fences every partition with it, so that a partition refuses calls
	// checked against an older contract (partition.ErrContractChanged).
	ContractVersion uint64 `json:"contract_version,omitempty"`
	topicContract
}

// topicContract is what a topic promises and enforces on every produce;
// the alterable part is changed by AlterTopic.
type topicContract struct {
	Ordering        heraldpb.Ordering `json:"ordering,omitempty"`
	RetentionAgeMs  int64             `json:"retention_age_ms,omitempty"`
	RetentionBytes  uint64            `json:"retention_bytes,omitempty"`
	RetentionEvents uint64            `json:"retention_events,omitempty"`
	DefaultTTLMs    int64             `json:"default_ttl_ms,omitempty"`
	MaxTTLMs        int64             `json:"max_ttl_ms,omitempty"`
	DedupeWindowMs  int64             `json:"dedupe_window_ms,omitempty"`
	Schema          string            `json:"schema,omitempty"`
	SchemaVersions  []uint32          `json:"schema_versions,omitempty"`
	RequiredFields  []string          `json:"required_fields,omitempty"`
	AutoTenants     bool              `json:"auto_tenants,omitempty"`
}

type tenantRecord struct {
	ID                string      `json:"id"`
	DisplayName       string      `json:"display_name,omitempty"`
	Quota             tenantQuota `json:"quota"`
	CreatedAtUnixNano int64       `json:"created_at_unix_nano"`
}

type tenantQuota struct {
	EventsPerSec     uint64 `json:"events_per_sec,omitempty"`
	BytesPerSec      uint64 `json:"bytes_per_sec,omitempty"`
	Burst            uint64 `json:"burst,omitempty"`
	MaxInflightBytes uint64 `json:"max_inflight_bytes,omitempty"`
}

type partitionRecord struct {
	Index   uint32 `json:"index"`
	GroupID uint64 `json:"group_id"`
	// Replicas are node ids; the first is the preferred leader, and the
	// reconciler moves leadership there when it can.
	Replicas []string `json:"replicas"`
	// Live is set (by mark_live, proposed by the group's first leader) once
	// the group has been bootstrapped and may hold data. A replica without
	// local state bootstraps only while it is false; afterwards it rejoins
	// from its peers as a non-voter (see reconciler.go).
	Live bool `json:"live,omitempty"`
}

type registry struct {
	Version        int                      `json:"version"`
	Topics         map[string]*topicRecord  `json:"topics"`
	NextGroupID    uint64                   `json:"next_group_id"`
	Tenants        map[string]*tenantRecord `json:"tenants,omitempty"`
	NextProducerID uint64                   `json:"next_producer_id,omitempty"`
	// Tombstones name the groups of deleted topics (group id -> the Raft
	// index of the delete). A node deletes a group's local data only when
	// its id is here: a group merely absent from the registry (one not
	// replayed yet after a restart) is never deleted.
	Tombstones map[uint64]uint64 `json:"tombstones,omitempty"`
	// AppliedIndex is the index of the last entry the state machine had
	// applied when the snapshot was taken (only set in snapshots).
	AppliedIndex uint64 `json:"applied_index,omitempty"`
}

type controllerCommand struct {
	Version        int                  `json:"version"`
	Op             string               `json:"op"`
	CreateTopic    *createTopicCommand  `json:"create_topic,omitempty"`
	AlterTopic     *alterTopicCommand   `json:"alter_topic,omitempty"`
	DeleteTopic    string               `json:"delete_topic,omitempty"`
	CreateTenant   *tenantRecord        `json:"create_tenant,omitempty"`
	SetTenantQuota *tenantRecord        `json:"set_tenant_quota,omitempty"`
	InitProducer   *initProducerCommand `json:"init_producer,omitempty"`
	MarkLive       []uint64             `json:"mark_live,omitempty"`
}

// Controller operations. Persisted in the controller's Raft log: append-only.
const (
	opCreateTopic    = "create_topic"
	opAlterTopic     = "alter_topic"
	opDeleteTopic    = "delete_topic"
	opCreateTenant   = "create_tenant"
	opSetTenantQuota = "set_tenant_quota"
	opInitProducer   = "init_producer"
	opMarkLive       = "mark_live"
)

type createTopicCommand struct {
	Name              string `json:"name"`
	Partitions        uint32 `json:"partitions"`
	ReplicationFactor uint32 `json:"replication_factor"`
	MaxEventBytes     uint64 `json:"max_event_bytes"`
	CreatedAtUnixNano int64  `json:"created_at_unix_nano"`
	// Nodes are the ids placement may choose from, sorted, as the leader saw
	// the cluster when it proposed; apply places deterministically from them.
	Nodes []string `json:"nodes"`
	topicContract
}

// alterTopicCommand replaces the named contract fields of a topic.
type alterTopicCommand struct {
	Name     string        `json:"name"`
	Fields   []string      `json:"fields"`
	Contract topicContract `json:"contract"`
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
	// onDamage is told about an entry found damaged in this replica's Raft
	// log, just before Apply stops the node. Set before Raft starts.
	onDamage func(error)

	// applied is the index of the last entry this state machine has
	// applied (commands and configurations; hashicorp/raft's own
	// AppliedIndex counts entries queued, not applied). appliedWait is
	// closed and replaced after every advance.
	applied      atomic.Uint64
	appliedMu    sync.Mutex
	appliedWaits chan struct{}
}

var (
	_ hraft.FSM                = (*controllerFSM)(nil)
	_ hraft.ConfigurationStore = (*controllerFSM)(nil)
)

func newControllerFSM() *controllerFSM {
	f := &controllerFSM{changed: make(chan struct{}, 1), waiters: make(chan struct{}), onDamage: func(error) {},
		appliedWaits: make(chan struct{})}
	f.mu.reg = registry{Version: controllerFormatVersion, Topics: map[string]*topicRecord{}, NextGroupID: 1,
		Tenants: map[string]*tenantRecord{}, NextProducerID: 1, Tombstones: map[uint64]uint64{}}
	return f
}

// appliedIndex is the index of the last entry applied here.
func (f *controllerFSM) appliedIndex() uint64 { return f.applied.Load() }

// setApplied records that the entry at index has been applied.
func (f *controllerFSM) setApplied(index uint64) {
	f.applied.Store(index)
	f.appliedMu.Lock()
	close(f.appliedWaits)
	f.appliedWaits = make(chan struct{})
	f.appliedMu.Unlock()
}

// appliedCh returns a channel closed at the next advance of appliedIndex.
func (f *controllerFSM) appliedCh() <-chan struct{} {
	f.appliedMu.Lock()
	defer f.appliedMu.Unlock()
	return f.appliedWaits
}

// StoreConfiguration is called by Raft for every configuration entry, in log
// order with Apply; it only advances the applied index, so that
// configuration entries count for ReadIndex.
func (f *controllerFSM) StoreConfiguration(index uint64, _ hraft.Configuration) {
	f.setApplied(index)
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
	defer f.setApplied(l.Index)
	if l.Type != hraft.LogCommand {
		return nil
	}
	body, err := decodeControllerEntry(l.Data)
	if err != nil {
		// This replica's copy is damaged (the leader checksummed it): stop
		// rather than apply something else than the others; the next start
		// moves the controller's Raft state aside and rejoins.
		f.onDamage(fmt.Errorf("raft index %d: %w", l.Index, err))
		panic(fmt.Sprintf("controller: raft index %d: %v", l.Index, err))
	}
	var cmd controllerCommand
	if err := json.Unmarshal(body, &cmd); err != nil {
		// Every replica fails the same way on the same bytes; the registry
		// stays unchanged everywhere, so refuse the entry rather than stop.
		return fmt.Errorf("controller: undecodable command at index %d: %w", l.Index, err)
	}
	var res interface{}
	switch cmd.Op {
	case opCreateTopic:
		res = f.applyCreateTopic(cmd.CreateTopic)
	case opAlterTopic:
		res = f.applyAlterTopic(cmd.AlterTopic, l.Index)
	case opDeleteTopic:
		res = f.applyDeleteTopic(cmd.DeleteTopic, l.Index)
	case opMarkLive:
		res = f.applyMarkLive(cmd.MarkLive)
	case opCreateTenant:
		res = f.applyCreateTenant(cmd.CreateTenant)
	case opSetTenantQuota:
		res = f.applySetTenantQuota(cmd.SetTenantQuota)
	case opInitProducer:
		f.mu.Lock()
		grant := f.grantProducerLocked(cmd.InitProducer)
		f.mu.Unlock()
		return grant
	default:
		return fmt.Errorf("controller: unknown op %q at index %d", cmd.Op, l.Index)
	}
	f.signal()
	return res
}

func (f *controllerFSM) applyAlterTopic(c *alterTopicCommand, index uint64) interface{} {
	if c == nil {
		return errors.New("controller: alter_topic without a body")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.mu.reg.Topics[c.Name]
	if !ok {
		return wire.TopicNotFound(c.Name)
	}
	if err := t.topicContract.alter(c.Contract, c.Fields); err != nil {
		return err
	}
	t.ContractVersion = index
	return cloneTopic(t)
}

// applyDeleteTopic removes a topic and writes a tombstone for each of its
// groups: the replicated fact on which nodes delete the groups' data.
func (f *controllerFSM) applyDeleteTopic(name string, index uint64) interface{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.mu.reg.Topics[name]
	if !ok {
		return wire.TopicNotFound(name)
	}
	delete(f.mu.reg.Topics, name)
	for _, p := range t.Partitions {
		f.mu.reg.Tombstones[p.GroupID] = index
	}
	return cloneTopic(t)
}

// applyMarkLive records that the named groups have been bootstrapped. Ids of
// groups no longer in the registry are ignored.
func (f *controllerFSM) applyMarkLive(groups []uint64) interface{} {
	want := make(map[uint64]bool, len(groups))
	for _, g := range groups {
		want[g] = true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	marked := 0
	for _, t := range f.mu.reg.Topics {
		for i := range t.Partitions {
			if p := &t.Partitions[i]; want[p.GroupID] && !p.Live {
				p.Live = true
				marked++
			}
		}
	}
	return marked
}

// tombstoned reports whether group gid belongs to a deleted topic.
func (f *controllerFSM) tombstoned(gid uint64) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	_, ok := f.mu.reg.Tombstones[gid]
	return ok
}

// tombstoneIndex is the Raft index of the delete that tombstoned gid (0 if none).
func (f *controllerFSM) tombstoneIndex(gid uint64) uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.mu.reg.Tombstones[gid]
}

func (f *controllerFSM) applyCreateTenant(t *tenantRecord) interface{} {
	if t == nil {
		return errors.New("controller: create_tenant without a body")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.mu.reg.Tenants[t.ID]; ok {
		return wire.TenantExists(t.ID)
	}
	c := *t
	f.mu.reg.Tenants[t.ID] = &c
	out := c
	return &out
}

func (f *controllerFSM) applySetTenantQuota(t *tenantRecord) interface{} {
	if t == nil {
		return errors.New("controller: set_tenant_quota without a body")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	cur, ok := f.mu.reg.Tenants[t.ID]
	if !ok {
		return wire.TenantNotFound(t.ID)
	}
	cur.Quota = t.Quota
	out := *cur
	return &out
}

// tenant returns a copy of one tenant.
func (f *controllerFSM) tenant(id string) (*tenantRecord, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	t, ok := f.mu.reg.Tenants[id]
	if !ok {
		return nil, false
	}
	c := *t
	return &c, true
}

// tenants returns copies of every tenant, sorted by id.
func (f *controllerFSM) tenants() []*tenantRecord {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]*tenantRecord, 0, len(f.mu.reg.Tenants))
	for _, t := range f.mu.reg.Tenants {
		c := *t
		out = append(out, &c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (f *controllerFSM) applyCreateTopic(c *createTopicCommand) interface{} {
	if c == nil {
		return errors.New("controller: create_topic without a body")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.mu.reg.Topics[c.Name]; ok {
		return wire.TopicExists(c.Name)
	}
	if len(c.Nodes) == 0 || int(c.ReplicationFactor) > len(c.Nodes) || c.ReplicationFactor == 0 {
		return wire.InvalidArgument("replication_factor", "replication factor %d needs as many nodes; the cluster has %d", c.ReplicationFactor, len(c.Nodes))
	}
	t := &topicRecord{
		Name:              c.Name,
		ReplicationFactor: c.ReplicationFactor,
		MaxEventBytes:     c.MaxEventBytes,
		CreatedAtUnixNano: c.CreatedAtUnixNano,
		topicContract:     c.topicContract.clone(),
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
	// Snapshot runs on the FSM goroutine: applied is stable here.
	reg := f.mu.reg
	reg.AppliedIndex = f.applied.Load()
	data, err := json.Marshal(&reg)
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
	if reg.Tenants == nil {
		reg.Tenants = map[string]*tenantRecord{}
	}
	if reg.NextProducerID == 0 {
		reg.NextProducerID = 1
	}
	if reg.Tombstones == nil {
		reg.Tombstones = map[uint64]uint64{}
	}
	applied := reg.AppliedIndex
	reg.AppliedIndex = 0
	f.mu.Lock()
	f.mu.reg = reg
	f.mu.Unlock()
	// A snapshot written before applied_index existed restores as 0: the
	// next applied entry sets the index right.
	f.setApplied(applied)
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
	Topic           string
	ContractVersion uint64 // the topic's
	Partition       partitionRecord
}

// assignedTo lists the partitions with a replica on node.
func (f *controllerFSM) assignedTo(node string) []assignment {
	var out []assignment
	for _, t := range f.topics() {
		for _, p := range t.Partitions {
			for _, r := range p.Replicas {
				if r == node {
					out = append(out, assignment{Topic: t.Name, ContractVersion: t.ContractVersion, Partition: p})
					break
				}
			}
		}
	}
	return out
}

// alter copies the named alterable fields (TopicConfig field names, the
// list in wire.AlterableFields) of src into c; any other name is refused
// and c is left unchanged. The controller FSM applies it to replicated
// commands, so it must stay deterministic: the list is append-only, and a
// name is only proposed after AlterTopic checked it with this same call.
func (c *topicContract) alter(src topicContract, fields []string) error {
	cfg := c.config()
	if err := wire.AlterTopicConfig(cfg, src.config(), fields); err != nil {
		return err
	}
	*c = contractFromConfig(cfg)
	return nil
}

func (c topicContract) clone() topicContract {
	c.SchemaVersions = append([]uint32(nil), c.SchemaVersions...)
	c.RequiredFields = append([]string(nil), c.RequiredFields...)
	return c
}

func cloneTopic(t *topicRecord) *topicRecord {
	c := *t
	c.topicContract = t.topicContract.clone()
	c.Partitions = make([]partitionRecord, len(t.Partitions))
	for i, p := range t.Partitions {
		c.Partitions[i] = partitionRecord{Index: p.Index, GroupID: p.GroupID, Replicas: append([]string(nil), p.Replicas...), Live: p.Live}
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
			Ordering:          t.Ordering,
			RetentionAgeMs:    t.RetentionAgeMs,
			RetentionBytes:    t.RetentionBytes,
			RetentionEvents:   t.RetentionEvents,
			DefaultTtlMs:      t.DefaultTTLMs,
			MaxTtlMs:          t.MaxTTLMs,
			DedupeWindowMs:    t.DedupeWindowMs,
			Schema:            t.Schema,
			SchemaVersions:    append([]uint32(nil), t.SchemaVersions...),
			RequiredFields:    append([]string(nil), t.RequiredFields...),
			AutoTenants:       t.AutoTenants,
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
	cfg := info.GetConfig()
	t := &topicRecord{
		Name:              cfg.GetName(),
		ReplicationFactor: cfg.GetReplicationFactor(),
		MaxEventBytes:     cfg.GetMaxEventBytes(),
		CreatedAtUnixNano: info.GetCreatedAtUnixNano(),
		topicContract:     contractFromConfig(cfg),
	}
	for _, p := range info.GetPartitions() {
		t.Partitions = append(t.Partitions, partitionRecord{Index: p.GetIndex(), GroupID: p.GetGroupId(), Replicas: append([]string(nil), p.GetReplicas()...)})
	}
	return t
}

// config returns the contract fields as a wire topic config; the inverse
// of contractFromConfig.
func (c topicContract) config() *heraldpb.TopicConfig {
	return &heraldpb.TopicConfig{
		Ordering:        c.Ordering,
		RetentionAgeMs:  c.RetentionAgeMs,
		RetentionBytes:  c.RetentionBytes,
		RetentionEvents: c.RetentionEvents,
		DefaultTtlMs:    c.DefaultTTLMs,
		MaxTtlMs:        c.MaxTTLMs,
		DedupeWindowMs:  c.DedupeWindowMs,
		Schema:          c.Schema,
		SchemaVersions:  append([]uint32(nil), c.SchemaVersions...),
		RequiredFields:  append([]string(nil), c.RequiredFields...),
		AutoTenants:     c.AutoTenants,
	}
}

// contractFromConfig takes the contract fields of a wire topic config.
func contractFromConfig(cfg *heraldpb.TopicConfig) topicContract {
	return topicContract{
		Ordering:        cfg.GetOrdering(),
		RetentionAgeMs:  cfg.GetRetentionAgeMs(),
		RetentionBytes:  cfg.GetRetentionBytes(),
		RetentionEvents: cfg.GetRetentionEvents(),
		DefaultTTLMs:    cfg.GetDefaultTtlMs(),
		MaxTTLMs:        cfg.GetMaxTtlMs(),
		DedupeWindowMs:  cfg.GetDedupeWindowMs(),
		Schema:          cfg.GetSchema(),
		SchemaVersions:  append([]uint32(nil), cfg.GetSchemaVersions()...),
		RequiredFields:  append([]string(nil), cfg.GetRequiredFields()...),
		AutoTenants:     cfg.GetAutoTenants(),
	}
}

func (t *tenantRecord) info() *heraldpb.Tenant {
	return &heraldpb.Tenant{
		Id:          t.ID,
		DisplayName: t.DisplayName,
		Quota: &heraldpb.TenantQuota{
			EventsPerSec:     t.Quota.EventsPerSec,
			BytesPerSec:      t.Quota.BytesPerSec,
			Burst:            t.Quota.Burst,
			MaxInflightBytes: t.Quota.MaxInflightBytes,
		},
		CreatedAtUnixNano: t.CreatedAtUnixNano,
	}
}

func quotaFromWire(q *heraldpb.TenantQuota) tenantQuota {
	return tenantQuota{
		EventsPerSec:     q.GetEventsPerSec(),
		BytesPerSec:      q.GetBytesPerSec(),
		Burst:            q.GetBurst(),
		MaxInflightBytes: q.GetMaxInflightBytes(),
	}
}
