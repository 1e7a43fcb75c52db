package raft

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-msgpack/v2/codec"
	hraft "github.com/hashicorp/raft"
	"go.etcd.io/bbolt"
)

// EntryChecker verifies the payload of one stored LogCommand entry (for
// example its checksum) and returns an error when it is damaged. It is
// called by VerifyStore on the caller's goroutine, one entry at a time.
type EntryChecker func(*hraft.Log) error

const (
	// verifyEntriesMax bounds the entries VerifyStore decodes and checks.
	// Raft keeps about TrailingLogs+SnapshotThreshold entries after a
	// snapshot (18,432 by default); entries past the bound are counted for
	// gaps but not decoded.
	verifyEntriesMax = 1 << 20
	// verifySnapshotsMax bounds the snapshots VerifyStore reads (each is
	// read whole to check its CRC); a group keeps SnapshotRetain of them.
	verifySnapshotsMax = 16
	// boltPageBytesMin is the smallest page bbolt uses; a raft.db shorter
	// than two of them cannot hold its meta pages.
	boltPageBytesMin = 1024
	// snapshotsDir is where hraft's file snapshot store keeps snapshots.
	snapshotsDir = "snapshots"
	// snapshotTmpSuffix marks a snapshot still being written (hraft skips it).
	snapshotTmpSuffix = ".tmp"
)

// Keys of hraft's stable store and buckets of raft-boltdb.
var (
	keyCurrentTerm  = []byte("CurrentTerm")
	keyLastVoteTerm = []byte("LastVoteTerm")
	bucketLogs      = []byte("logs")
	bucketConf      = []byte("conf")
)

// VerifyStore checks the stored Raft state of the group directory dir (as
// OpenGroup lays it out) without changing it, and returns an error matching
// ErrDamaged (a *DamageError with the reason) when it is damaged:
//
//   - raft.db does not open, is shorter than bbolt's high-water mark
//     (truncated), misses its buckets, or fails bbolt's consistency check
//     (pages both used and free, unreachable pages);
//   - the stable store's terms are not 8-byte integers;
//   - an entry does not decode, carries another index, a term that goes
//     backwards (within a run of consecutive entries) or exceeds
//     CurrentTerm, an unknown type, a configuration that does not decode, or
//     (LogCommand) a payload check rejects;
//   - a snapshot's metadata does not parse or its data fails its CRC;
//   - the log does not continue from the newest snapshot: entries missing
//     above it (a gap after the snapshot's index, or entries compacted away
//     with no snapshot covering them), or raft.db is missing while
//     snapshots exist.
//
// A gap that the newest snapshot covers (the entries after it start at or
// below the snapshot's index + 1) is not damage: it is what hashicorp/raft
// leaves when it installs a snapshot on a log store it does not treat as
// monotonic (the follower's old entries stay below the snapshot; OpenGroup's
// store now claims monotonic, which removes them, but stores written before,
// or a crash between the install and that removal, still hold them). Entries
// below such a gap are stale: Raft never reads them (they precede its last
// snapshot) and its next compaction deletes them. They are still decoded
// and checked like the others.
//
// A directory without raft.db and snapshots is a new group: nil. Other
// errors (the file is locked by another process) do not match ErrDamaged.
// bbolt reads through mmap, and a damaged page can send it to an address
// outside the file; VerifyStore turns such faults and panics into damage.
// It must not run while the group is open; check may be nil.
func VerifyStore(dir string, check EntryChecker) (err error) {
	damaged := func(format string, args ...any) error {
		return &DamageError{Dir: dir, Reason: fmt.Sprintf(format, args...)}
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = damaged("reading it panicked: %v", p)
		}
	}()
	snapshots, err := verifySnapshots(dir, damaged)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, raftDBFile)
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		if len(snapshots) > 0 {
			return damaged("%s is missing but %d snapshots exist", raftDBFile, len(snapshots))
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("raft: verify %s: %w", path, err)
	}
	if st.Size() < 2*boltPageBytesMin {
		return damaged("%s is %d bytes, too short for its meta pages (truncated)", raftDBFile, st.Size())
	}
	if _, err := verifyBoltMeta(path, damaged); err != nil {
		return err
	}
	span, err := verifyBolt(path, st.Size(), check, damaged)
	if err != nil {
		return err
	}
	if span.last == 0 {
		return nil
	}
	newest := uint64(0)
	if len(snapshots) > 0 {
		newest = snapshots[0].Index
	}
	switch {
	case span.tailFirst <= newest+1:
		return nil
	case span.tailFirst == span.first:
		return damaged("the log starts at index %d but the newest snapshot covers only up to %d", span.first, newest)
	default:
		return damaged("log gap: index %d follows %d, above the newest snapshot (index %d)", span.tailFirst, span.beforeTail, newest)
	}
}

// logSpan is where a raft.db's entries lie: first..last, of which
// tailFirst..last are consecutive; beforeTail is the entry before the last
// gap (0 without a gap, when tailFirst == first).
type logSpan struct {
	first, last, tailFirst, beforeTail uint64
}

// bbolt's meta page layout (go.etcd.io/bbolt v1.3.x, file format version
// 2): a 16-byte page header, then magic, version, page size, flags (4 bytes
// each), the root bucket (16), the freelist, high-water and transaction ids
// (8 each) and an FNV-64a checksum of everything before it.
const (
	boltPageHeaderBytes  = 16
	boltMetaChecksumAt   = 56
	boltMagic            = 0xED0CDAED
	boltVersion          = 2
	boltDefaultPageBytes = 4096
)

// verifyBoltMeta checks both meta pages of a bbolt file. bbolt itself
// opens a file with one damaged meta page silently, using the other one:
// when the damaged one was the newer, that rolls the store back by one
// transaction, losing the entries of the last append this replica may have
// acknowledged. So either meta page failing is damage here.
//
// It returns the newer of the two pages' transaction ids (the 8 bytes
// before the checksum), which the clean-shutdown record compares.
func verifyBoltMeta(path string, damaged func(string, ...any) error) (txid uint64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("raft: verify %s: %w", path, err)
	}
	defer f.Close()
	pageBytes := boltDefaultPageBytes
	for i := range 2 {
		buf := make([]byte, boltPageHeaderBytes+boltMetaChecksumAt+8)
		if _, err := f.ReadAt(buf, int64(i*pageBytes)); err != nil {
			return 0, damaged("meta page %d unreadable: %v", i, err)
		}
		meta := buf[boltPageHeaderBytes:]
		le := binary.LittleEndian // bbolt writes its structs in host order; Herald runs on little-endian hosts
		h := fnv.New64a()
		_, _ = h.Write(meta[:boltMetaChecksumAt])
		switch {
		case le.Uint32(meta[0:4]) != boltMagic:
			return 0, damaged("meta page %d: bad magic", i)
		case le.Uint32(meta[4:8]) != boltVersion:
			return 0, damaged("meta page %d: version %d", i, le.Uint32(meta[4:8]))
		case h.Sum64() != le.Uint64(meta[boltMetaChecksumAt:]):
			return 0, damaged("meta page %d: checksum mismatch (bbolt would silently fall back to the other, possibly older, meta page)", i)
		}
		if i == 0 {
			pageBytes = int(le.Uint32(meta[8:12]))
			if pageBytes < boltPageBytesMin || pageBytes > 1<<16 {
				return 0, damaged("meta page 0: page size %d", pageBytes)
			}
		}
		txid = max(txid, le.Uint64(meta[boltMetaChecksumAt-8:]))
	}
	return txid, nil
}

// verifyBolt checks raft.db and returns where its entries lie.
func verifyBolt(path string, size int64, check EntryChecker, damaged func(string, ...any) error) (span logSpan, err error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: boltOpenTimeout})
	if errors.Is(err, bbolt.ErrTimeout) {
		return logSpan{}, fmt.Errorf("raft: verify %s: locked by another process: %w", path, err)
	}
	if err != nil {
		return logSpan{}, damaged("open %s: %v", raftDBFile, err)
	}
	err = db.View(func(tx *bbolt.Tx) error {
		// Truncation first: every later read could fault past the end.
		if need := tx.Size(); need > size {
			return damaged("%s is %d bytes but its pages reach %d (truncated)", raftDBFile, size, need)
		}
		conf := tx.Bucket(bucketConf)
		logs := tx.Bucket(bucketLogs)
		if conf == nil || logs == nil {
			return damaged("%s misses its logs or conf bucket", raftDBFile)
		}
		currentTerm, err := stableUint64(conf, keyCurrentTerm)
		if err != nil {
			return damaged("%v", err)
		}
		if _, err := stableUint64(conf, keyLastVoteTerm); err != nil {
			return damaged("%v", err)
		}
		span, err = verifyEntries(logs, currentTerm, check)
		if err != nil {
			return damaged("%v", err)
		}
		return nil
	})
	if cerr := db.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("raft: verify %s: close: %w", path, cerr)
	}
	if err != nil {
		return logSpan{}, err
	}
	// bbolt's consistency check needs the freelist, which only a writable
	// open loads. It runs on a goroutine of its own, which a fault would
	// crash: it comes after the scan above has read every live page.
	return span, checkBoltConsistency(path, damaged)
}

// checkBoltConsistency runs bbolt's Tx.Check on a writable open of path
// (which writes nothing: raft-boltdb always syncs its freelist).
func checkBoltConsistency(path string, damaged func(string, ...any) error) error {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: boltOpenTimeout, FreelistType: bbolt.FreelistArrayType})
	if errors.Is(err, bbolt.ErrTimeout) {
		return fmt.Errorf("raft: verify %s: locked by another process: %w", path, err)
	}
	if err != nil {
		return damaged("open %s for its consistency check: %v", raftDBFile, err)
	}
	defer db.Close()
	var problems []string
	err = db.View(func(tx *bbolt.Tx) error {
		for perr := range tx.Check() { // drained whole: the checker goroutine ends
			if len(problems) < 3 {
				problems = append(problems, perr.Error())
			}
		}
		return nil
	})
	if err != nil {
		return damaged("consistency check of %s: %v", raftDBFile, err)
	}
	if len(problems) > 0 {
		return damaged("consistency check of %s: %s", raftDBFile, strings.Join(problems, "; "))
	}
	return nil
}

// stableUint64 reads one of hraft's integer keys: absent is 0, anything but
// 8 bytes is damage.
func stableUint64(conf *bbolt.Bucket, key []byte) (uint64, error) {
	v := conf.Get(key)
	if v == nil {
		return 0, nil
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("stable key %s is %d bytes, not 8", key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// verifyEntries scans the logs bucket in key order. A gap is returned in
// the span, for the caller to judge against the newest snapshot; terms are
// compared only within a run of consecutive entries (the stale entries
// below a gap may come from a term the entries after it never saw).
func verifyEntries(logs *bbolt.Bucket, currentTerm uint64, check EntryChecker) (span logSpan, err error) {
	var prevTerm uint64
	checked := 0
	c := logs.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(k) != 8 {
			return logSpan{}, fmt.Errorf("log key %x is not an 8-byte index", k)
		}
		index := binary.BigEndian.Uint64(k)
		switch {
		case span.first == 0:
			span.first, span.tailFirst = index, index
		case index != span.last+1:
			span.tailFirst, span.beforeTail = index, span.last
			prevTerm = 0
		}
		span.last = index
		if checked >= verifyEntriesMax {
			continue
		}
		checked++
		var l hraft.Log
		if err := codec.NewDecoder(bytes.NewReader(v), &codec.MsgpackHandle{}).Decode(&l); err != nil {
			return logSpan{}, fmt.Errorf("entry %d does not decode: %v", index, err)
		}
		if l.Index != index {
			return logSpan{}, fmt.Errorf("entry stored at index %d says index %d", index, l.Index)
		}
		if l.Term == 0 || l.Term < prevTerm {
			return logSpan{}, fmt.Errorf("entry %d has term %d after term %d", index, l.Term, prevTerm)
		}
		if currentTerm > 0 && l.Term > currentTerm {
			return logSpan{}, fmt.Errorf("entry %d has term %d above the current term %d", index, l.Term, currentTerm)
		}
		prevTerm = l.Term
		if err := verifyEntry(&l, check); err != nil {
			return logSpan{}, fmt.Errorf("entry %d: %w", index, err)
		}
	}
	if span.last > 0 && currentTerm == 0 {
		return logSpan{}, fmt.Errorf("log holds entries %d..%d but the current term is missing", span.first, span.last)
	}
	return span, nil
}

// verifyEntry checks what an entry's type says its data must be.
func verifyEntry(l *hraft.Log, check EntryChecker) (err error) {
	switch l.Type {
	case hraft.LogCommand:
		if check != nil {
			return check(l)
		}
	case hraft.LogNoop, hraft.LogBarrier:
		if len(l.Data) != 0 {
			return fmt.Errorf("%s entry carries %d bytes", l.Type, len(l.Data))
		}
	case hraft.LogConfiguration:
		defer func() { // DecodeConfiguration panics on bad input
			if p := recover(); p != nil {
				err = fmt.Errorf("configuration does not decode: %v", p)
			}
		}()
		if len(hraft.DecodeConfiguration(l.Data).Servers) == 0 {
			return errors.New("configuration has no servers")
		}
	case hraft.LogAddPeerDeprecated, hraft.LogRemovePeerDeprecated:
	default:
		return fmt.Errorf("unknown entry type %d", l.Type)
	}
	return nil
}

// verifySnapshots opens every snapshot of dir (hraft checks the data's CRC
// on open) and returns their metadata, newest first. A snapshot directory
// whose metadata hraft cannot read is damage: hraft would skip it silently.
func verifySnapshots(dir string, damaged func(string, ...any) error) ([]*hraft.SnapshotMeta, error) {
	entries, err := os.ReadDir(filepath.Join(dir, snapshotsDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("raft: verify %s: %w", dir, err)
	}
	want := map[string]bool{}
	for _, e := range entries {
		if e.IsDir() && !strings.HasSuffix(e.Name(), snapshotTmpSuffix) {
			want[e.Name()] = true
		}
	}
	if len(want) == 0 {
		return nil, nil
	}
	if len(want) > verifySnapshotsMax {
		return nil, damaged("%d snapshots, more than the %d a group keeps", len(want), verifySnapshotsMax)
	}
	store, err := hraft.NewFileSnapshotStoreWithLogger(dir, verifySnapshotsMax, hclog.NewNullLogger())
	if err != nil {
		return nil, fmt.Errorf("raft: verify %s: snapshot store: %w", dir, err)
	}
	metas, err := store.List()
	if err != nil {
		return nil, fmt.Errorf("raft: verify %s: list snapshots: %w", dir, err)
	}
	for _, m := range metas {
		delete(want, m.ID)
		_, rc, err := store.Open(m.ID) // reads it whole to check its CRC
		if err != nil {
			return nil, damaged("snapshot %s: %v", m.ID, err)
		}
		_ = rc.Close()
	}
	for id := range want {
		return nil, damaged("snapshot %s: metadata unreadable", id)
	}
	return metas, nil
}

// storedAddressesScanMax bounds the entries StoredAddresses reads back
// from the end of a log looking for a configuration.
const storedAddressesScanMax = 1 << 16

// StoredAddresses returns, best effort, the server addresses of the latest
// configuration stored in the group directory dir (the newest
// configuration entry of raft.db, else the newest snapshot's), for a node
// that needs its peers' addresses without a running group (a rejoin of the
// controller on a node started without --peers). Damage or absence gives
// nil. It must not run while the group is open.
func StoredAddresses(dir string) (addrs []string) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if recover() != nil {
			addrs = nil
		}
	}()
	fromConfig := func(c hraft.Configuration) []string {
		var out []string
		for _, s := range c.Servers {
			out = append(out, string(s.Address))
		}
		return out
	}
	path := filepath.Join(dir, raftDBFile)
	if _, err := verifyBoltMeta(path, func(string, ...any) error { return ErrDamaged }); err == nil {
		if db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second}); err == nil {
			_ = db.View(func(tx *bbolt.Tx) error {
				logs := tx.Bucket(bucketLogs)
				if logs == nil {
					return nil
				}
				c := logs.Cursor()
				k, v := c.Last()
				for i, next := 0, uint64(0); k != nil && i < storedAddressesScanMax && addrs == nil; i++ {
					// Entries below a gap predate the newest snapshot (see
					// VerifyStore): its configuration is newer than theirs.
					if len(k) != 8 {
						break
					}
					index := binary.BigEndian.Uint64(k)
					if next != 0 && index+1 != next {
						break
					}
					next = index
					var l hraft.Log
					if codec.NewDecoder(bytes.NewReader(v), &codec.MsgpackHandle{}).Decode(&l) == nil && l.Type == hraft.LogConfiguration {
						addrs = fromConfig(hraft.DecodeConfiguration(l.Data))
					}
					k, v = c.Prev()
				}
				return nil
			})
			_ = db.Close()
		}
	}
	if addrs != nil {
		return addrs
	}
	if _, err := os.Stat(filepath.Join(dir, snapshotsDir)); err != nil {
		return nil // the store would create the directory
	}
	store, err := hraft.NewFileSnapshotStoreWithLogger(dir, verifySnapshotsMax, hclog.NewNullLogger())
	if err != nil {
		return nil
	}
	if metas, err := store.List(); err == nil && len(metas) > 0 {
		return fromConfig(metas[0].Configuration)
	}
	return nil
}
