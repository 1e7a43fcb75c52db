package jepsen

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/bbolt"
)

// Raft-log damage of the corrupt nemesis, done to a stopped node: bits
// flipped in, or the tail cut off, the raft.db of one or more of its Raft
// groups (the controller's g0 included). The node must find the damage when
// it starts, move the group aside and rejoin it from its peers (demoted to a
// non-voter, caught up, promoted); nothing acknowledged may be lost.

const (
	// raftDamageGroupsMax bounds the groups one fault damages.
	raftDamageGroupsMax = 3
	// raftFlipsPerFile is how many bytes a flip fault changes in each file.
	raftFlipsPerFile = 3
	// boltMetaBytes is the part of raft.db holding bbolt's two meta pages
	// (4 KiB pages).
	boltMetaBytes = 2 * 4096
)

// raftGroups lists the group directories under dataDir/raft that hold a
// raft.db, sorted by group id.
func raftGroups(dataDir string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(dataDir, "raft"))
	if err != nil {
		return nil, fmt.Errorf("jepsen: corrupt: %w", err)
	}
	type group struct {
		id  uint64
		dir string
	}
	var groups []group
	for _, e := range entries {
		id, err := strconv.ParseUint(strings.TrimPrefix(e.Name(), "g"), 10, 64)
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "g") || err != nil {
			continue
		}
		dir := filepath.Join(dataDir, "raft", e.Name())
		if _, err := os.Stat(filepath.Join(dir, "raft.db")); err == nil {
			groups = append(groups, group{id, dir})
		}
	}
	sort.Slice(groups, func(i, j int) bool { return groups[i].id < groups[j].id })
	out := make([]string, len(groups))
	for i, g := range groups {
		out[i] = g.dir
	}
	return out, nil
}

// damageRaftLogs damages the raft.db of 1..raftDamageGroupsMax groups of a
// stopped node, chosen by pick: flips a bit in raftFlipsPerFile bytes of
// its live leaf pages (log entries, stable store), or (truncate) cuts the
// file in the middle of the pages bbolt uses. It returns which groups it damaged, e.g. "g0,g3".
func damageRaftLogs(dataDir string, pick int, truncate bool) (string, error) {
	groups, err := raftGroups(dataDir)
	if err != nil {
		return "", err
	}
	if len(groups) == 0 {
		return "", fmt.Errorf("jepsen: corrupt: no raft group in %s", dataDir)
	}
	rng := rand.New(rand.NewPCG(uint64(pick), 0x5eed))
	k := 1 + rng.IntN(min(raftDamageGroupsMax, len(groups)))
	start := rng.IntN(len(groups))
	var names []string
	for i := range k {
		dir := groups[(start+i)%len(groups)]
		path := filepath.Join(dir, "raft.db")
		if truncate {
			err = os.Truncate(path, boltUsedBytes(path)/2)
		} else {
			err = flipLeafBytes(path, rng)
		}
		if err != nil {
			return "", fmt.Errorf("jepsen: corrupt: %w", err)
		}
		names = append(names, filepath.Base(dir))
	}
	return strings.Join(names, ","), nil
}

// boltUsedBytes is how much of a bbolt file its pages use (the file is
// often longer: bbolt grows it ahead of need); the file size when it does
// not open.
func boltUsedBytes(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return st.Size()
	}
	defer db.Close()
	used := st.Size()
	_ = db.View(func(tx *bbolt.Tx) error {
		used = min(used, tx.Size())
		return nil
	})
	return used
}

// leafRange is the bytes of one live bbolt leaf page (past its header).
type leafRange struct{ from, to int64 }

// liveLeaves lists the leaf pages bbolt uses in path (the pages holding the
// log entries and the stable store), read through a writable open, which
// loads the freelist and writes nothing for a file raft-boltdb wrote.
func liveLeaves(path string) ([]leafRange, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	pageBytes := int64(db.Info().PageSize)
	var leaves []leafRange
	err = db.View(func(tx *bbolt.Tx) error {
		for id := 2; ; id++ {
			info, err := tx.Page(id)
			if err != nil {
				return err
			}
			if info == nil {
				return nil // past the high-water mark
			}
			if info.Type == "leaf" {
				from := int64(id)*pageBytes + boltPageHeaderBytes
				leaves = append(leaves, leafRange{from, int64(id+1+info.OverflowCount) * pageBytes})
			}
			id += info.OverflowCount
		}
	})
	return leaves, err
}

// boltPageHeaderBytes is the header of every bbolt page.
const boltPageHeaderBytes = 16

// flipLeafBytes flips one bit in raftFlipsPerFile bytes of path, each in a
// live leaf page chosen by rng: flips in free pages (bbolt keeps many, as
// it never overwrites a page in place) would damage nothing.
func flipLeafBytes(path string, rng *rand.Rand) error {
	leaves, err := liveLeaves(path)
	if err != nil {
		return err
	}
	if len(leaves) == 0 {
		return fmt.Errorf("%s: no leaf page in use", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for range raftFlipsPerFile {
		l := leaves[rng.IntN(len(leaves))]
		off := l.from + rng.Int64N(l.to-l.from)
		if off >= int64(len(b)) {
			continue
		}
		b[off] ^= 1 << rng.IntN(8)
	}
	return os.WriteFile(path, b, 0o644)
}
