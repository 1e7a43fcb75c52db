package controller

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"reflect"
	"testing"

	hraft "github.com/hashicorp/raft"
)

// FuzzDecodeEntry: a controller Raft entry decodes to a command whose
// encoding decodes to an encoding-equal command, or fails with ErrBadEntry
// or errLegacyRefused; a command that decodes applies to a registry
// without a panic; CheckEntry agrees with the decoder. The fixCRC flag
// rewrites a framed entry's CRC first, so that the fuzzer reaches the JSON
// behind it (docs/operations.md, "Fuzz targets").
func FuzzDecodeEntry(f *testing.F) {
	for _, cmd := range everyCommand() {
		data, err := Encode(cmd)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, false)
		f.Add(data[:len(data)-2], true)
	}
	f.Add([]byte(`{"version":1,"op":"create_tenant","create_tenant":{"id":"acme"}}`), false)
	f.Add([]byte(`{"version":1,"op":"create_topic"}`), false)
	f.Add(legacyChecked(`{"version":1,"op":"mark_live","mark_live":[1,2]}`), false)
	f.Add([]byte{}, false)
	f.Add([]byte{byte(OpMarkLive)}, false)
	f.Add([]byte{byte(OpCreateTopic), 0, 0, 0, 0, '{', '}'}, true)

	f.Fuzz(func(t *testing.T, data []byte, fixCRC bool) {
		if fixCRC && len(data) >= frameHeaderBytes {
			data = bytes.Clone(data)
			body := data[frameHeaderBytes:]
			sum := frameChecksum(data[0], body)
			if data[0] == entryLegacyChecked {
				sum = crc32.Checksum(body, castagnoli)
			}
			binary.BigEndian.PutUint32(data[1:frameHeaderBytes], sum)
		}
		cmd, err := decodeEntry(data)
		checkErr := CheckEntry(&hraft.Log{Type: hraft.LogCommand, Data: data})
		if err != nil {
			if !errors.Is(err, ErrBadEntry) && !errors.Is(err, errLegacyRefused) {
				t.Fatalf("decode error %v is neither ErrBadEntry nor a refusal", err)
			}
			if errors.Is(err, ErrBadEntry) && checkErr == nil {
				t.Fatalf("CheckEntry accepts an entry decode refuses (%v)", err)
			}
			return
		}
		if checkErr != nil {
			t.Fatalf("CheckEntry refuses an entry that decodes: %v", checkErr)
		}
		if cmd != nil && !reflect.ValueOf(cmd).IsNil() {
			// JSON is not canonical: encode(decode(encode(cmd))) must
			// equal encode(cmd).
			first, err := Encode(cmd)
			if err != nil {
				t.Fatalf("encode a decoded command: %v", err)
			}
			round, err := decodeEntry(first)
			if err != nil {
				t.Fatalf("decode(encode(decoded)): %v", err)
			}
			second, err := Encode(round)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(first, second) {
				t.Fatalf("encoding not stable:\n%s\n%s", first, second)
			}
		}
		// Applying never panics on a command that decodes (the registry
		// refuses what is wrong), and the registry stays readable. The
		// FSM trusts the partition count the node checked before it
		// proposed (1..1024, server/service_topics.go): an entry with
		// billions would only take time and memory here.
		if ct, ok := cmd.(*CreateTopic); ok && ct != nil && ct.Partitions > fuzzPartitionsMax {
			return
		}
		fsm := newFuzzFSM(t)
		fsm.Apply(&hraft.Log{Index: 10, Type: hraft.LogCommand, Data: data})
		readEverything(fsm)
	})
}

// fuzzPartitionsMax is the most partitions of a CreateTopic that
// FuzzDecodeEntry applies: the node's own bound on topics.
const fuzzPartitionsMax = 1024

// FuzzRestore: a controller snapshot either restores to a registry every
// read serves and that snapshots to itself, or fails and leaves the
// registry served before untouched.
func FuzzRestore(f *testing.F) {
	f.Add(snapshotOf(f, seededFSM(f)))
	f.Add(snapshotOf(f, newFuzzFSM(f)))
	f.Add([]byte(`{"version":1,"topics":{"t":{"name":"t","partitions":[{"index":0,"group_id":1,"replicas":["n1"],"live":true}],"replication_factor":1,"max_event_bytes":10,"created_at_unix_nano":1,"ordering":2}},"next_group_id":2}`))
	f.Add([]byte(`{"version":1,"topics":{"t":null},"tenants":{"a":null}}`))
	f.Add([]byte(`{`))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		fsm := seededFSM(t)
		before := snapshotOf(t, fsm)
		if err := fsm.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
			if after := snapshotOf(t, fsm); !bytes.Equal(before, after) {
				t.Fatalf("a failed restore changed the registry:\n%s\n%s", before, after)
			}
			readEverything(fsm)
			return
		}
		readEverything(fsm)
		restored := snapshotOf(t, fsm)
		again := newFuzzFSM(t)
		if err := again.Restore(io.NopCloser(bytes.NewReader(restored))); err != nil {
			t.Fatalf("restore of a restored registry's snapshot: %v", err)
		}
		if got := snapshotOf(t, again); !bytes.Equal(restored, got) {
			t.Fatalf("snapshot of a restored registry differs:\n%s\n%s", restored, got)
		}
	})
}

// newFuzzFSM is newTestFSM for a fuzz target's or a seed's testing.TB.
func newFuzzFSM(t testing.TB) *FSM {
	t.Helper()
	fsm, err := NewFSM(Config{AlterContract: testAlter})
	if err != nil {
		t.Fatal(err)
	}
	return fsm
}

// seededFSM holds a topic, a tenant, a producer and a tombstone.
func seededFSM(t testing.TB) *FSM {
	t.Helper()
	fsm := newFuzzFSM(t)
	for i, cmd := range []Command{
		&CreateTopic{Name: "orders", Partitions: 2, ReplicationFactor: 1, Nodes: []string{"n1"}, Contract: Contract{Ordering: 1}},
		&CreateTenant{Tenant: Tenant{ID: "acme", Quota: Quota{Burst: 3}}},
		&InitProducer{Random: "00"},
		&CreateTopic{Name: "gone", Partitions: 1, ReplicationFactor: 1, Nodes: []string{"n1"}},
		&DeleteTopic{Name: "gone"},
	} {
		data, err := Encode(cmd)
		if err != nil {
			t.Fatal(err)
		}
		fsm.Apply(&hraft.Log{Index: uint64(i + 1), Type: hraft.LogCommand, Data: data})
	}
	return fsm
}

// snapshotOf returns fsm's snapshot bytes.
func snapshotOf(t testing.TB, fsm *FSM) []byte {
	t.Helper()
	snap, err := fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	return sink.Bytes()
}

// readEverything calls every read of the registry (a nil entry or a
// broken topic would panic here, as it would in the node).
func readEverything(fsm *FSM) {
	for _, tp := range fsm.Topics() {
		fsm.Topic(tp.Name)
		for _, p := range tp.Partitions {
			fsm.Tombstoned(p.GroupID)
			fsm.TombstoneIndex(p.GroupID)
		}
	}
	for _, tn := range fsm.Tenants() {
		fsm.Tenant(tn.ID)
	}
	fsm.AssignedTo("n1")
	fsm.AppliedIndex()
}
