package controller

import "sort"

// The registry's state types. They are persisted as JSON, in controller
// snapshots (Registry) and in command bodies (command.go): field names and
// meanings never change, fields are only ever added.

// FormatVersion is the version of the snapshot format (Registry.Version).
// Restore refuses a snapshot of a newer format.
const FormatVersion = 1

// Ordering is how a topic routes events to partitions: the number of the
// wire enum herald.v1.Ordering (the node converts). Stored as that number.
type Ordering int32

// Topic is one topic: its contract and the placement of its partitions.
type Topic struct {
	Name              string      `json:"name"`
	Partitions        []Partition `json:"partitions"`
	ReplicationFactor uint32      `json:"replication_factor"`
	MaxEventBytes     uint64      `json:"max_event_bytes"`
	CreatedAtUnixNano int64       `json:"created_at_unix_nano"`
	// ContractVersion is the registry's Raft index of the topic's latest
	// alter (0: never altered). Produce stamps it on each call; the alter
	// fences every partition with it, so that a partition refuses calls
	// checked against an older contract (partition.ErrContractChanged).
	ContractVersion uint64 `json:"contract_version,omitempty"`
	Contract
}

// Contract is what a topic promises and enforces on every produce; the
// alterable part is changed by AlterTopic.
type Contract struct {
	Ordering        Ordering `json:"ordering,omitempty"`
	RetentionAgeMs  int64    `json:"retention_age_ms,omitempty"`
	RetentionBytes  uint64   `json:"retention_bytes,omitempty"`
	RetentionEvents uint64   `json:"retention_events,omitempty"`
	DefaultTTLMs    int64    `json:"default_ttl_ms,omitempty"`
	MaxTTLMs        int64    `json:"max_ttl_ms,omitempty"`
	DedupeWindowMs  int64    `json:"dedupe_window_ms,omitempty"`
	Schema          string   `json:"schema,omitempty"`
	SchemaVersions  []uint32 `json:"schema_versions,omitempty"`
	RequiredFields  []string `json:"required_fields,omitempty"`
	AutoTenants     bool     `json:"auto_tenants,omitempty"`
	// DeadLetterTopic names the topic consumer groups write an event to
	// once it was delivered max-deliveries times; empty: none. Added with
	// issue 12 (registries without it decode with none).
	DeadLetterTopic string `json:"dead_letter_topic,omitempty"`
	// ProtectedGroups are the consumer groups the topic's producers must
	// not outrun (issue 13; registries without it decode with none). A
	// group need not exist: it protects once it is created.
	ProtectedGroups []ProtectedGroup `json:"protected_groups,omitempty"`
}

// ProtectedGroup is a consumer group a topic protects, with its lags in
// events (0: that stage is off): from SlowLag on the topic's producers are
// slowed on the partition where the group is behind, from PauseLag on they
// are refused. The node checks PauseLag > SlowLag (when both are set)
// before proposing.
type ProtectedGroup struct {
	Group    string `json:"group"`
	SlowLag  uint64 `json:"slow_lag,omitempty"`
	PauseLag uint64 `json:"pause_lag,omitempty"`
}

// Partition is one partition of a topic and the Raft group that holds it.
type Partition struct {
	Index   uint32 `json:"index"`
	GroupID uint64 `json:"group_id"`
	// Replicas are node ids; the first is the preferred leader, and the
	// node's reconciler moves leadership there when it can.
	Replicas []string `json:"replicas"`
	// Live is set (by MarkLive, proposed by the group's first leader) once
	// the group has been bootstrapped and may hold data. A replica without
	// local state bootstraps only while it is false; afterwards it rejoins
	// from its peers as a non-voter.
	Live bool `json:"live,omitempty"`
}

// Tenant is one registered tenant.
type Tenant struct {
	ID                string `json:"id"`
	DisplayName       string `json:"display_name,omitempty"`
	Quota             Quota  `json:"quota"`
	CreatedAtUnixNano int64  `json:"created_at_unix_nano"`
}

// Quota is a tenant's quota (stored, not enforced yet).
type Quota struct {
	EventsPerSec     uint64 `json:"events_per_sec,omitempty"`
	BytesPerSec      uint64 `json:"bytes_per_sec,omitempty"`
	Burst            uint64 `json:"burst,omitempty"`
	MaxInflightBytes uint64 `json:"max_inflight_bytes,omitempty"`
}

// Assignment is one partition replica placed on a node.
type Assignment struct {
	Topic           string
	ContractVersion uint64 // the topic's
	Partition       Partition
}

// registry is the whole state, and the snapshot's JSON document.
type registry struct {
	Version        int                `json:"version"`
	Topics         map[string]*Topic  `json:"topics"`
	NextGroupID    uint64             `json:"next_group_id"`
	Tenants        map[string]*Tenant `json:"tenants,omitempty"`
	NextProducerID uint64             `json:"next_producer_id,omitempty"`
	// Tombstones name the groups of deleted topics (group id -> the Raft
	// index of the delete). A node deletes a group's local data only when
	// its id is here: a group merely absent from the registry (one not
	// replayed yet after a restart) is never deleted.
	Tombstones map[uint64]uint64 `json:"tombstones,omitempty"`
	// AppliedIndex is the index of the last entry the state machine had
	// applied when the snapshot was taken (only set in snapshots).
	AppliedIndex uint64 `json:"applied_index,omitempty"`
}

// newRegistry is the state of a new controller group.
func newRegistry() registry {
	return registry{Version: FormatVersion, Topics: map[string]*Topic{}, NextGroupID: 1,
		Tenants: map[string]*Tenant{}, NextProducerID: 1, Tombstones: map[uint64]uint64{}}
}

// Clone returns a deep copy of c.
func (c Contract) Clone() Contract {
	c.SchemaVersions = append([]uint32(nil), c.SchemaVersions...)
	c.RequiredFields = append([]string(nil), c.RequiredFields...)
	c.ProtectedGroups = append([]ProtectedGroup(nil), c.ProtectedGroups...)
	return c
}

// Clone returns a deep copy of t.
func (t *Topic) Clone() *Topic {
	c := *t
	c.Contract = t.Contract.Clone()
	c.Partitions = make([]Partition, len(t.Partitions))
	for i, p := range t.Partitions {
		c.Partitions[i] = Partition{Index: p.Index, GroupID: p.GroupID, Replicas: append([]string(nil), p.Replicas...), Live: p.Live}
	}
	return &c
}

// sortedTopics returns copies of the topics, sorted by name.
func sortedTopics(topics map[string]*Topic) []*Topic {
	out := make([]*Topic, 0, len(topics))
	for _, t := range topics {
		out = append(out, t.Clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
