package controller

import (
	"encoding/json"
	"fmt"
	"io"

	hraft "github.com/hashicorp/raft"
)

// A snapshot is the registry as one JSON document (registry, with Version
// FormatVersion and the applied index). The format is unchanged since the
// first version; a snapshot written before applied_index existed restores
// with the index at 0 until the next entry applies.

// Snapshot takes the registry as of the last applied entry.
func (f *FSM) Snapshot() (hraft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	// Snapshot runs on the FSM goroutine: applied is stable here.
	reg := f.mu.reg
	reg.AppliedIndex = f.applied.Load()
	data, err := json.Marshal(&reg)
	if err != nil {
		return nil, err
	}
	return snapshot(data), nil
}

// Restore replaces the registry with a snapshot's.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var reg registry
	if err := json.NewDecoder(rc).Decode(&reg); err != nil {
		return fmt.Errorf("controller: restore: %w", err)
	}
	if reg.Version > FormatVersion {
		return fmt.Errorf("controller: snapshot format %d is newer than this binary's %d", reg.Version, FormatVersion)
	}
	if err := reg.checkEntries(); err != nil {
		return fmt.Errorf("controller: restore: %w", err)
	}
	if reg.Topics == nil {
		reg.Topics = map[string]*Topic{}
	}
	if reg.Tenants == nil {
		reg.Tenants = map[string]*Tenant{}
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

// checkEntries refuses a decoded snapshot whose topics or tenants are
// null or filed under another name than their own: every read of the
// registry dereferences them (a null topic made Topics panic, as
// FuzzRestore's seed shows), and the node looks them up by name.
func (reg *registry) checkEntries() error {
	for name, t := range reg.Topics {
		if t == nil || t.Name != name {
			return fmt.Errorf("%w: topic entry %q is null or names another topic", ErrBadSnapshot, name)
		}
	}
	for id, t := range reg.Tenants {
		if t == nil || t.ID != id {
			return fmt.Errorf("%w: tenant entry %q is null or names another tenant", ErrBadSnapshot, id)
		}
	}
	return nil
}

// snapshot is the encoded registry; Persist may run concurrently with
// Apply (it holds its own bytes).
type snapshot []byte

// Persist writes the snapshot.
func (s snapshot) Persist(sink hraft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

// Release implements hraft.FSMSnapshot.
func (s snapshot) Release() {}
