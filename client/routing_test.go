package client

import (
	"hash/fnv"
	"testing"
)

// The routing hash is part of the wire contract: these values must never change.
func TestPartitionForTenantIsStable(t *testing.T) {
	cases := []struct {
		tenant     string
		partitions uint32
		want       uint32
	}{
		{"acme", 3, uint32(stdFNV("acme") % 3)},
		{"globex", 3, uint32(stdFNV("globex") % 3)},
		{"", 7, uint32(stdFNV("") % 7)},
		{"tenant-42", 1, 0},
		{"anything", 0, 0},
	}
	for _, c := range cases {
		if got := PartitionForTenant(c.tenant, c.partitions); got != c.want {
			t.Errorf("PartitionForTenant(%q, %d) = %d, want %d", c.tenant, c.partitions, got, c.want)
		}
	}
	// Pinned values, as documented in docs/protocol.md.
	pinned := map[string]uint64{"acme": 0x724d383f4f6de0f, "globex": 0x7fc12157b54bb22e, "tenant-42": 0x2944b77b49f24de2}
	for tenant, want := range pinned {
		if got := fnv1a64(tenant); got != want {
			t.Errorf("fnv1a64(%q) = %#x, want %#x", tenant, got, want)
		}
	}
	if got := PartitionForTenant("acme", 3); got != 2 {
		t.Errorf("acme over 3 partitions = %d, want 2", got)
	}
}

func stdFNV(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}
