package controller

import "sort"

// The registry's read calls. Each is safe for concurrent use with Apply
// and returns copies; what it answers is this replica's registry as of its
// last applied entry, which may be behind the leader's. A read that must
// not miss an acknowledged change (a "not found") first waits until
// AppliedIndex reaches a read index from the leader (the node's
// syncRegistry).

// AppliedIndex is the index of the last entry this state machine has
// applied: commands, configurations, and the index carried by a restored
// snapshot. Unlike hashicorp/raft's AppliedIndex it never counts entries
// only queued for apply.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// AppliedAdvanced returns a channel closed at the next advance of
// AppliedIndex. Take it before reading AppliedIndex, so that no advance
// falls between the two.
func (f *FSM) AppliedAdvanced() <-chan struct{} {
	f.appliedMu.Lock()
	defer f.appliedMu.Unlock()
	return f.appliedWaits
}

// Changed is the change signal: it holds a token after any number of
// registry changes (every command but InitProducer, and every restore)
// since the last receive. It has capacity 1 and never blocks Apply, so it
// suits one consumer that re-reads the registry on each token (the node's
// reconciler); a second receiver would steal the first one's tokens.
func (f *FSM) Changed() <-chan struct{} { return f.changed }

// Topic returns a copy of one topic.
func (f *FSM) Topic(name string) (*Topic, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	t, ok := f.mu.reg.Topics[name]
	if !ok {
		return nil, false
	}
	return t.Clone(), true
}

// Topics returns copies of every topic, sorted by name.
func (f *FSM) Topics() []*Topic {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return sortedTopics(f.mu.reg.Topics)
}

// AssignedTo lists the partitions with a replica on node, by topic name
// and partition index.
func (f *FSM) AssignedTo(node string) []Assignment {
	var out []Assignment
	for _, t := range f.Topics() {
		for _, p := range t.Partitions {
			for _, r := range p.Replicas {
				if r == node {
					out = append(out, Assignment{Topic: t.Name, ContractVersion: t.ContractVersion, Partition: p})
					break
				}
			}
		}
	}
	return out
}

// Tombstoned reports whether group gid belongs to a deleted topic: the
// one fact on which a node deletes a group's local data.
func (f *FSM) Tombstoned(gid uint64) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	_, ok := f.mu.reg.Tombstones[gid]
	return ok
}

// TombstoneIndex is the Raft index of the delete that tombstoned gid (0 if none).
func (f *FSM) TombstoneIndex(gid uint64) uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.mu.reg.Tombstones[gid]
}

// Tenant returns a copy of one tenant.
func (f *FSM) Tenant(id string) (*Tenant, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	t, ok := f.mu.reg.Tenants[id]
	if !ok {
		return nil, false
	}
	c := *t
	return &c, true
}

// Tenants returns copies of every tenant, sorted by id.
func (f *FSM) Tenants() []*Tenant {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]*Tenant, 0, len(f.mu.reg.Tenants))
	for _, t := range f.mu.reg.Tenants {
		c := *t
		out = append(out, &c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
