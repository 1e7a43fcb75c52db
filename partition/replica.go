package partition

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	hraft "github.com/hashicorp/raft"

	heraldlog "github.com/heraldlog/herald/log"
	"github.com/heraldlog/herald/partition/partitionpb"
	heraldraft "github.com/heraldlog/herald/raft"
)

// ReplicaConfig is what a node needs to open one replica of a partition.
type ReplicaConfig struct {
	GroupID uint64
	NodeID  string
	// Dir holds the group's Raft log (raft-boltdb) and snapshots.
	Dir       string
	Log       *heraldlog.Partition
	Transport *heraldraft.Transport
	// Servers is the group's initial configuration; every replica of a new
	// group bootstraps the same one. Ignored when the group has state.
	Servers []hraft.Server
	Logger  *slog.Logger
	Metrics *Metrics
	Batcher BatcherOptions
	// Raft overrides the Raft configuration; nil uses raft.DefaultConfig.
	Raft *hraft.Config
	// OnCorruption, when set, is told about damaged storage found while
	// applying, just before the replica stops the node.
	OnCorruption func(error)
	// OnRaftDamage, when set, is told about an entry found damaged in this
	// replica's Raft log while applying, just before the replica stops the
	// node (the node marks the group for rejoin).
	OnRaftDamage func(error)
	// Limits gives each tenant's share of its quota on this partition, for
	// the admission controller's token buckets; nil: no quotas.
	Limits TenantLimits
	// Activity, when set, is told which tenants each applied entry carried
	// (on every replica), so that the node can split quotas over the
	// partitions tenants use (see TenantActivity).
	Activity *TenantActivity
	// Rejoining opens the group without bootstrapping it, whatever its
	// state: the replica lost its Raft state, was demoted to a non-voter by
	// the leader and gets everything from it (see raft.PrepareRejoin).
	Rejoining bool
}

// Validate reports every problem at once.
func (c *ReplicaConfig) Validate() error {
	var errs []error
	if c.GroupID == 0 {
		errs = append(errs, errors.New("partition: group id 0 is the controller's"))
	}
	if c.NodeID == "" || c.Dir == "" {
		errs = append(errs, errors.New("partition: node id and dir are required"))
	}
	if c.Log == nil || c.Transport == nil {
		errs = append(errs, errors.New("partition: log and transport are required"))
	}
	if len(c.Servers) == 0 && !c.Rejoining {
		errs = append(errs, errors.New("partition: at least one server is required"))
	}
	if err := c.Batcher.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Transport != nil && c.Batcher.EntryBytesMax > c.Transport.EntryBytesMax() {
		errs = append(errs, fmt.Errorf("partition: Batcher.EntryBytesMax %d is more than one raft message carries (%d): such entries could never replicate",
			c.Batcher.EntryBytesMax, c.Transport.EntryBytesMax()))
	}
	return errors.Join(errs...)
}

// Replica is one node's replica of one partition: its Raft group, its FSM
// over the node's Pebble log, and (when leader) its batcher.
//
// All methods are safe for concurrent use. Close must be called once the
// replica is no longer needed; calls after Close fail with ErrClosed.
type Replica struct {
	cfg      ReplicaConfig
	group    *heraldraft.Group
	fsm      *FSM
	batcher  *Batcher
	notifier *notifier
	lagGuard atomic.Pointer[LagGuard]
	// admission holds the tenants' token buckets (used while leading).
	admission *admission
}

// OpenReplica opens (or creates and bootstraps) a replica.
func OpenReplica(cfg ReplicaConfig) (*Replica, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Replica{cfg: cfg, notifier: newNotifier()}
	r.admission = newAdmission(cfg.GroupID, cfg.Limits, cfg.Metrics, time.Now)
	logger := cfg.Logger.With("group", cfg.GroupID)
	r.fsm = NewFSM(cfg.GroupID, cfg.Log, logger, func(uint64) { r.notifier.notify() })
	r.fsm.metrics = cfg.Metrics
	r.fsm.activity = cfg.Activity
	if cfg.OnCorruption != nil {
		r.fsm.onCorruption = cfg.OnCorruption
	}
	if cfg.OnRaftDamage != nil {
		r.fsm.onRaftDamage = cfg.OnRaftDamage
	}
	group, err := heraldraft.OpenGroup(heraldraft.GroupConfig{
		GroupID:   cfg.GroupID,
		NodeID:    cfg.NodeID,
		Dir:       cfg.Dir,
		FSM:       r.fsm,
		Transport: cfg.Transport,
		Logger:    cfg.Logger, // OpenGroup adds the group attribute
		Config:    cfg.Raft,
	})
	if err != nil {
		return nil, fmt.Errorf("partition %d: open raft group: %w", cfg.GroupID, err)
	}
	r.group = group
	if !cfg.Rejoining {
		if err := group.BootstrapIfNew(cfg.Servers); err != nil {
			_ = group.Close()
			return nil, fmt.Errorf("partition %d: bootstrap: %w", cfg.GroupID, err)
		}
	}
	b, err := NewBatcher(cfg.GroupID, group.Raft(), cfg.Batcher, logger, cfg.Metrics)
	if err != nil {
		_ = group.Close()
		return nil, err
	}
	r.batcher = b
	return r, nil
}

// GroupID is the partition's cluster-wide Raft group id.
func (r *Replica) GroupID() uint64 { return r.cfg.GroupID }

// Log is the partition's log on this node; any replica may serve reads
// below its high watermark (only committed entries are applied).
func (r *Replica) Log() *heraldlog.Partition { return r.cfg.Log }

// Raft exposes the group, for leadership transfer and status.
func (r *Replica) Raft() *hraft.Raft { return r.group.Raft() }

// IsLeader reports whether this replica currently leads.
func (r *Replica) IsLeader() bool { return r.group.Raft().State() == hraft.Leader }

// Leader returns the current leader's address and id as this replica knows them.
func (r *Replica) Leader() (addr, id string) {
	a, i := r.group.Raft().LeaderWithID()
	return string(a), string(i)
}

// Produce admits one produce call's records (already validated against
// their topic's contract at contractVersion, and encoded), proposes them
// and waits for commit on a quorum and apply here; it returns each
// record's Assigned position in order, and the throttle hint for the
// producer's next call (zero when healthy). The state machine decides the
// producer rules and the contract fence for the call as a whole: either
// every record is appended (or answered as a duplicate) or none is.
//
// Admission (admission.go) comes first: the protected consumer groups'
// lag (LagGuard), the tenants' token buckets (ReplicaConfig.Limits), the
// batcher's byte bounds; a refusal there matches ErrThrottled.
//
// Errors that wrote nothing: ErrNotLeader, ErrClosed, *EntryTooLargeError,
// *QueueFullError, *QuotaError, *LagError, *ContractChangedError and the
// refusals of the producer rules (*OutOfOrderError, *ProducerFencedError,
// ErrSequenceTooOld, ErrUnknownProducer, ErrInvalidRecord); ctx's error
// alone when it ended before the call was proposed. ErrUnknownOutcome:
// proposed; may or may not commit.
func (r *Replica) Produce(ctx context.Context, contractVersion uint64, records []Record) ([]Assigned, time.Duration, error) {
	if !r.IsLeader() {
		return nil, 0, ErrNotLeader
	}
	costs := recordCosts(records)
	lag := r.lagPressure()
	if lag.Pause {
		for _, c := range costs {
			r.cfg.Metrics.observeRefused(c.tenant, refusedConsumerLag)
		}
		return nil, 0, &LagError{Pressure: lag, RetryAfter: lagRetryAfter}
	}
	tk, quotaThrottle, err := r.admission.take(costs)
	if err != nil {
		var qe *QuotaError
		if errors.As(err, &qe) {
			r.cfg.Metrics.observeRefused(qe.Tenant, refusedTenantQuota)
		}
		return nil, 0, err
	}
	assigned, queueThrottle, err := r.batcher.Submit(ctx, appendRecords(contractVersion, records), tk.queuedBytesMax)
	if err != nil {
		if !errors.Is(err, ErrUnknownOutcome) {
			tk.giveBack() // nothing written
		}
		return nil, 0, err
	}
	r.cfg.Metrics.observeAdmitted(r.cfg.GroupID, costs)
	throttle := max(quotaThrottle, queueThrottle, lag.Throttle)
	if throttle > 0 {
		limit := refusedTenantQuota
		switch throttle {
		case lag.Throttle:
			limit = refusedConsumerLag
		case queueThrottle:
			limit = refusedPartitionQueue
		}
		for _, c := range costs {
			r.cfg.Metrics.observeThrottled(c.tenant, limit)
		}
	}
	return assigned, throttle, nil
}

// recordCosts sums a call's events and bytes per tenant, in the order the
// tenants first appear.
func recordCosts(records []Record) []tenantCost {
	costs := make([]tenantCost, 0, 1)
	for i := range records {
		rec := &records[i]
		k := len(costs) - 1
		if k < 0 || costs[k].tenant != rec.TenantID {
			k = slices.IndexFunc(costs, func(c tenantCost) bool { return c.tenant == rec.TenantID })
			if k < 0 {
				costs = append(costs, tenantCost{tenant: rec.TenantID})
				k = len(costs) - 1
			}
		}
		costs[k].events++
		costs[k].bytes += float64(len(rec.Event))
	}
	return costs
}

// catchUpWaitMax bounds CatchUp when ctx has no earlier deadline.
const catchUpWaitMax = 5 * time.Second

// CatchUp returns once this replica, as leader, has applied every entry
// acknowledged before the call, so that its high watermark covers every
// acknowledged offset: it takes a read index (leadership confirmed by a
// quorum, no log write) and waits for its FSM to apply up to it.
//
// A leader's own high watermark is not enough without it: a newly elected
// leader applies the previous term's entries only once an entry of its own
// term commits, and a restarted node replays its Raft log into the FSM
// after it may already have been elected, so for a while its high
// watermark can lie below offsets the previous leader acknowledged.
//
// Errors: ErrNotLeader (not, or no longer, the leader); ctx's error; an
// error matching context.DeadlineExceeded when the read index is not
// applied within catchUpWaitMax; a Raft failure. None of them changes
// anything: CatchUp writes nothing.
func (r *Replica) CatchUp(ctx context.Context) error {
	wait := catchUpWaitMax
	if d, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(d))
	}
	if wait <= 0 {
		return context.DeadlineExceeded
	}
	idx, err := r.group.ReadIndex(wait, r.cfg.Log.AppliedIndex, false)
	if err != nil {
		if errors.Is(err, heraldraft.ErrNotLeader) {
			return fmt.Errorf("%w: partition %d: %v", ErrNotLeader, r.cfg.GroupID, err)
		}
		return err
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		changed := r.Changed()
		if r.cfg.Log.AppliedIndex() >= idx {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			return fmt.Errorf("partition %d: applied index %d did not reach read index %d within %s: %w",
				r.cfg.GroupID, r.cfg.Log.AppliedIndex(), idx, wait, context.DeadlineExceeded)
		}
	}
}

// Changed returns a channel closed the next time the log grows: take it
// before reading the high watermark, then wait on it.
func (r *Replica) Changed() <-chan struct{} { return r.notifier.wait() }

// Status is a replica's Raft and log position.
type Status struct {
	State         string
	LeaderID      string
	Term          uint64
	CommitIndex   uint64
	AppliedIndex  uint64
	LastLogIndex  uint64
	HighWatermark uint64
	LowWatermark  uint64
}

// Status reads the replica's current status.
func (r *Replica) Status() Status {
	rf := r.group.Raft()
	stats := rf.Stats()
	_, leaderID := rf.LeaderWithID()
	parse := func(k string) uint64 {
		v, _ := strconv.ParseUint(stats[k], 10, 64)
		return v
	}
	return Status{
		State:         rf.State().String(),
		LeaderID:      string(leaderID),
		Term:          parse("term"),
		CommitIndex:   rf.CommitIndex(),
		AppliedIndex:  r.cfg.Log.AppliedIndex(),
		LastLogIndex:  rf.LastIndex(),
		HighWatermark: r.cfg.Log.HighWatermark(),
		LowWatermark:  r.cfg.Log.LowWatermark(),
	}
}

// Close stops the batcher (failing queued calls with ErrClosed) and shuts
// the Raft group down. The log partition stays open: it belongs to the node.
func (r *Replica) Close() error {
	r.batcher.Close()
	r.cfg.Metrics.forgetPartition(r.cfg.GroupID)
	return r.group.Close()
}

// FenceContract commits a contract fence at version into the partition's
// log and returns the version in force after it: from then on produce
// calls checked against an older contract of the topic are refused
// (*ContractChangedError). Errors: ErrNotLeader (not proposed),
// ErrUnknownOutcome (proposed; fencing again is harmless).
func (r *Replica) FenceContract(version uint64) (uint64, error) {
	if !r.IsLeader() {
		return 0, ErrNotLeader
	}
	data, err := encodeContract(&partitionpb.ContractCommand{Version: version})
	if err != nil {
		return 0, err
	}
	future := r.group.Raft().Apply(data, r.cfg.Batcher.EnqueueTimeout)
	if err := future.Error(); err != nil {
		return 0, classifyApplyError(err)
	}
	res, ok := future.Response().(*contractResult)
	if !ok || res == nil {
		return 0, fmt.Errorf("%w: partition %d: contract fence applied without a result", ErrUnknownOutcome, r.cfg.GroupID)
	}
	return res.version, nil
}

// ContractVersion returns the contract version this replica has applied.
func (r *Replica) ContractVersion() (uint64, error) { return r.cfg.Log.ContractVersion() }

// Trim proposes a trim entry (truncate before an offset, expire dedupe
// state) and waits for it to apply. Only the leader may call it usefully.
func (r *Replica) Trim(truncateBefore uint64, now time.Time) error {
	if !r.IsLeader() {
		return ErrNotLeader
	}
	data, err := encodeTrim(&partitionpb.TrimCommand{
		TruncateBefore: truncateBefore,
		NowUnixNano:    now.UnixNano(),
		ProducerIdleMs: ProducerIdleMax.Milliseconds(),
	})
	if err != nil {
		return err
	}
	if err := r.group.Raft().Apply(data, r.cfg.Batcher.EnqueueTimeout).Error(); err != nil {
		return classifyApplyError(err)
	}
	return nil
}
