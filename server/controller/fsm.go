package controller

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	hraft "github.com/hashicorp/raft"
)

// GroupID is the controller's Raft group id on every node.
const GroupID uint64 = 0

// Config is what the node gives the state machine.
type Config struct {
	// AlterContract copies the named alterable fields of src into c, or
	// refuses an unknown name and leaves c unchanged. Apply calls it for
	// AlterTopic, so it must be deterministic: the same answer for the same
	// input on every replica and every version (the list of alterable
	// fields is append-only). The node checks a request with the same
	// function before it proposes it. Required.
	AlterContract func(c *Contract, src Contract, fields []string) error
	// OnDamage is told about an entry found damaged in this replica's Raft
	// log, just before Apply stops the node, so that the next start rejoins
	// from the peers. Optional.
	OnDamage func(error)
}

// FSM is the registry state machine, the FSM of Raft group 0 (GroupID).
// Apply, Snapshot, Restore and StoreConfiguration run on Raft's FSM
// goroutine; the read calls (read.go) are safe for concurrent use and
// return copies.
type FSM struct {
	cfg Config
	mu  struct {
		sync.RWMutex
		reg registry
	}
	// changed gets a token after every change (capacity 1; never blocks).
	changed chan struct{}

	// applied is the index of the last entry this state machine has
	// applied (commands and configurations; hashicorp/raft's own
	// AppliedIndex counts entries queued, not applied). appliedWaits is
	// closed and replaced after every advance.
	applied      atomic.Uint64
	appliedMu    sync.Mutex
	appliedWaits chan struct{}
}

var (
	_ hraft.FSM                = (*FSM)(nil)
	_ hraft.ConfigurationStore = (*FSM)(nil)
)

// NewFSM returns the state machine of a new (empty) registry; Raft
// restores it from its snapshot and log.
func NewFSM(cfg Config) (*FSM, error) {
	if cfg.AlterContract == nil {
		return nil, errors.New("controller: Config.AlterContract is required")
	}
	if cfg.OnDamage == nil {
		cfg.OnDamage = func(error) {}
	}
	f := &FSM{cfg: cfg, changed: make(chan struct{}, 1), appliedWaits: make(chan struct{})}
	f.mu.reg = newRegistry()
	return f, nil
}

// setApplied records that the entry at index has been applied.
func (f *FSM) setApplied(index uint64) {
	f.applied.Store(index)
	f.appliedMu.Lock()
	close(f.appliedWaits)
	f.appliedWaits = make(chan struct{})
	f.appliedMu.Unlock()
}

// StoreConfiguration is called by Raft for every configuration entry, in log
// order with Apply; it only advances the applied index, so that
// configuration entries count for ReadIndex.
func (f *FSM) StoreConfiguration(index uint64, _ hraft.Configuration) {
	f.setApplied(index)
}

// signal hands the Changed channel a token.
func (f *FSM) signal() {
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

// Apply applies one entry. Its result, for the proposer, is the command's:
// *Topic (CreateTopic, AlterTopic, DeleteTopic), *Tenant (CreateTenant,
// SetTenantQuota), ProducerGrant (InitProducer), the number of groups
// marked (MarkLive), or an error when the command was refused (the
// registry is then unchanged). An entry it cannot decode stops the node
// (a panic, after Config.OnDamage when the entry is damaged): skipping it
// would let the replicas diverge.
func (f *FSM) Apply(l *hraft.Log) interface{} {
	defer f.setApplied(l.Index)
	if l.Type != hraft.LogCommand {
		return nil
	}
	decoded, err := decodeEntry(l.Data)
	switch {
	case errors.Is(err, errLegacyRefused):
		return fmt.Errorf("%w at index %d", err, l.Index)
	case err != nil:
		if errors.Is(err, ErrDamagedEntry) {
			// This replica's copy is damaged (the leader checksummed
			// it): the next start moves the controller's Raft state
			// aside and rejoins.
			f.cfg.OnDamage(fmt.Errorf("raft index %d: %w", l.Index, err))
		}
		panic(fmt.Sprintf("controller: raft index %d: %v", l.Index, err))
	}
	var res interface{}
	switch cmd := decoded.(type) {
	case *CreateTopic:
		res = f.applyCreateTopic(cmd)
	case *AlterTopic:
		res = f.applyAlterTopic(cmd, l.Index)
	case *DeleteTopic:
		res = f.applyDeleteTopic(cmd, l.Index)
	case *MarkLive:
		res = f.applyMarkLive(cmd)
	case *CreateTenant:
		res = f.applyCreateTenant(cmd)
	case *SetTenantQuota:
		res = f.applySetTenantQuota(cmd)
	case *InitProducer:
		// The producer counter is no registry change anyone waits for.
		f.mu.Lock()
		grant := f.grantProducerLocked(cmd)
		f.mu.Unlock()
		return grant
	}
	f.signal()
	return res
}

// CheckEntry verifies one stored Raft entry of the controller group
// without applying it: a framed entry must pass its checksum and decode,
// an entry of the first, unchecked form must at least be JSON. It is the
// raft.EntryChecker the node verifies the controller's Raft log with
// before opening it.
func CheckEntry(l *hraft.Log) error {
	if l.Type != hraft.LogCommand || len(l.Data) == 0 {
		return nil
	}
	if l.Data[0] == entryLegacyJSON {
		if !json.Valid(l.Data) {
			return fmt.Errorf("%w: %w: unchecked entry is not JSON", ErrBadEntry, ErrDamagedEntry)
		}
		return nil
	}
	if _, err := decodeEntry(l.Data); err != nil && !errors.Is(err, errLegacyRefused) {
		return err
	}
	return nil
}
