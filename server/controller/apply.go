package controller

import "errors"

// The commands' effects on the registry. Each runs on Raft's FSM goroutine
// (Apply), takes f.mu for writing and returns a copy of what it changed,
// or an error with the registry left unchanged. They are deterministic:
// everything they depend on is in the entry (placement's node list, the
// alter's fields) or in the registry (group ids, the producer counter).

// applyCreateTopic creates a topic; partition i gets the next group id g
// and replicas Nodes[(g + k) mod n] for k < ReplicationFactor.
func (f *FSM) applyCreateTopic(c *CreateTopic) interface{} {
	if c == nil {
		return errors.New("controller: create_topic without a body")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.mu.reg.Topics[c.Name]; ok {
		return &NameError{Err: ErrTopicExists, Name: c.Name}
	}
	if len(c.Nodes) == 0 || int(c.ReplicationFactor) > len(c.Nodes) || c.ReplicationFactor == 0 {
		return &PlacementError{ReplicationFactor: c.ReplicationFactor, Nodes: len(c.Nodes)}
	}
	t := &Topic{
		Name:              c.Name,
		ReplicationFactor: c.ReplicationFactor,
		MaxEventBytes:     c.MaxEventBytes,
		CreatedAtUnixNano: c.CreatedAtUnixNano,
		Contract:          c.Contract.Clone(),
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
		t.Partitions = append(t.Partitions, Partition{Index: i, GroupID: gid, Replicas: replicas})
	}
	f.mu.reg.Topics[c.Name] = t
	return t.Clone()
}

// applyAlterTopic alters a topic's contract and sets its contract version
// to the entry's index.
func (f *FSM) applyAlterTopic(c *AlterTopic, index uint64) interface{} {
	if c == nil {
		return errors.New("controller: alter_topic without a body")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.mu.reg.Topics[c.Name]
	if !ok {
		return &NameError{Err: ErrTopicNotFound, Name: c.Name}
	}
	if err := f.cfg.AlterContract(&t.Contract, c.Contract, c.Fields); err != nil {
		return err
	}
	t.ContractVersion = index
	return t.Clone()
}

// applyDeleteTopic removes a topic and writes a tombstone for each of its
// groups: the replicated fact on which nodes delete the groups' data.
func (f *FSM) applyDeleteTopic(c *DeleteTopic, index uint64) interface{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.mu.reg.Topics[c.Name]
	if !ok {
		return &NameError{Err: ErrTopicNotFound, Name: c.Name}
	}
	delete(f.mu.reg.Topics, c.Name)
	for _, p := range t.Partitions {
		f.mu.reg.Tombstones[p.GroupID] = index
	}
	return t.Clone()
}

// applyMarkLive records that the named groups have been bootstrapped. Ids of
// groups no longer in the registry are ignored.
func (f *FSM) applyMarkLive(c *MarkLive) interface{} {
	want := make(map[uint64]bool, len(c.GroupIDs))
	for _, g := range c.GroupIDs {
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

func (f *FSM) applyCreateTenant(c *CreateTenant) interface{} {
	if c == nil {
		return errors.New("controller: create_tenant without a body")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.mu.reg.Tenants[c.ID]; ok {
		return &NameError{Err: ErrTenantExists, Name: c.ID}
	}
	t := c.Tenant
	f.mu.reg.Tenants[t.ID] = &t
	out := t
	return &out
}

func (f *FSM) applySetTenantQuota(c *SetTenantQuota) interface{} {
	if c == nil {
		return errors.New("controller: set_tenant_quota without a body")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	cur, ok := f.mu.reg.Tenants[c.ID]
	if !ok {
		return &NameError{Err: ErrTenantNotFound, Name: c.ID}
	}
	cur.Quota = c.Quota
	out := *cur
	return &out
}
