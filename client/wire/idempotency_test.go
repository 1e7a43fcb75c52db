package wire

import (
	"strings"
	"testing"
)

func TestIdempotencyKey(t *testing.T) {
	long := strings.Repeat("x", 300)
	for _, tc := range []struct {
		name                  string
		tenant, causation, id string
		wantKey               string
		wantByEventID         bool
	}{
		{"causation id", "acme", "cmd-7", "ev-1", "c4:acmecmd-7", false},
		{"event id without causation", "acme", "", "ev-1", "e4:acmeev-1", true},
		{"neither", "acme", "", "", "", true},
		// The tenant's length keeps ("ab", "c…") apart from ("a", "bc…").
		{"tenant length", "ab", "c", "", "c2:abc", false},
		{"tenant length other split", "a", "bc", "", "c1:abc", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, byEventID := IdempotencyKey(tc.tenant, tc.causation, tc.id)
			if key != tc.wantKey || byEventID != tc.wantByEventID {
				t.Fatalf("IdempotencyKey(%q, %q, %q) = %q, %v; want %q, %v", tc.tenant, tc.causation, tc.id, key, byEventID, tc.wantKey, tc.wantByEventID)
			}
		})
	}
	key, _ := IdempotencyKey("acme", long, "")
	if len(key) > IdempotencyKeyBytesMax || !strings.HasPrefix(key, "hc") {
		t.Fatalf("long causation id: key %q (%d bytes), want a hashed key of at most %d", key, len(key), IdempotencyKeyBytesMax)
	}
	other, _ := IdempotencyKey("acme", long+"y", "")
	if other == key {
		t.Fatal("two long causation ids share a key")
	}
}

func TestProcessed(t *testing.T) {
	for _, tc := range []struct {
		sequence, mark uint64
		byEventID      bool
		want           bool
	}{
		{5, 0, false, false}, // no mark
		{5, 0, true, false},
		{5, 4, false, false}, // a later event of the cause
		{5, 5, false, true},  // the same event again
		{4, 5, false, true},  // an earlier event of the cause
		{9, 5, true, true},   // a copy of the event written again
	} {
		if got := Processed(tc.sequence, tc.mark, tc.byEventID); got != tc.want {
			t.Errorf("Processed(%d, %d, %v) = %v, want %v", tc.sequence, tc.mark, tc.byEventID, got, tc.want)
		}
	}
}
