package server

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	heraldlog "github.com/heraldlog/herald/log"
)

// A Pebble directory that cannot be opened because it is damaged is moved
// aside, and the node starts with an empty log (to rebuild from Raft).
func TestStartMovesAnUnopenableLogAside(t *testing.T) {
	dir := t.TempDir()
	pebbleDir := filepath.Join(dir, "pebble")
	db, err := heraldlog.Open(heraldlog.Options{Dir: pebbleDir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	lp, err := db.Partition(1)
	if err != nil {
		t.Fatal(err)
	}
	b := lp.NewBatch()
	if _, _, err := b.Append("acme", 1, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(1); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// Damage every write-ahead log and manifest beyond their first bytes.
	files, _ := filepath.Glob(filepath.Join(pebbleDir, "*"))
	for _, f := range files {
		base := filepath.Base(f)
		if !strings.HasPrefix(base, "MANIFEST") && !strings.HasSuffix(base, ".log") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i := 8; i < len(data); i += 3 {
			data[i] ^= 0xff
		}
		if err := os.WriteFile(f, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n, err := StartNode(Config{NodeID: "n1", DataDir: dir, GRPCAddr: gl.Addr().String(), HTTPAddr: hl.Addr().String(),
		Peers: map[string]string{"n1": gl.Addr().String()}, Logger: testLogger(t), GRPCListener: gl, HTTPListener: hl})
	if err != nil {
		t.Fatalf("node did not start over a damaged log: %v", err)
	}
	n.Close()
	moved, _ := filepath.Glob(filepath.Join(dir, "pebble.corrupt-*"))
	if len(moved) != 1 {
		t.Fatalf("damaged log not moved aside: %v", moved)
	}
	if kept, _ := filepath.Glob(filepath.Join(moved[0], "MANIFEST-*")); len(kept) == 0 {
		t.Fatal("quarantined log lost its files")
	}
}
