package raft

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// A replica whose stored Raft state is damaged has forgotten entries it may
// have acknowledged, so it must not vote or count toward a commit until it
// holds them again. It rejoins its group in stages, each persisted in a
// marker file beside the group directory (<dir>.rejoin) before the next one
// starts, so that a crash anywhere resumes safely:
//
//  1. damaged: the damage was found (PrepareRejoin at open, or the state
//     machine at apply via MarkDamaged). The group directory is moved aside
//     (<dir>.damaged-<unix nanoseconds>) and the group must not be
//     bootstrapped nor started: its Raft would have an empty configuration
//     and grant any vote it is asked for. The caller asks the group's
//     leader to demote the replica to a non-voter (Mux.AskLeader with
//     RejoinStep DEMOTE) and records the index the leader answered with.
//  2. demoted: Raft starts with empty state, without bootstrap; the leader
//     sends it entries or a snapshot, and it never counts in votes or
//     commits. Once it has applied up to the recorded index the caller asks
//     for PROMOTE and, when that is committed, removes the marker.
//
// The marker is JSON, version 1 (fields are only ever added).

// RejoinStage is a persisted stage of a rejoin. Persisted: append-only.
type RejoinStage string

// Rejoin stages.
const (
	// RejoinDamaged: the group directory is (being) moved aside; the
	// replica must be demoted before Raft starts.
	RejoinDamaged RejoinStage = "damaged"
	// RejoinDemoted: the leader committed the demotion; Raft runs as a
	// non-voter until it has applied CatchUpIndex, then asks for promotion.
	RejoinDemoted RejoinStage = "demoted"
)

// rejoinMarkerVersion is the format version written in every marker.
const rejoinMarkerVersion = 1

// RejoinMarker is the persisted state of one group's rejoin.
type RejoinMarker struct {
	Version    int         `json:"version"`
	Group      uint64      `json:"group"`
	DetectedAt time.Time   `json:"detected_at"`
	Reason     string      `json:"reason"`
	Stage      RejoinStage `json:"stage"`
	// CatchUpIndex is the leader's last index when it committed the
	// demotion (stage demoted): the replica asks for promotion once it has
	// applied this far.
	CatchUpIndex uint64 `json:"catch_up_index,omitempty"`
	// MovedTo lists where damaged directories were moved, newest last.
	MovedTo []string `json:"moved_to,omitempty"`
}

// RejoinMarkerPath is the marker file of the group directory dir.
func RejoinMarkerPath(dir string) string { return filepath.Clean(dir) + ".rejoin" }

// ReadRejoinMarker returns dir's marker, or nil when there is none. A marker
// that exists but does not parse is returned as stage damaged: the safe
// reading, since the stage it held is unknown.
func ReadRejoinMarker(dir string, group uint64) (*RejoinMarker, error) {
	b, err := os.ReadFile(RejoinMarkerPath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("raft: read rejoin marker: %w", err)
	}
	var m RejoinMarker
	if err := json.Unmarshal(b, &m); err != nil || (m.Stage != RejoinDamaged && m.Stage != RejoinDemoted) {
		return &RejoinMarker{Version: rejoinMarkerVersion, Group: group, DetectedAt: time.Now().UTC(),
			Reason: fmt.Sprintf("rejoin marker unreadable (%q)", truncateForReason(b)), Stage: RejoinDamaged}, nil
	}
	return &m, nil
}

func truncateForReason(b []byte) string {
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

// WriteRejoinMarker persists m as dir's marker: written to a temporary
// file, fsynced, renamed over the old marker and the parent directory
// fsynced, so a crash leaves either the old marker or the new one.
func WriteRejoinMarker(dir string, m *RejoinMarker) error {
	m.Version = rejoinMarkerVersion
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("raft: encode rejoin marker: %w", err)
	}
	if err := WriteFileDurably(RejoinMarkerPath(dir), append(b, '\n')); err != nil {
		return fmt.Errorf("raft: write rejoin marker: %w", err)
	}
	return nil
}

// WriteFileDurably replaces path with b so that a crash leaves either the
// old file or the whole new one: it writes and fsyncs path+".tmp", renames
// it over path and fsyncs the directory. Markers of the rejoin stages use
// it (here and in server/).
func WriteFileDurably(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := writeFileSync(tmp, b); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// RemoveRejoinMarker deletes dir's marker (the rejoin is over); no marker
// is not an error.
func RemoveRejoinMarker(dir string) error {
	if err := os.Remove(RejoinMarkerPath(dir)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("raft: remove rejoin marker: %w", err)
	}
	return syncDir(filepath.Dir(filepath.Clean(dir)))
}

// MarkDamaged records that group's stored state in dir is damaged (found
// while the group runs, e.g. a command failing its checksum at apply): the
// next PrepareRejoin moves dir aside and the replica rejoins. An existing
// damaged marker keeps its first detection.
func MarkDamaged(dir string, group uint64, reason string) error {
	if m, err := ReadRejoinMarker(dir, group); err == nil && m != nil && m.Stage == RejoinDamaged {
		return nil
	}
	return WriteRejoinMarker(dir, &RejoinMarker{Group: group, DetectedAt: time.Now().UTC(), Reason: reason, Stage: RejoinDamaged})
}

// PrepareRejoin decides, before a group is opened, whether its replica
// must rejoin, and returns the marker to follow (nil: open normally):
//
//   - a marker at stage damaged: dir is moved aside if still there;
//   - no marker, or stage demoted: dir is verified (VerifyStore with
//     check); damage writes a damaged marker, then moves dir aside. A
//     verified demoted replica keeps its state and resumes waiting.
//
// Errors other than damage (I/O, a locked file) are returned as they are:
// the caller should retry later rather than rejoin.
//
// A group whose files are unchanged since it was last closed cleanly is not
// read whole again (see cleanShutdownFile) unless opts.VerifyFull.
func PrepareRejoin(dir string, group uint64, check EntryChecker, opts PrepareOptions) (*RejoinMarker, error) {
	m, err := ReadRejoinMarker(dir, group)
	if err != nil {
		return nil, err
	}
	if m == nil || m.Stage == RejoinDemoted {
		var verr error
		clean := unchangedSinceCleanShutdown(dir, group) && !opts.VerifyFull
		if !clean {
			verr = VerifyStore(dir, check)
		}
		if opts.Checked != nil {
			opts.Checked(!clean)
		}
		if verr == nil {
			return m, nil
		}
		if !errors.Is(verr, ErrDamaged) {
			return nil, verr
		}
		prev := m
		m = &RejoinMarker{Group: group, DetectedAt: time.Now().UTC(), Reason: verr.Error(), Stage: RejoinDamaged}
		if prev != nil {
			m.MovedTo = prev.MovedTo
		}
		// The marker first: a crash after it moves the directory aside at
		// the next start instead of opening it.
		if err := WriteRejoinMarker(dir, m); err != nil {
			return nil, err
		}
	}
	moved, err := QuarantineGroup(dir)
	if err != nil {
		return nil, err
	}
	if moved != "" {
		m.MovedTo = append(m.MovedTo, moved)
		if err := WriteRejoinMarker(dir, m); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// PrepareOptions tunes PrepareRejoin.
type PrepareOptions struct {
	// VerifyFull runs VerifyStore even on a group unchanged since its last
	// clean shutdown (after a suspected disk fault).
	VerifyFull bool
	// Checked, when set, is told whether the stored state was read whole
	// (full) or found unchanged since a clean shutdown. It is not called for
	// a group already marked damaged.
	Checked func(full bool)
}

// QuarantineGroup moves the group directory dir aside, to
// <dir>.damaged-<unix nanoseconds>, keeping it for inspection; it returns
// the new path, or "" when dir does not exist.
func QuarantineGroup(dir string) (string, error) {
	dir = filepath.Clean(dir)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	moved := fmt.Sprintf("%s.damaged-%d", dir, time.Now().UnixNano())
	if err := os.Rename(dir, moved); err != nil {
		return "", fmt.Errorf("raft: move damaged group aside: %w", err)
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return "", err
	}
	return moved, nil
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("raft: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("raft: sync %s: %w", dir, err)
	}
	return nil
}
