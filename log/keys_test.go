package log

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// be8 spells v as 8 big-endian bytes.
func be8(v uint64) string { return string(encodeUint64(v)) }

func TestKeyEncoding(t *testing.T) {
	pid := uint64(0x0102030405060708)
	prefix := "p" + be8(pid)
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"record", appendRecordKey(nil, pid, 258), prefix + "e" + be8(258)},
		{"record offset 0", appendRecordKey(nil, pid, 0), prefix + "e" + be8(0)},
		{"tenant index", appendTenantIndexKey(nil, pid, "acme", 7), prefix + "t\x04acme" + be8(7)},
		{"tenant index 255-byte tenant", appendTenantIndexKey(nil, pid, strings.Repeat("z", 255), 1), prefix + "t\xff" + strings.Repeat("z", 255) + be8(1)},
		{"meta applied", appendMetaKey(nil, pid, metaApplied), prefix + "mapplied"},
		{"meta next_offset", appendMetaKey(nil, pid, metaNextOffset), prefix + "mnext_offset"},
		{"meta low_watermark", appendMetaKey(nil, pid, metaLowWatermark), prefix + "mlow_watermark"},
		{"meta restoring", appendMetaKey(nil, pid, metaRestoring), prefix + "mrestoring"},
		{"tenant next", appendTenantNextKey(nil, pid, "acme"), prefix + "nacme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, []byte(tt.want), tt.got)
		})
	}
}

func TestPartitionBounds(t *testing.T) {
	tests := []struct {
		pid          uint64
		lower, upper string
	}{
		{0, "p" + be8(0), "p" + be8(1)},
		{255, "p" + be8(255), "p" + be8(256)},
		{math.MaxUint64, "p" + be8(math.MaxUint64), "q"},
	}
	for _, tt := range tests {
		lower, upper := partitionBounds(tt.pid)
		require.Equal(t, []byte(tt.lower), lower, "pid %d", tt.pid)
		require.Equal(t, []byte(tt.upper), upper, "pid %d", tt.pid)
		// Every key of the partition falls inside, the neighbours' outside.
		for _, key := range [][]byte{
			appendRecordKey(nil, tt.pid, 0), appendRecordKey(nil, tt.pid, math.MaxUint64),
			appendTenantIndexKey(nil, tt.pid, strings.Repeat("\xff", 255), math.MaxUint64),
			appendMetaKey(nil, tt.pid, metaApplied), appendTenantNextKey(nil, tt.pid, "\xff\xff"),
		} {
			require.True(t, bytes.Compare(lower, key) <= 0 && bytes.Compare(key, upper) < 0, "pid %d key %x", tt.pid, key)
		}
		if tt.pid > 0 {
			require.Negative(t, bytes.Compare(appendMetaKey(nil, tt.pid-1, "\xff\xff"), lower))
		}
	}
}

func TestKeyOrderIsLogOrder(t *testing.T) {
	pairs := [][2]uint64{{0, 1}, {1, 255}, {255, 256}, {65535, 65536}, {1<<32 - 1, 1 << 32}, {1 << 56, math.MaxUint64 - 1}}
	for _, pair := range pairs {
		require.Negative(t, bytes.Compare(appendRecordKey(nil, 3, pair[0]), appendRecordKey(nil, 3, pair[1])), "offsets %v", pair)
		require.Negative(t, bytes.Compare(appendTenantIndexKey(nil, 3, "a", pair[0]), appendTenantIndexKey(nil, 3, "a", pair[1])), "sequences %v", pair)
		require.Negative(t, bytes.Compare(appendRecordKey(nil, pair[0], 0), appendRecordKey(nil, pair[1], 0)), "partitions %v", pair)
	}
	// One tenant's index range never contains another tenant's entries, even
	// when one id is a prefix of the other.
	for _, tenants := range [][2]string{{"a", "ab"}, {"ab", "a"}, {"a", "a\x00"}, {"a\xff", "b"}, {"b", "a\xff\xff"}} {
		lower := appendTenantIndexKey(nil, 3, tenants[0], 0)
		upper := appendTenantIndexKey(nil, 3, tenants[0], math.MaxUint64)
		for _, seq := range []uint64{0, 1, math.MaxUint64} {
			other := appendTenantIndexKey(nil, 3, tenants[1], seq)
			inside := bytes.Compare(lower, other) <= 0 && bytes.Compare(other, upper) < 0
			require.False(t, inside, "tenant %q seq %d inside the range of %q", tenants[1], seq, tenants[0])
		}
	}
}

func TestParseKeys(t *testing.T) {
	offset, ok := parseRecordKey(9, appendRecordKey(nil, 9, 12345))
	require.True(t, ok)
	require.Equal(t, uint64(12345), offset)

	for name, key := range map[string][]byte{
		"other partition": appendRecordKey(nil, 8, 1),
		"other kind":      appendTenantIndexKey(nil, 9, "a", 1),
		"short":           appendRecordKey(nil, 9, 1)[:recordKeyBytes-1],
		"long":            append(appendRecordKey(nil, 9, 1), 0),
	} {
		_, ok := parseRecordKey(9, key)
		require.False(t, ok, name)
	}

	tenant, seq, ok := parseTenantIndexKey(9, appendTenantIndexKey(nil, 9, "acme", 77))
	require.True(t, ok)
	require.Equal(t, "acme", string(tenant))
	require.Equal(t, uint64(77), seq)
	for name, key := range map[string][]byte{
		"other partition": appendTenantIndexKey(nil, 8, "acme", 1),
		"record":          appendRecordKey(nil, 9, 1),
		"length too big":  []byte("p" + be8(9) + "t\x05acme" + be8(1)),
		"length zero":     []byte("p" + be8(9) + "t\x00" + be8(1)),
		"truncated":       appendTenantIndexKey(nil, 9, "acme", 1)[:14],
	} {
		_, _, ok := parseTenantIndexKey(9, key)
		require.False(t, ok, name)
	}
}
