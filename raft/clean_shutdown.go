package raft

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// A group closed cleanly leaves a record of what its files looked like
// (cleanShutdownFile in its directory). The next start compares the files
// with it and, when nothing has been written since, skips VerifyStore's full
// read: every snapshot read whole for its CRC, every entry decoded, and
// bbolt's page-by-page consistency check. With a thousand groups and
// gigabytes of snapshots that read dominates a node's start-up.
//
// What the skip gives up, and why it is safe enough:
//   - Damage comes from writes that did not finish (a crash, a full disk)
//     and from writes by something else (an operator, a bad restore, the
//     corrupt nemesis). Both change a file's size or modification time
//     (the record sets each file's time a second back, to a value no
//     later write leaves), or bbolt's transaction id; any difference, or
//     no record at all (a crash: Close never ran), means the full check,
//     as before.
//   - What it does not find is a medium that changes bytes by itself after
//     a clean shutdown. Entries still carry their checksum, checked at
//     apply (partition.CheckEntry), and a snapshot's CRC is checked when it
//     is installed or restored; damage found while running marks the group
//     for a rejoin (MarkDamaged). PrepareRejoinOptions.VerifyFull (serve
//     --raft-verify-full) forces the full check after a suspected disk
//     fault.
//
// The record needs no fsync: a record lost or torn by a crash does not
// parse or does not match, and the full check runs. It is removed when it
// is used; a stale one cannot match anyway, since opening the store writes
// a new bbolt transaction (raft-boltdb creates its buckets in one).
const cleanShutdownFile = "clean-shutdown.json"

// cleanShutdownVersion is the record's format; another version is ignored.
const cleanShutdownVersion = 1

// fileStamp is what a clean shutdown remembers of one file.
type fileStamp struct {
	// Name is relative to the group directory, with forward slashes.
	Name    string `json:"name"`
	Size    int64  `json:"size"`
	ModTime int64  `json:"mod_time_ns"`
}

// cleanShutdown is the record of a group's files at a clean Close.
type cleanShutdown struct {
	Version int    `json:"version"`
	Group   uint64 `json:"group"`
	// BoltTxID is the newer of raft.db's two meta pages' transaction ids.
	BoltTxID uint64      `json:"bolt_txid"`
	Files    []fileStamp `json:"files"`
}

// stampGroupFiles stamps raft.db and every file of the finished snapshots
// in dir, sorted by name. Snapshots still being written (.tmp) are left
// out: the snapshot store ignores them.
func stampGroupFiles(dir string) ([]fileStamp, error) {
	var stamps []fileStamp
	stamp := func(rel string) error {
		st, err := os.Stat(filepath.Join(dir, rel))
		if err != nil {
			return err
		}
		stamps = append(stamps, fileStamp{Name: filepath.ToSlash(rel), Size: st.Size(), ModTime: st.ModTime().UnixNano()})
		return nil
	}
	if err := stamp(raftDBFile); err != nil {
		return nil, err
	}
	root := filepath.Join(dir, snapshotsDir)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path == root {
				return nil
			}
			return err
		}
		if d.IsDir() {
			if path != root && strings.HasSuffix(d.Name(), snapshotTmpSuffix) {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		return stamp(rel)
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(stamps, func(a, b fileStamp) int { return strings.Compare(a.Name, b.Name) })
	return stamps, nil
}

// boltTxID returns the newer transaction id of raft.db's two meta pages,
// or an error when they are not both valid (verifyBoltMeta).
func boltTxID(path string) (uint64, error) {
	return verifyBoltMeta(path, func(format string, args ...any) error { return fmt.Errorf(format, args...) })
}

// recordCleanShutdown writes dir's clean-shutdown record for group. It is
// called after the group's store is closed, and only when Close succeeded.
func recordCleanShutdown(dir string, group uint64) error {
	txid, err := boltTxID(filepath.Join(dir, raftDBFile))
	if err != nil {
		return fmt.Errorf("raft: group %d: clean-shutdown record: %w", group, err)
	}
	files, err := stampGroupFiles(dir)
	if err != nil {
		return fmt.Errorf("raft: group %d: clean-shutdown record: %w", group, err)
	}
	// File times are kept at the kernel's clock tick (milliseconds), so a
	// write right after the last one may leave a file's time as it was.
	// Each file's time is set a second back instead, to a value no later
	// write can give it (a write sets the time to now).
	for i := range files {
		back := time.Unix(0, files[i].ModTime).Add(-time.Second)
		if err := os.Chtimes(filepath.Join(dir, filepath.FromSlash(files[i].Name)), time.Time{}, back); err != nil {
			return fmt.Errorf("raft: group %d: clean-shutdown record: %w", group, err)
		}
		files[i].ModTime = back.UnixNano()
	}
	b, err := json.Marshal(cleanShutdown{Version: cleanShutdownVersion, Group: group, BoltTxID: txid, Files: files})
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, cleanShutdownFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("raft: group %d: clean-shutdown record: %w", group, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, cleanShutdownFile)); err != nil {
		return fmt.Errorf("raft: group %d: clean-shutdown record: %w", group, err)
	}
	return nil
}

// unchangedSinceCleanShutdown reports whether dir holds a clean-shutdown
// record for group that its files still match (same files, sizes,
// modification times and bbolt transaction id; both meta pages valid). It
// removes the record either way: it describes one start only.
func unchangedSinceCleanShutdown(dir string, group uint64) bool {
	path := filepath.Join(dir, cleanShutdownFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	_ = os.Remove(path)
	var rec cleanShutdown
	if err := json.Unmarshal(b, &rec); err != nil || rec.Version != cleanShutdownVersion || rec.Group != group {
		return false
	}
	files, err := stampGroupFiles(dir)
	if err != nil || !slices.Equal(files, rec.Files) {
		return false
	}
	txid, err := boltTxID(filepath.Join(dir, raftDBFile))
	return err == nil && txid == rec.BoltTxID
}
