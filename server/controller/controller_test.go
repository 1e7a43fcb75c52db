package controller

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"reflect"
	"testing"

	hraft "github.com/hashicorp/raft"
)

// testAlter is a deterministic AlterContract that knows two fields.
func testAlter(c *Contract, src Contract, fields []string) error {
	next := *c
	for _, f := range fields {
		switch f {
		case "retention_age_ms":
			next.RetentionAgeMs = src.RetentionAgeMs
		case "required_fields":
			next.RequiredFields = append([]string(nil), src.RequiredFields...)
		case "protected_groups":
			next.ProtectedGroups = append([]ProtectedGroup(nil), src.ProtectedGroups...)
		default:
			return fmt.Errorf("test: field %q cannot be altered", f)
		}
	}
	*c = next
	return nil
}

func newTestFSM(t *testing.T) *FSM {
	t.Helper()
	f, err := NewFSM(Config{AlterContract: testAlter})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// apply encodes cmd and applies it at index.
func apply(t *testing.T, f *FSM, index uint64, cmd Command) interface{} {
	t.Helper()
	data, err := Encode(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return f.Apply(&hraft.Log{Index: index, Type: hraft.LogCommand, Data: data})
}

// legacyChecked frames a JSON envelope the way the second version did:
// 0xC1 | CRC32C(json) | json.
func legacyChecked(body string) []byte {
	out := []byte{entryLegacyChecked, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(out[1:], crc32.Checksum([]byte(body), castagnoli))
	return append(out, body...)
}

// One command of each op, as a node proposes them.
func everyCommand() []Command {
	return []Command{
		&CreateTopic{Name: "orders", Partitions: 3, ReplicationFactor: 2, MaxEventBytes: 1 << 20, CreatedAtUnixNano: 7,
			Nodes: []string{"n1", "n2", "n3"}, Contract: Contract{Ordering: 2, RetentionAgeMs: 1000, SchemaVersions: []uint32{1, 2}, RequiredFields: []string{"tenant_id"}}},
		&AlterTopic{Name: "orders", Fields: []string{"retention_age_ms"}, Contract: Contract{RetentionAgeMs: 5000}},
		&DeleteTopic{Name: "orders"},
		&CreateTenant{Tenant: Tenant{ID: "acme", DisplayName: "Acme", Quota: Quota{EventsPerSec: 10, Burst: 20}, CreatedAtUnixNano: 9}},
		&SetTenantQuota{ID: "acme", Quota: Quota{BytesPerSec: 1 << 10}},
		&InitProducer{ID: "p1-x", Random: "00ff", EpochLow: 42},
		&MarkLive{GroupIDs: []uint64{1, 3}},
	}
}

// Every op encodes with its fixed number and decodes to an equal command.
func TestEncodeDecodeRoundTripPerOp(t *testing.T) {
	ops := map[Op]bool{}
	for _, cmd := range everyCommand() {
		data, err := Encode(cmd)
		if err != nil {
			t.Fatal(err)
		}
		if Op(data[0]) != cmd.Op() {
			t.Fatalf("%T: first byte %d, op %d", cmd, data[0], cmd.Op())
		}
		ops[cmd.Op()] = true
		got, err := decodeEntry(data)
		if err != nil {
			t.Fatalf("%T: %v", cmd, err)
		}
		if !reflect.DeepEqual(got, cmd) {
			t.Fatalf("%T: decoded %+v, want %+v", cmd, got, cmd)
		}
		if err := CheckEntry(&hraft.Log{Type: hraft.LogCommand, Data: data}); err != nil {
			t.Fatalf("%T: CheckEntry: %v", cmd, err)
		}
	}
	// The numbers are persisted: they never change.
	want := map[Op]bool{1: true, 2: true, 3: true, 4: true, 5: true, 6: true, 7: true}
	if !reflect.DeepEqual(ops, want) {
		t.Fatalf("ops %v, want 1..7", ops)
	}
	if OpCreateTopic != 1 || OpAlterTopic != 2 || OpDeleteTopic != 3 || OpCreateTenant != 4 ||
		OpSetTenantQuota != 5 || OpInitProducer != 6 || OpMarkLive != 7 {
		t.Fatal("an op was renumbered")
	}
}

// Every single-bit flip of a framed entry, the op byte included, is found
// by the checksum: by decode, by CheckEntry, and by Apply, which reports
// it and stops rather than apply something else than the other replicas.
func TestEveryBitFlipIsFound(t *testing.T) {
	for _, cmd := range everyCommand() {
		data, err := Encode(cmd)
		if err != nil {
			t.Fatal(err)
		}
		for i := range data {
			for bit := range 8 {
				damaged := append([]byte(nil), data...)
				damaged[i] ^= 1 << bit
				if _, err := decodeEntry(damaged); !errors.Is(err, ErrDamagedEntry) || !errors.Is(err, ErrBadEntry) {
					t.Fatalf("%T: flip of bit %d of byte %d: %v", cmd, bit, i, err)
				}
				if err := CheckEntry(&hraft.Log{Type: hraft.LogCommand, Data: damaged}); !errors.Is(err, ErrDamagedEntry) {
					t.Fatalf("%T: CheckEntry missed the flip of bit %d of byte %d: %v", cmd, bit, i, err)
				}
			}
		}
	}
	// The second version's checksummed JSON: a flip is found too.
	entry := legacyChecked(`{"version":1,"op":"create_tenant","create_tenant":{"id":"acme"}}`)
	for i := 1; i < len(entry); i++ {
		for bit := range 8 {
			damaged := append([]byte(nil), entry...)
			damaged[i] ^= 1 << bit
			if err := CheckEntry(&hraft.Log{Type: hraft.LogCommand, Data: damaged}); !errors.Is(err, ErrDamagedEntry) {
				t.Fatalf("legacy: flip of bit %d of byte %d: %v", bit, i, err)
			}
		}
	}
}

func TestApplyStopsOnDamagedEntryAndReportsIt(t *testing.T) {
	var reported error
	f, err := NewFSM(Config{AlterContract: testAlter, OnDamage: func(err error) { reported = err }})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := Encode(&CreateTenant{Tenant: Tenant{ID: "acme"}})
	data[len(data)-2] ^= 1
	mustPanic(t, func() { f.Apply(&hraft.Log{Index: 9, Type: hraft.LogCommand, Data: data}) })
	if !errors.Is(reported, ErrDamagedEntry) {
		t.Fatalf("damage not reported: %v", reported)
	}
	if _, ok := f.Tenant("acme"); ok {
		t.Fatal("a damaged entry was applied")
	}

	// A framed op this version does not know (a newer node's) stops the
	// node too, but it is not damage: no report.
	reported = nil
	unknown := append([]byte{0x30, 0, 0, 0, 0}, "{}"...)
	binary.BigEndian.PutUint32(unknown[1:5], frameChecksum(0x30, []byte("{}")))
	if err := CheckEntry(&hraft.Log{Type: hraft.LogCommand, Data: unknown}); !errors.Is(err, ErrBadEntry) || errors.Is(err, ErrDamagedEntry) {
		t.Fatalf("unknown op: %v", err)
	}
	mustPanic(t, func() { f.Apply(&hraft.Log{Index: 10, Type: hraft.LogCommand, Data: unknown}) })
	if reported != nil {
		t.Fatalf("an unknown op reported as damage: %v", reported)
	}
}

func mustPanic(t *testing.T, fn func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	fn()
}

// The entries the first versions wrote (a JSON envelope with the op named
// by a string, alone or behind 0xC1 and a checksum) still decode and apply
// as they did, bodiless ones included.
func TestLegacyEntriesApply(t *testing.T) {
	f := newTestFSM(t)
	legacy := func(index uint64, body string, checked bool) interface{} {
		data := []byte(body)
		if checked {
			data = legacyChecked(body)
		}
		if err := CheckEntry(&hraft.Log{Type: hraft.LogCommand, Data: data}); err != nil {
			t.Fatalf("index %d: CheckEntry: %v", index, err)
		}
		return f.Apply(&hraft.Log{Index: index, Type: hraft.LogCommand, Data: data})
	}
	res := legacy(1, `{"version":1,"op":"create_topic","create_topic":{"name":"orders","partitions":2,"replication_factor":1,"max_event_bytes":100,"created_at_unix_nano":5,"nodes":["n1"],"ordering":1,"retention_age_ms":60000}}`, false)
	topic, ok := res.(*Topic)
	if !ok || topic.Name != "orders" || len(topic.Partitions) != 2 || topic.Ordering != 1 || topic.RetentionAgeMs != 60000 {
		t.Fatalf("legacy create_topic: %#v", res)
	}
	if r := legacy(2, `{"version":1,"op":"create_tenant","create_tenant":{"id":"acme","display_name":"Acme","quota":{"events_per_sec":5},"created_at_unix_nano":3}}`, true); r.(*Tenant).Quota.EventsPerSec != 5 {
		t.Fatalf("legacy create_tenant: %#v", r)
	}
	if r := legacy(3, `{"version":1,"op":"set_tenant_quota","set_tenant_quota":{"id":"acme","quota":{"burst":7}}}`, true); r.(*Tenant).Quota != (Quota{Burst: 7}) {
		t.Fatalf("legacy set_tenant_quota: %#v", r)
	}
	if r := legacy(4, `{"version":1,"op":"alter_topic","alter_topic":{"name":"orders","fields":["retention_age_ms"],"contract":{"retention_age_ms":9}}}`, true); r.(*Topic).RetentionAgeMs != 9 || r.(*Topic).ContractVersion != 4 {
		t.Fatalf("legacy alter_topic: %#v", r)
	}
	if r := legacy(5, `{"version":1,"op":"mark_live","mark_live":[1,2,99]}`, true); r != 2 {
		t.Fatalf("legacy mark_live marked %v, want 2", r)
	}
	// init_producer before producer epochs had no body: ids p<counter>.
	if r := legacy(6, `{"version":1,"op":"init_producer"}`, false); r != (ProducerGrant{ID: "p1", Epoch: 1}) {
		t.Fatalf("bodiless init_producer: %#v", r)
	}
	if r := legacy(7, `{"version":1,"op":"init_producer","init_producer":{"id":"p1","epoch_low":3}}`, true); r != (ProducerGrant{ID: "p1", Epoch: 2<<32 | 3}) {
		t.Fatalf("init_producer: %#v", r)
	}
	// Bodiless commands that need a body are refused, the registry unchanged.
	for i, body := range []string{
		`{"version":1,"op":"create_topic"}`,
		`{"version":1,"op":"alter_topic"}`,
		`{"version":1,"op":"create_tenant"}`,
		`{"version":1,"op":"set_tenant_quota"}`,
	} {
		if err, ok := legacy(uint64(8+i), body, i%2 == 0).(error); !ok {
			t.Fatalf("%s: applied", body)
		} else if err.Error() == "" {
			t.Fatal("empty error")
		}
	}
	if r := legacy(12, `{"version":1,"op":"delete_topic","delete_topic":"orders"}`, true); r.(*Topic).Name != "orders" {
		t.Fatalf("legacy delete_topic: %#v", r)
	}
	if !f.Tombstoned(1) || f.TombstoneIndex(2) != 12 {
		t.Fatal("legacy delete_topic wrote no tombstones")
	}
	// An op the first versions did not know, or bytes that are not JSON,
	// were refused on every replica alike: still refused, not a stop.
	if _, ok := legacy(13, `{"version":1,"op":"rename_topic"}`, true).(error); !ok {
		t.Fatal("unknown legacy op applied")
	}
	if _, ok := f.Apply(&hraft.Log{Index: 14, Type: hraft.LogCommand, Data: legacyChecked("not json")}).(error); !ok {
		t.Fatal("a checksummed entry that is not JSON applied")
	}
	if err := CheckEntry(&hraft.Log{Type: hraft.LogCommand, Data: []byte(`{"version":1,"op":`)}); !errors.Is(err, ErrDamagedEntry) {
		t.Fatalf("an unchecked legacy entry that is not JSON passed: %v", err)
	}
	if got := f.AppliedIndex(); got != 14 {
		t.Fatalf("applied index %d, want 14", got)
	}
	if len(f.Topics()) != 0 || len(f.Tenants()) != 1 {
		t.Fatalf("registry after legacy entries: %d topics, %d tenants", len(f.Topics()), len(f.Tenants()))
	}
}

func TestCommandsAndRefusals(t *testing.T) {
	f := newTestFSM(t)
	res := apply(t, f, 1, &CreateTopic{Name: "orders", Partitions: 3, ReplicationFactor: 2, Nodes: []string{"a", "b", "c"}})
	topic := res.(*Topic)
	// Placement: group g gets Nodes[(g+k) mod n].
	want := [][]string{{"b", "c"}, {"c", "a"}, {"a", "b"}}
	for i, p := range topic.Partitions {
		if p.Index != uint32(i) || p.GroupID != uint64(i+1) || !reflect.DeepEqual(p.Replicas, want[i]) || p.Live {
			t.Fatalf("partition %d: %+v", i, p)
		}
	}
	var named *NameError
	if err, _ := apply(t, f, 2, &CreateTopic{Name: "orders", Partitions: 1, ReplicationFactor: 1, Nodes: []string{"a"}}).(error); !errors.As(err, &named) || !errors.Is(err, ErrTopicExists) || named.Name != "orders" {
		t.Fatalf("duplicate topic: %v", err)
	}
	if err, _ := apply(t, f, 3, &CreateTopic{Name: "x", Partitions: 1, ReplicationFactor: 3, Nodes: []string{"a"}}).(error); !errors.Is(err, ErrPlacement) {
		t.Fatalf("unplaceable: %v", err)
	}
	if err, _ := apply(t, f, 4, &AlterTopic{Name: "nope", Fields: []string{"retention_age_ms"}}).(error); !errors.Is(err, ErrTopicNotFound) {
		t.Fatalf("alter of a missing topic: %v", err)
	}
	if err, _ := apply(t, f, 5, &AlterTopic{Name: "orders", Fields: []string{"partitions"}}).(error); err == nil {
		t.Fatal("AlterContract's refusal was not returned")
	}
	if cur, _ := f.Topic("orders"); cur.ContractVersion != 0 {
		t.Fatalf("a refused alter moved the contract version to %d", cur.ContractVersion)
	}
	if got := apply(t, f, 6, &AlterTopic{Name: "orders", Fields: []string{"retention_age_ms"}, Contract: Contract{RetentionAgeMs: 77}}).(*Topic); got.RetentionAgeMs != 77 || got.ContractVersion != 6 {
		t.Fatalf("alter: %+v", got)
	}
	if n := apply(t, f, 7, &MarkLive{GroupIDs: []uint64{2, 2, 40}}); n != 1 {
		t.Fatalf("mark_live marked %v", n)
	}
	if err, _ := apply(t, f, 8, &SetTenantQuota{ID: "acme"}).(error); !errors.Is(err, ErrTenantNotFound) {
		t.Fatalf("quota of a missing tenant: %v", err)
	}
	apply(t, f, 9, &CreateTenant{Tenant: Tenant{ID: "acme"}})
	if err, _ := apply(t, f, 10, &CreateTenant{Tenant: Tenant{ID: "acme"}}).(error); !errors.Is(err, ErrTenantExists) {
		t.Fatalf("duplicate tenant: %v", err)
	}
	g1 := apply(t, f, 11, &InitProducer{Random: "ab", EpochLow: 1}).(ProducerGrant)
	g2 := apply(t, f, 12, &InitProducer{ID: g1.ID, EpochLow: 0}).(ProducerGrant)
	if g1.ID != "p1-ab" || g2.ID != g1.ID || g2.Epoch <= g1.Epoch {
		t.Fatalf("grants %+v then %+v: the later must fence the earlier", g1, g2)
	}
	if err, _ := apply(t, f, 13, &DeleteTopic{Name: "nope"}).(error); !errors.Is(err, ErrTopicNotFound) {
		t.Fatalf("delete of a missing topic: %v", err)
	}
	apply(t, f, 14, &DeleteTopic{Name: "orders"})
	for gid := uint64(1); gid <= 3; gid++ {
		if !f.Tombstoned(gid) || f.TombstoneIndex(gid) != 14 {
			t.Fatalf("group %d not tombstoned at 14", gid)
		}
	}
	if f.Tombstoned(4) || f.TombstoneIndex(4) != 0 {
		t.Fatal("a group never created is tombstoned")
	}
	// Group ids are never reused.
	if got := apply(t, f, 15, &CreateTopic{Name: "orders", Partitions: 1, ReplicationFactor: 1, Nodes: []string{"a"}}).(*Topic); got.Partitions[0].GroupID != 4 {
		t.Fatalf("recreated topic got group %d, want 4", got.Partitions[0].GroupID)
	}
}

func TestReadsAreCopiesAndSignalsFire(t *testing.T) {
	f := newTestFSM(t)
	advanced := f.AppliedAdvanced()
	apply(t, f, 1, &CreateTopic{Name: "b", Partitions: 2, ReplicationFactor: 1, Nodes: []string{"n1", "n2"}, Contract: Contract{RequiredFields: []string{"x"}}})
	select {
	case <-advanced:
	default:
		t.Fatal("AppliedAdvanced not closed by an apply")
	}
	select {
	case <-f.Changed():
	default:
		t.Fatal("no change token after create_topic")
	}
	apply(t, f, 2, &CreateTopic{Name: "a", Partitions: 1, ReplicationFactor: 1, Nodes: []string{"n1", "n2"}})
	apply(t, f, 3, &CreateTenant{Tenant: Tenant{ID: "z"}})
	apply(t, f, 4, &CreateTenant{Tenant: Tenant{ID: "y"}})
	<-f.Changed() // one token for any number of changes
	select {
	case <-f.Changed():
		t.Fatal("a second token without a change")
	default:
	}
	apply(t, f, 5, &InitProducer{Random: "00"})
	select {
	case <-f.Changed():
		t.Fatal("InitProducer is not a registry change")
	default:
	}
	f.StoreConfiguration(6, hraft.Configuration{})
	if f.AppliedIndex() != 6 {
		t.Fatalf("a configuration entry did not advance the applied index: %d", f.AppliedIndex())
	}

	if names := []string{f.Topics()[0].Name, f.Topics()[1].Name}; !reflect.DeepEqual(names, []string{"a", "b"}) {
		t.Fatalf("topics not sorted: %v", names)
	}
	if ids := []string{f.Tenants()[0].ID, f.Tenants()[1].ID}; !reflect.DeepEqual(ids, []string{"y", "z"}) {
		t.Fatalf("tenants not sorted: %v", ids)
	}
	b, _ := f.Topic("b")
	b.Partitions[0].Replicas[0] = "changed"
	b.RequiredFields[0] = "changed"
	tn, _ := f.Tenant("y")
	tn.DisplayName = "changed"
	again, _ := f.Topic("b")
	if again.Partitions[0].Replicas[0] == "changed" || again.RequiredFields[0] == "changed" {
		t.Fatal("Topic returned the registry's own slices")
	}
	if y, _ := f.Tenant("y"); y.DisplayName == "changed" {
		t.Fatal("Tenant returned the registry's own record")
	}
	if _, ok := f.Topic("nope"); ok {
		t.Fatal("found a topic that does not exist")
	}
	var onN2 []string
	for _, a := range f.AssignedTo("n2") {
		onN2 = append(onN2, fmt.Sprintf("%s/%d@g%d", a.Topic, a.Partition.Index, a.Partition.GroupID))
	}
	// b: groups 1 (n2), 2 (n1); a: group 3 (n2).
	if want := []string{"a/0@g3", "b/0@g1"}; !reflect.DeepEqual(onN2, want) {
		t.Fatalf("AssignedTo(n2) = %v, want %v", onN2, want)
	}
}

func TestSnapshotRestore(t *testing.T) {
	f := newTestFSM(t)
	apply(t, f, 1, &CreateTopic{Name: "orders", Partitions: 2, ReplicationFactor: 1, Nodes: []string{"n1"}, Contract: Contract{Ordering: 1}})
	apply(t, f, 2, &CreateTenant{Tenant: Tenant{ID: "acme", Quota: Quota{Burst: 3}}})
	apply(t, f, 3, &InitProducer{Random: "00"})
	apply(t, f, 4, &CreateTopic{Name: "gone", Partitions: 1, ReplicationFactor: 1, Nodes: []string{"n1"}})
	apply(t, f, 5, &DeleteTopic{Name: "gone"})
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	g := newTestFSM(t)
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if g.AppliedIndex() != 5 {
		t.Fatalf("restored applied index %d, want 5", g.AppliedIndex())
	}
	if !reflect.DeepEqual(f.Topics(), g.Topics()) || !reflect.DeepEqual(f.Tenants(), g.Tenants()) || !g.Tombstoned(3) {
		t.Fatal("restored registry differs")
	}
	select {
	case <-g.Changed():
	default:
		t.Fatal("restore gave no change token")
	}
	// The counters continue where they were.
	if got := apply(t, g, 6, &CreateTopic{Name: "next", Partitions: 1, ReplicationFactor: 1, Nodes: []string{"n1"}}).(*Topic); got.Partitions[0].GroupID != 4 {
		t.Fatalf("group id after restore %d, want 4", got.Partitions[0].GroupID)
	}
	if got := apply(t, g, 7, &InitProducer{Random: "00"}).(ProducerGrant); got.ID != "p2-00" {
		t.Fatalf("producer after restore %q, want p2-00", got.ID)
	}

	// A snapshot of the first version: no applied index, no tenants, no
	// producer counter, no tombstones.
	old := `{"version":1,"topics":{"t":{"name":"t","partitions":[{"index":0,"group_id":1,"replicas":["n1"],"live":true}],"replication_factor":1,"max_event_bytes":10,"created_at_unix_nano":1,"ordering":2}},"next_group_id":2}`
	h := newTestFSM(t)
	if err := h.Restore(io.NopCloser(bytes.NewReader([]byte(old)))); err != nil {
		t.Fatal(err)
	}
	if tp, ok := h.Topic("t"); !ok || tp.Ordering != 2 || !tp.Partitions[0].Live || h.AppliedIndex() != 0 {
		t.Fatalf("old snapshot: %+v (applied %d)", tp, h.AppliedIndex())
	}
	if got := apply(t, h, 8, &InitProducer{Random: "00"}).(ProducerGrant); got.ID != "p1-00" {
		t.Fatalf("producer after an old snapshot %q", got.ID)
	}
	apply(t, h, 9, &DeleteTopic{Name: "t"})
	if !h.Tombstoned(1) {
		t.Fatal("no tombstone after restoring a snapshot without tombstones")
	}

	newer, _ := json.Marshal(map[string]any{"version": FormatVersion + 1})
	if err := newTestFSM(t).Restore(io.NopCloser(bytes.NewReader(newer))); err == nil {
		t.Fatal("restored a snapshot of a newer format")
	}
	if err := newTestFSM(t).Restore(io.NopCloser(bytes.NewReader([]byte("{")))); err == nil {
		t.Fatal("restored a truncated snapshot")
	}
}

func TestNewFSMNeedsAlterContract(t *testing.T) {
	if _, err := NewFSM(Config{}); err == nil {
		t.Fatal("NewFSM without AlterContract")
	}
}

type memSink struct{ bytes.Buffer }

func (*memSink) ID() string    { return "test" }
func (*memSink) Cancel() error { return nil }
func (*memSink) Close() error  { return nil }

// The dead-letter topic (issue 12) is one more contract field: stored as
// "dead_letter_topic", left out when empty (a registry without one encodes
// as before it existed), kept by snapshots; older registries decode with
// none (TestSnapshotRestore's first-version snapshot).
func TestDeadLetterTopicInTheContract(t *testing.T) {
	empty, err := json.Marshal(Contract{Ordering: 1})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(empty, []byte("dead_letter")) {
		t.Fatalf("an empty dead-letter topic is encoded: %s", empty)
	}
	f := newTestFSM(t)
	apply(t, f, 1, &CreateTopic{Name: "dlq", Partitions: 1, ReplicationFactor: 1, Nodes: []string{"n1"}})
	created := apply(t, f, 2, &CreateTopic{Name: "orders", Partitions: 1, ReplicationFactor: 1, Nodes: []string{"n1"},
		Contract: Contract{DeadLetterTopic: "dlq"}}).(*Topic)
	if created.DeadLetterTopic != "dlq" {
		t.Fatalf("created with dead-letter topic %q", created.DeadLetterTopic)
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(sink.Bytes(), []byte(`"dead_letter_topic":"dlq"`)) {
		t.Fatalf("snapshot without the dead-letter topic: %s", sink.Bytes())
	}
	g := newTestFSM(t)
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if tp, ok := g.Topic("orders"); !ok || tp.DeadLetterTopic != "dlq" {
		t.Fatalf("restored: %+v", tp)
	}
}

// Protected groups (issue 13) are one more contract field: stored as
// "protected_groups", left out when empty, carried by the create and alter
// commands, kept by snapshots and copied by reads; older registries (the
// dead-letter era's snapshot below) decode with none.
func TestProtectedGroupsInTheContract(t *testing.T) {
	empty, err := json.Marshal(Contract{Ordering: 1})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(empty, []byte("protected")) {
		t.Fatalf("empty protected groups are encoded: %s", empty)
	}
	groups := []ProtectedGroup{{Group: "billing", SlowLag: 100, PauseLag: 200}, {Group: "audit", PauseLag: 50}}
	create := &CreateTopic{Name: "orders", Partitions: 1, ReplicationFactor: 1, Nodes: []string{"n1"}, Contract: Contract{ProtectedGroups: groups}}
	entry, err := Encode(create)
	if err != nil {
		t.Fatal(err)
	}
	decoded, err := decodeEntry(entry)
	if err != nil || !reflect.DeepEqual(decoded, create) {
		t.Fatalf("create round trip: %+v, %v", decoded, err)
	}
	f := newTestFSM(t)
	created := apply(t, f, 1, create).(*Topic)
	if !reflect.DeepEqual(created.ProtectedGroups, groups) {
		t.Fatalf("created with %+v", created.ProtectedGroups)
	}
	// Reads are copies.
	read, _ := f.Topic("orders")
	read.ProtectedGroups[0].PauseLag = 1
	if again, _ := f.Topic("orders"); again.ProtectedGroups[0].PauseLag != 200 {
		t.Fatal("a read's protected groups alias the registry's")
	}

	altered := []ProtectedGroup{{Group: "billing", SlowLag: 10}}
	alter := &AlterTopic{Name: "orders", Fields: []string{"protected_groups"}, Contract: Contract{ProtectedGroups: altered}}
	if entry, err = Encode(alter); err != nil {
		t.Fatal(err)
	}
	if decoded, err = decodeEntry(entry); err != nil || !reflect.DeepEqual(decoded, alter) {
		t.Fatalf("alter round trip: %+v, %v", decoded, err)
	}
	if got := apply(t, f, 2, alter).(*Topic); !reflect.DeepEqual(got.ProtectedGroups, altered) || got.ContractVersion != 2 {
		t.Fatalf("altered to %+v (version %d)", got.ProtectedGroups, got.ContractVersion)
	}

	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(sink.Bytes(), []byte(`"protected_groups":[{"group":"billing","slow_lag":10}]`)) {
		t.Fatalf("snapshot without the protected groups: %s", sink.Bytes())
	}
	g := newTestFSM(t)
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if tp, ok := g.Topic("orders"); !ok || !reflect.DeepEqual(tp.ProtectedGroups, altered) {
		t.Fatalf("restored: %+v", tp)
	}

	// A snapshot written before protected groups existed.
	old := `{"version":1,"topics":{"t":{"name":"t","partitions":[{"index":0,"group_id":1,"replicas":["n1"],"live":true}],"replication_factor":1,"max_event_bytes":10,"created_at_unix_nano":1,"dead_letter_topic":"d"}},"next_group_id":2,"applied_index":3}`
	h := newTestFSM(t)
	if err := h.Restore(io.NopCloser(bytes.NewReader([]byte(old)))); err != nil {
		t.Fatal(err)
	}
	if tp, ok := h.Topic("t"); !ok || tp.ProtectedGroups != nil || tp.DeadLetterTopic != "d" {
		t.Fatalf("old snapshot: %+v", tp)
	}
}
