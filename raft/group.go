package raft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	hraft "github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

const (
	// DefaultSnapshotRetain is how many snapshots a group keeps on disk.
	DefaultSnapshotRetain = 2
	// logCacheEntries is how many recent log entries a group keeps in memory
	// in front of raft-boltdb (one full append's worth: DefaultConfig's
	// MaxAppendEntries).
	logCacheEntries = 64
	// boltOpenTimeout bounds waiting for the file lock of raft.db, so that a
	// second opener (a bug, or a stale process) fails instead of hanging.
	boltOpenTimeout = 5 * time.Second
	// raftDBFile is the name of a group's raft-boltdb file within its Dir.
	raftDBFile = "raft.db"
)

// IndexedFSM is an FSM that persists the index of the last entry it applied
// together with its data, so that its state survives a restart without a
// snapshot restore (OpenGroup sets NoSnapshotRestoreOnStart for it).
//
// Contract: on restart Raft replays the entries after the newest snapshot,
// which may include entries the FSM has already applied; Apply must skip
// entries at or below AppliedIndex. Every snapshot records the FSM's
// AppliedIndex at the time Snapshot captured it, readable from the start of
// its data with SnapshotAppliedIndex, and Restore leaves AppliedIndex equal
// to that recorded index. AppliedIndex and SnapshotAppliedIndex are called
// before Raft starts; AppliedIndex must be safe to call concurrently with
// Apply.
//
// Why the FSM's own index and not the snapshot's Raft index: hashicorp/raft
// gives a snapshot the index of the last entry its FSM goroutine processed,
// and that counts entries it never hands to the FSM (a Barrier, and a
// Configuration for an FSM that is neither a BatchingFSM nor a
// ConfigurationStore; a Noop does not even reach that goroutine). A snapshot
// taken right after a Barrier has a Raft index above the FSM's applied
// index although the FSM holds all of it, and so does every replica that
// installs it. The entries between the two indexes are all FSM-invisible,
// so an FSM at or above the recorded index holds the snapshot's whole state.
type IndexedFSM interface {
	hraft.FSM
	// AppliedIndex is the index of the last entry whose effects are durable
	// in the FSM's own store (0 when it has none).
	AppliedIndex() uint64
	// SnapshotAppliedIndex reads the applied index recorded in one of this
	// FSM's snapshots from r, the snapshot's data from its start (as
	// FSMSnapshot.Persist wrote it), reading no more than it needs.
	SnapshotAppliedIndex(r io.Reader) (uint64, error)
}

// GroupConfig describes one Raft group replica on this node.
type GroupConfig struct {
	GroupID uint64
	NodeID  string
	// Dir is this group's directory: raft.db (raft-boltdb, fsynced on every
	// append) and snapshots/. Created if missing.
	Dir string
	FSM hraft.FSM
	// Transport is the group's transport, from Mux.Transport(GroupID).
	// OpenGroup takes ownership of it: Group.Close closes it, and so does a
	// failing OpenGroup.
	Transport *Transport
	// Logger receives the group's logs (rate limited, see NewHCLogger).
	// Default: slog.Default().
	Logger *slog.Logger
	// Config is copied; nil means DefaultConfig(NodeID). LocalID is always
	// NodeID, and Logger is always the group's.
	Config *hraft.Config
	// SnapshotRetain is how many snapshots to keep; default 2.
	SnapshotRetain int
}

// Validate reports every problem with c at once, each wrapping
// ErrInvalidOptions. Zero Logger, Config and SnapshotRetain are valid
// (defaults).
func (c *GroupConfig) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: GroupConfig."+format, append([]any{ErrInvalidOptions}, args...)...))
	}
	if c.NodeID == "" {
		bad("NodeID is required")
	}
	if c.Dir == "" {
		bad("Dir is required")
	}
	if c.FSM == nil {
		bad("FSM is required")
	}
	if c.Transport == nil {
		bad("Transport is required")
	} else if c.Transport.GroupID() != c.GroupID {
		bad("Transport carries group %d, not GroupID %d", c.Transport.GroupID(), c.GroupID)
	}
	if c.SnapshotRetain < 0 {
		bad("SnapshotRetain %d must not be negative", c.SnapshotRetain)
	}
	if c.Config != nil && c.NodeID != "" {
		conf := *c.Config
		conf.LocalID = hraft.ServerID(c.NodeID)
		if err := hraft.ValidateConfig(&conf); err != nil {
			bad("Config: %w", err)
		}
	}
	return errors.Join(errs...)
}

// boltOptions are the bbolt options of a group's raft.db as raft-boltdb
// opens it: bbolt's defaults (array freelist, synced; mmap grown on
// demand) but for the lock timeout. Measured against them (issue 15,
// BenchmarkLogStoreStoreLogs and BenchmarkLogStoreOpen in
// logstore_bench_test.go, benchstat): NoFreelistSync with the map freelist
// saved no CPU per StoreLogs and made opening a 10,000-entry raft.db 38
// times slower (2.1 ms to 79 ms: bbolt v1.3 rebuilds the freelist by
// walking every page, and panics rather than fails on a damaged one), too
// slow for a node opening 1,000 groups; the map freelist alone cost 22 %
// more CPU per StoreLogs; a 32 MiB InitialMmapSize changed nothing. Never
// NoSync: the Raft log is the durability source.
func boltOptions() *bbolt.Options {
	return &bbolt.Options{Timeout: boltOpenTimeout, FreelistType: bbolt.FreelistArrayType}
}

// monotonicLogStore is a group's raft-boltdb store as hashicorp/raft sees
// it: a MonotonicLogStore. raft-boltdb does not claim it, and hraft then
// installs a snapshot by compacting only the follower's old entries that
// are TrailingLogs behind its old last index: the rest stay in the log below
// a hole up to the snapshot's index, and VerifyStore cannot tell such a hole
// from lost entries by the log alone. Claiming it makes hraft delete the
// whole old log after installing (or restoring) a snapshot
// (raft.go installSnapshot, api.go Restore: removeOldLogs), so the log
// always continues from the snapshot without a hole. The cost is one bbolt
// transaction deleting the old entries (at most about TrailingLogs +
// SnapshotThreshold of them), on a follower that was far enough behind to
// need a snapshot. Stable-store calls go to the embedded BoltStore.
type monotonicLogStore struct{ *raftboltdb.BoltStore }

var _ hraft.MonotonicLogStore = monotonicLogStore{}

// IsMonotonic implements hraft.MonotonicLogStore.
func (monotonicLogStore) IsMonotonic() bool { return true }

// dropEntriesBelowHole deletes, from the raft.db at path, the entries
// below the last gap in the log when the entries after that gap start at or
// below snapshotIndex+1: what an InstallSnapshot left before the store
// claimed monotonic (see monotonicLogStore), or a crash between an install
// and hraft's removal of the old log. Those entries precede the snapshot, so
// Raft never applies them again, but they may be a deposed leader's entries
// that never committed, and Raft would send them to a follower asking for
// those indexes. A gap above the snapshot is damage (VerifyStore's to
// report): left alone, as is a missing raft.db. It must run before the
// store is opened; it scans keys only.
func dropEntriesBelowHole(path string, snapshotIndex uint64, logger *slog.Logger) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil // bbolt.Open would create it
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: boltOpenTimeout, FreelistType: bbolt.FreelistArrayType})
	if err != nil {
		return fmt.Errorf("open %s: %w", raftDBFile, err)
	}
	// The scan reads only; the common case (no hole) ends there, without
	// the write and fsyncs of an update transaction on every start.
	var stale [][]byte
	err = db.View(func(tx *bbolt.Tx) error {
		logs := tx.Bucket(bucketLogs)
		if logs == nil {
			return nil
		}
		var prev, tailFirst uint64
		c := logs.Cursor()
		for k, _ := c.First(); k != nil && len(k) == 8; k, _ = c.Next() {
			index := binary.BigEndian.Uint64(k)
			if index > snapshotIndex+1 {
				break
			}
			if prev != 0 && index != prev+1 {
				tailFirst = index
			}
			prev = index
		}
		if tailFirst == 0 {
			return nil
		}
		for k, _ := c.First(); k != nil && len(k) == 8 && binary.BigEndian.Uint64(k) < tailFirst; k, _ = c.Next() {
			stale = append(stale, append([]byte(nil), k...))
		}
		return nil
	})
	if err == nil && len(stale) > 0 {
		err = db.Update(func(tx *bbolt.Tx) error {
			logs := tx.Bucket(bucketLogs)
			for _, k := range stale {
				if err := logs.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("drop stale entries below a hole in %s: %w", raftDBFile, err)
	}
	if len(stale) > 0 {
		logger.Warn("raft: dropped stale entries below a hole the newest snapshot covers",
			"first", binary.BigEndian.Uint64(stale[0]), "last", binary.BigEndian.Uint64(stale[len(stale)-1]),
			"entries", len(stale), "snapshot_index", snapshotIndex)
	}
	return nil
}

// Group is one open Raft group replica: hashicorp/raft over raft-boltdb, a
// file snapshot store and a Transport. Its methods are safe for concurrent
// use; Raft() gives the hraft API (Apply, Barrier, ...) directly.
type Group struct {
	id        uint64
	nodeID    hraft.ServerID
	raft      *hraft.Raft
	transport *Transport
	store     *raftboltdb.BoltStore
	dir       string
	logs      hraft.LogStore
	snapshots hraft.SnapshotStore
	logger    *slog.Logger

	closeOnce sync.Once
	closeErr  error
}

// OpenGroup opens (creating if new) the group replica described by cfg and
// starts Raft. For an IndexedFSM it sets NoSnapshotRestoreOnStart and, before
// Raft starts, restores the newest snapshot into the FSM if the FSM is behind
// it (its store lost data or is new; see catchUpFSM), failing with
// ErrFSMBehindSnapshot if the FSM is still behind afterwards. A new group
// has no configuration until BootstrapIfNew or a leader's AppendEntries
// gives it one.
func OpenGroup(cfg GroupConfig) (g *Group, err error) {
	if cfg.Transport != nil {
		defer func() {
			if err != nil {
				_ = cfg.Transport.Close()
			}
		}()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("group", cfg.GroupID)
	retain := cfg.SnapshotRetain
	if retain == 0 {
		retain = DefaultSnapshotRetain
	}
	var conf hraft.Config
	if cfg.Config != nil {
		conf = *cfg.Config
	} else {
		conf = *DefaultConfig(cfg.NodeID)
	}
	conf.LocalID = hraft.ServerID(cfg.NodeID)
	hclogger := newHCLogger(logger, "raft", cfg.Transport.mux.logLimiter)
	conf.Logger = hclogger

	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("raft: group %d: %w", cfg.GroupID, err)
	}
	snapshots, err := hraft.NewFileSnapshotStoreWithLogger(cfg.Dir, retain, hclogger)
	if err != nil {
		return nil, fmt.Errorf("raft: group %d: snapshot store: %w", cfg.GroupID, err)
	}
	if metas, err := snapshots.List(); err != nil {
		return nil, fmt.Errorf("raft: group %d: list snapshots: %w", cfg.GroupID, err)
	} else if len(metas) > 0 {
		if err := dropEntriesBelowHole(filepath.Join(cfg.Dir, raftDBFile), metas[0].Index, logger); err != nil {
			return nil, fmt.Errorf("raft: group %d: %w", cfg.GroupID, err)
		}
	}
	store, err := raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(cfg.Dir, raftDBFile),
		BoltOptions: boltOptions(),
		NoSync:      false, // never: the Raft log is the durability source
	})
	if err != nil {
		return nil, fmt.Errorf("raft: group %d: open %s: %w", cfg.GroupID, raftDBFile, err)
	}
	defer func() {
		if err != nil {
			_ = store.Close()
		}
	}()
	logs, err := hraft.NewLogCache(logCacheEntries, monotonicLogStore{store}) // LogCache passes IsMonotonic on
	if err != nil {
		return nil, fmt.Errorf("raft: group %d: log cache: %w", cfg.GroupID, err)
	}
	if fsm, ok := cfg.FSM.(IndexedFSM); ok {
		conf.NoSnapshotRestoreOnStart = true
		if err := catchUpFSM(fsm, snapshots, logger); err != nil {
			return nil, fmt.Errorf("raft: group %d: %w", cfg.GroupID, err)
		}
	}
	r, err := hraft.NewRaft(&conf, withCommitPush(cfg.FSM, cfg.Transport), logs, store, snapshots, cfg.Transport)
	if err != nil {
		return nil, fmt.Errorf("raft: group %d: start: %w", cfg.GroupID, err)
	}
	cfg.Transport.raft.Store(r)
	return &Group{
		id:        cfg.GroupID,
		nodeID:    conf.LocalID,
		raft:      r,
		transport: cfg.Transport,
		store:     store,
		dir:       cfg.Dir,
		logs:      logs,
		snapshots: snapshots,
		logger:    logger,
	}, nil
}

// catchUpFSM restores the newest snapshot into fsm if fsm is behind it:
// if its applied index is below the applied index recorded in the snapshot
// (see IndexedFSM). With NoSnapshotRestoreOnStart Raft trusts the FSM to
// hold at least the newest snapshot's state and replays only the entries
// after the snapshot's Raft index.
//
// An FSM below the snapshot's Raft index but at or above its recorded index
// is not behind: the entries between are ones the FSM never sees (a Barrier
// last before the snapshot). That is found by reading the snapshot's header,
// once per start, only when the FSM is below the snapshot's Raft index.
func catchUpFSM(fsm IndexedFSM, snapshots hraft.SnapshotStore, logger *slog.Logger) error {
	metas, err := snapshots.List()
	if err != nil {
		return fmt.Errorf("list snapshots: %w", err)
	}
	if len(metas) == 0 {
		return nil
	}
	newest := metas[0] // List sorts newest first
	applied := fsm.AppliedIndex()
	if applied >= newest.Index {
		return nil
	}
	recorded, err := snapshotAppliedIndex(fsm, snapshots, newest)
	if err != nil {
		return err
	}
	if applied >= recorded {
		logger.Debug("raft: fsm holds the newest snapshot's state; the entries up to its raft index are not applied by the fsm",
			"fsm_applied_index", applied, "snapshot_applied_index", recorded, "snapshot_id", newest.ID, "snapshot_index", newest.Index)
		return nil
	}
	logger.Warn("raft: fsm is behind the newest snapshot; restoring it",
		"fsm_applied_index", applied, "snapshot_applied_index", recorded, "snapshot_id", newest.ID, "snapshot_index", newest.Index,
		"snapshot_bytes", newest.Size)
	_, rc, err := snapshots.Open(newest.ID)
	if err != nil {
		return fmt.Errorf("open snapshot %s: %w", newest.ID, err)
	}
	defer rc.Close()
	if err := fsm.Restore(rc); err != nil {
		return fmt.Errorf("restore snapshot %s: %w", newest.ID, err)
	}
	if got := fsm.AppliedIndex(); got < recorded {
		return fmt.Errorf("%w: applied index %d after restoring snapshot %s, which records applied index %d (raft index %d)",
			ErrFSMBehindSnapshot, got, newest.ID, recorded, newest.Index)
	}
	logger.Info("raft: restored fsm from snapshot", "snapshot_id", newest.ID, "snapshot_index", newest.Index,
		"snapshot_applied_index", recorded)
	return nil
}

// snapshotAppliedIndex opens the snapshot meta describes (the store checks
// its CRC) and returns the FSM applied index recorded in it, which cannot
// exceed the snapshot's Raft index.
func snapshotAppliedIndex(fsm IndexedFSM, snapshots hraft.SnapshotStore, meta *hraft.SnapshotMeta) (uint64, error) {
	_, rc, err := snapshots.Open(meta.ID)
	if err != nil {
		return 0, fmt.Errorf("open snapshot %s: %w", meta.ID, err)
	}
	defer rc.Close()
	recorded, err := fsm.SnapshotAppliedIndex(rc)
	if err != nil {
		return 0, fmt.Errorf("snapshot %s: read its applied index: %w", meta.ID, err)
	}
	if recorded > meta.Index {
		return 0, fmt.Errorf("snapshot %s at raft index %d records fsm applied index %d, above it", meta.ID, meta.Index, recorded)
	}
	return recorded, nil
}

// ID is the group's id.
func (g *Group) ID() uint64 { return g.id }

// Raft is the group's hashicorp/raft instance.
func (g *Group) Raft() *hraft.Raft { return g.raft }

// BootstrapIfNew bootstraps the group with servers if this replica has no
// Raft state yet (hraft.HasExistingState is false), and does nothing
// otherwise. Every replica of a new group calls it with the same servers; an
// election follows. A replica that meanwhile got state from a leader is not
// new: hraft.ErrCantBootstrap is not an error here.
func (g *Group) BootstrapIfNew(servers []hraft.Server) error {
	existing, err := hraft.HasExistingState(g.logs, g.store, g.snapshots)
	if err != nil {
		return fmt.Errorf("raft: group %d: existing state: %w", g.id, err)
	}
	if existing {
		return nil
	}
	err = g.raft.BootstrapCluster(hraft.Configuration{Servers: servers}).Error()
	if errors.Is(err, hraft.ErrCantBootstrap) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("raft: group %d: bootstrap: %w", g.id, err)
	}
	g.logger.Info("raft: group bootstrapped", "servers", len(servers))
	return nil
}

// Voter reports whether this replica is a voter in the group's latest
// configuration (false for a non-voter, or when it is not in it).
func (g *Group) Voter() (bool, error) {
	f := g.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return false, fmt.Errorf("raft: group %d: configuration: %w", g.id, err)
	}
	return isVoter(f.Configuration(), g.nodeID), nil
}

// Close shuts Raft down (waiting for it), closes the transport and the
// raft-boltdb store, and then, when all of that succeeded, records the
// group's files so that the next start can skip reading them whole (see
// cleanShutdownFile; a failure to record only costs that start the full
// check). Idempotent: later calls return the first result.
func (g *Group) Close() error {
	g.closeOnce.Do(func() {
		var errs []error
		if err := g.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("raft: group %d: shutdown: %w", g.id, err))
		}
		errs = append(errs, g.transport.Close())
		if err := g.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("raft: group %d: close %s: %w", g.id, raftDBFile, err))
		}
		g.closeErr = errors.Join(errs...)
		if g.closeErr == nil {
			if err := recordCleanShutdown(g.dir, g.id); err != nil {
				g.logger.Warn("raft: the next start will verify this group's files whole", "err", err)
			}
		}
	})
	return g.closeErr
}
