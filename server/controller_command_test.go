package server

import (
	"errors"
	"testing"

	hraft "github.com/hashicorp/raft"
)

// Controller entries carry a checksum that finds every single-bit flip;
// the first, unchecked form (plain JSON) still decodes.
func TestControllerEntriesDetectDamage(t *testing.T) {
	cmd := []byte(`{"version":1,"op":"create_tenant","create_tenant":{"id":"acme"}}`)
	entry := encodeControllerEntry(cmd)
	body, err := decodeControllerEntry(entry)
	if err != nil || string(body) != string(cmd) {
		t.Fatalf("round trip: %q %v", body, err)
	}
	for i := 1; i < len(entry); i++ {
		for bit := range 8 {
			damaged := append([]byte(nil), entry...)
			damaged[i] ^= 1 << bit
			if _, err := decodeControllerEntry(damaged); !errors.Is(err, errDamagedControllerEntry) {
				t.Fatalf("flip of bit %d of byte %d not detected: %v", bit, i, err)
			}
			if err := checkControllerEntry(&hraft.Log{Type: hraft.LogCommand, Data: damaged}); err == nil {
				t.Fatalf("verification missed the flip of bit %d of byte %d", bit, i)
			}
		}
	}
	if body, err := decodeControllerEntry(cmd); err != nil || string(body) != string(cmd) {
		t.Fatalf("legacy entry: %q %v", body, err)
	}
	if err := checkControllerEntry(&hraft.Log{Type: hraft.LogCommand, Data: cmd[:10]}); !errors.Is(err, errDamagedControllerEntry) {
		t.Fatalf("a legacy entry that is not JSON passed: %v", err)
	}
	fsm := newControllerFSM()
	var reported error
	fsm.onDamage = func(err error) { reported = err }
	damaged := append([]byte(nil), entry...)
	damaged[len(damaged)-2] ^= 1
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("applying a damaged entry did not stop")
			}
		}()
		fsm.Apply(&hraft.Log{Index: 9, Type: hraft.LogCommand, Data: damaged})
	}()
	if !errors.Is(reported, errDamagedControllerEntry) {
		t.Fatalf("damage not reported: %v", reported)
	}
}
