package wire

import (
	"hash/fnv"
	"testing"

	"github.com/heraldlog/herald/client/heraldpb"
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

func TestPartitionForOrderings(t *testing.T) {
	const n = 5
	if got, want := PartitionFor(heraldpb.Ordering_PER_TENANT, "acme", []byte("k"), "e", n), PartitionForTenant("acme", n); got != want {
		t.Errorf("per-tenant: %d, want %d", got, want)
	}
	if got, want := PartitionFor(heraldpb.Ordering_ORDERING_UNSPECIFIED, "acme", nil, "", n), PartitionForTenant("acme", n); got != want {
		t.Errorf("unspecified: %d, want %d", got, want)
	}
	if got, want := PartitionFor(heraldpb.Ordering_PER_KEY, "acme", []byte("order-7"), "e", n), uint32(stdFNV("order-7")%n); got != want {
		t.Errorf("per-key: %d, want %d", got, want)
	}
	if got, want := PartitionFor(heraldpb.Ordering_PER_KEY, "acme", nil, "e", n), PartitionForTenant("acme", n); got != want {
		t.Errorf("per-key without key: %d, want %d", got, want)
	}
	if got, want := PartitionFor(heraldpb.Ordering_NONE, "acme", []byte("k"), "evt-1", n), uint32(stdFNV("evt-1")%n); got != want {
		t.Errorf("none: %d, want %d", got, want)
	}
}
