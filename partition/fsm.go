package partition

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	hraft "github.com/hashicorp/raft"

	heraldlog "github.com/heraldlog/herald/log"
	"github.com/heraldlog/herald/partition/partitionpb"
	heraldraft "github.com/heraldlog/herald/raft"
)

// Assigned is where the FSM put one appended record, or why it refused it.
type Assigned struct {
	Offset   uint64
	Sequence uint64
	// Duplicate: the record was already in the log (same producer and
	// sequence, or same event id within the dedupe window); Offset and
	// Sequence are the original's and nothing was appended.
	Duplicate bool
	// Err is a refusal that wrote nothing for this record (nor for the
	// rest of its produce call): the partition's refusal errors
	// (errors.go) or *ContractChangedError.
	Err error
}

// ProducerIdleMax is how long the partition remembers an idempotent
// producer that has sent nothing; after it, a returning producer is treated
// as new (its next sequence is accepted as a fresh start) and retries of
// its older events are no longer recognised as duplicates.
const ProducerIdleMax = 24 * time.Hour

// appendResult is the FSM's response to one append entry, read by the
// batcher from the ApplyFuture on the leader.
type appendResult struct {
	assigned []Assigned
	err      error
}

// FSM is one partition replica's state machine: it applies committed append
// commands to the partition's Pebble log, assigning offsets and tenant
// sequences in log order.
//
// hashicorp/raft calls ApplyBatch, Apply, Snapshot and Restore from one
// goroutine; FSMSnapshot.Persist runs concurrently with later applies. Apply
// is idempotent by Raft index: entries at or below the applied index stored
// with the data (a restart replays them) are skipped.
type FSM struct {
	groupID uint64
	log     *heraldlog.Partition
	logger  *slog.Logger
	// onApply is called after each committed batch with the new high
	// watermark; it must not block (it wakes subscribers).
	onApply func(highWatermark uint64)
	// onCorruption is called before apply stops the node on damaged
	// storage, so that the node can rebuild its log on the next start.
	onCorruption func(error)
	// onRaftDamage is called before apply stops the node on an entry that
	// is damaged in this replica's Raft log (ErrDamagedCommand), so that the
	// replica rejoins from its peers on the next start.
	onRaftDamage func(error)
	// metrics counts snapshots and restores; nil counts nothing.
	metrics *Metrics
	// activity, when set, learns the tenants of every applied append.
	activity *TenantActivity
	// applyMu is held while a batch applies. Raft applies from one
	// goroutine, so it is never contended in a node; a test holds it to
	// keep a replica's state machine behind its Raft log.
	applyMu sync.Mutex
}

var (
	_ hraft.BatchingFSM     = (*FSM)(nil)
	_ heraldraft.IndexedFSM = (*FSM)(nil)
)

// NewFSM returns the state machine of a partition over its log.
func NewFSM(groupID uint64, log *heraldlog.Partition, logger *slog.Logger, onApply func(uint64)) *FSM {
	if onApply == nil {
		onApply = func(uint64) {}
	}
	return &FSM{groupID: groupID, log: log, logger: logger, onApply: onApply, onCorruption: func(error) {}, onRaftDamage: func(error) {}}
}

// stop ends the node on a storage failure during apply: skipping the entry
// would let the replicas diverge. Damage to the log is reported first, so
// that the next start rebuilds it from the Raft log and snapshots.
func (f *FSM) stop(index uint64, what string, err error) {
	if heraldlog.IsCorruption(err) {
		f.onCorruption(err)
	}
	panic(fmt.Sprintf("partition %d: raft index %d: %s: %v", f.groupID, index, what, err))
}

// AppliedIndex is the Raft index of the last entry whose effects are in the
// log; it is stored in the same Pebble batch as the data.
func (f *FSM) AppliedIndex() uint64 { return f.log.AppliedIndex() }

// SnapshotAppliedIndex reads the applied index recorded at the start of one
// of the FSM's snapshots (the log's snapshot header): the index Restore
// leaves the FSM at. Raft's own index of that snapshot may be higher, by
// Barrier entries the FSM never sees (see raft.IndexedFSM).
func (f *FSM) SnapshotAppliedIndex(r io.Reader) (uint64, error) {
	return heraldlog.SnapshotAppliedIndex(r)
}

// Apply applies one entry.
func (f *FSM) Apply(l *hraft.Log) interface{} {
	return f.ApplyBatch([]*hraft.Log{l})[0]
}

// ApplyBatch applies committed entries in one Pebble batch whose applied
// index is the last entry's. A storage failure here cannot be skipped (the
// replicas would diverge), so it panics and stops the node loudly.
func (f *FSM) ApplyBatch(logs []*hraft.Log) []interface{} {
	f.applyMu.Lock()
	defer f.applyMu.Unlock()
	results := make([]interface{}, len(logs))
	applied := f.log.AppliedIndex()
	batch := f.log.NewBatch()
	last := applied
	for i, l := range logs {
		if l.Index <= applied {
			continue // replayed after a restart: already in the log
		}
		last = l.Index
		if l.Type != hraft.LogCommand {
			continue
		}
		decoded, err := decodeCommand(l.Data)
		if err != nil {
			if errors.Is(err, ErrDamagedCommand) {
				f.onRaftDamage(fmt.Errorf("raft index %d: %w", l.Index, err))
			}
			panic(fmt.Sprintf("partition %d: raft index %d: %v", f.groupID, l.Index, err))
		}
		switch cmd := decoded.(type) {
		case *partitionpb.AppendCommand:
			results[i] = f.applyAppend(batch, l.Index, cmd)
		case *partitionpb.TrimCommand:
			results[i] = f.applyTrim(batch, l.Index, cmd)
		case *partitionpb.ContractCommand:
			results[i] = f.applyContract(batch, l.Index, cmd)
		default:
			results[i] = f.applyGroup(batch, l.Index, cmd)
		}
	}
	if last == applied {
		batch.Abort()
		return results
	}
	if err := batch.Commit(last); err != nil {
		f.stop(last, "commit", err)
	}
	f.onApply(f.log.HighWatermark())
	return results
}

func (f *FSM) applyAppend(batch *heraldlog.Batch, index uint64, cmd *partitionpb.AppendCommand) *appendResult {
	assigned := make([]Assigned, len(cmd.Records))
	reqs := appendRequests(cmd)
	contract, err := batch.ContractVersion()
	if err != nil {
		f.stop(index, "read contract version", err)
	}
	calls := producerRequests{records: cmd.Records, reqs: reqs, contract: contract}
	for j := range cmd.Records {
		refused, err := calls.refusal(batch, j)
		if err != nil {
			f.stop(index, "check producer", err)
		}
		if refused != nil {
			assigned[j] = Assigned{Err: refused}
			continue
		}
		res, err := batch.AppendRecord(reqs[j])
		switch {
		case err == nil:
			assigned[j] = Assigned{Offset: res.Offset, Sequence: res.Sequence, Duplicate: res.Duplicate}
		case isDeterministicRefusal(err):
			// Deterministic refusal, decided by the entry alone: every
			// replica refuses it the same way and nothing is written. (The
			// server validates first; this keeps a bad entry from stopping
			// the partition.)
			assigned[j] = Assigned{Err: refusal(err)}
		default:
			f.stop(index, "append", err)
		}
	}
	if f.activity != nil {
		f.activity.record(f.groupID, entryTenants(cmd.Records))
	}
	return &appendResult{assigned: assigned}
}

// contractResult is the FSM's answer to a contract fence: the version in
// force after it.
type contractResult struct {
	version uint64
}

func (f *FSM) applyContract(batch *heraldlog.Batch, index uint64, cmd *partitionpb.ContractCommand) *contractResult {
	v, err := batch.FenceContract(cmd.Version)
	if err != nil {
		f.stop(index, fmt.Sprintf("fence contract %d", cmd.Version), err)
	}
	return &contractResult{version: v}
}

// trimResult is the FSM's answer to a trim entry.
type trimResult struct {
	lowWatermark uint64
	expired      int
}

func (f *FSM) applyTrim(batch *heraldlog.Batch, index uint64, cmd *partitionpb.TrimCommand) *trimResult {
	if cmd.TruncateBefore > 0 {
		if err := batch.TruncateBefore(cmd.TruncateBefore); err != nil {
			f.stop(index, fmt.Sprintf("truncate before %d", cmd.TruncateBefore), err)
		}
	}
	expired, err := batch.ExpireDedupe(cmd.NowUnixNano, time.Duration(cmd.ProducerIdleMs)*time.Millisecond)
	if err != nil {
		f.stop(index, "expire dedupe", err)
	}
	return &trimResult{lowWatermark: cmd.TruncateBefore, expired: expired}
}

// Snapshot captures the partition at the current applied index. Pebble is
// made durable up to it before Persist completes (a WAL sync here, or a
// memtable flush that runs while Persist streams; see
// heraldlog.Partition.Snapshot), so a snapshot in the store never runs
// ahead of what a restart finds on disk.
func (f *FSM) Snapshot() (hraft.FSMSnapshot, error) {
	snap, err := f.log.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("partition %d: snapshot: %w", f.groupID, err)
	}
	return &fsmSnapshot{snap: snap, metrics: f.metrics}, nil
}

// Restore replaces the partition's contents with a snapshot stream.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if err := f.log.Restore(rc); err != nil {
		return fmt.Errorf("partition %d: restore: %w", f.groupID, err)
	}
	f.metrics.observeRestore()
	f.logger.Info("restored partition from snapshot", "group", f.groupID,
		"applied_index", f.log.AppliedIndex(), "high_watermark", f.log.HighWatermark())
	f.onApply(f.log.HighWatermark())
	return nil
}

type fsmSnapshot struct {
	snap    *heraldlog.Snapshot
	metrics *Metrics
}

// Persist streams the snapshot into the sink; it runs concurrently with
// later applies, reading a Pebble point-in-time snapshot.
func (s *fsmSnapshot) Persist(sink hraft.SnapshotSink) error {
	if _, err := s.snap.WriteTo(sink); err != nil {
		_ = sink.Cancel()
		return err
	}
	if err := sink.Close(); err != nil {
		return err
	}
	s.metrics.observeSnapshot()
	return nil
}

func (s *fsmSnapshot) Release() { _ = s.snap.Close() }

// entryTenants returns the distinct tenants of an entry's records (calls
// keep a tenant's records together, so comparing with the last one found
// is usually enough).
func entryTenants(records []*partitionpb.AppendRecord) []string {
	var out []string
	for _, r := range records {
		if len(out) > 0 && out[len(out)-1] == r.TenantId {
			continue
		}
		if !slices.Contains(out, r.TenantId) {
			out = append(out, r.TenantId)
		}
	}
	return out
}
