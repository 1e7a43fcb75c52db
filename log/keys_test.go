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
		{"meta last_ts", appendMetaKey(nil, pid, metaLastTimestamp), prefix + "mlast_ts"},
		{"meta bytes", appendMetaKey(nil, pid, metaBytes), prefix + "mbytes"},
		{"producer", appendProducerKey(nil, pid, "acme", "prod"), prefix + "d\x04acme\x04prod"},
		{"producer window", appendProducerWindowKey(nil, pid, "acme", "prod", 9), prefix + "w\x04acme\x04prod" + be8(9)},
		{"event id", appendEventIDKey(nil, pid, "acme", "evt-1"), prefix + "i\x04acmeevt-1"},
		{"event expiry", appendEventExpiryKey(nil, pid, 5, "acme", "evt-1"), prefix + "j" + be8(1<<63+5) + "\x04acmeevt-1"},
		{"event expiry before 1970", appendEventExpiryKey(nil, pid, -1, "a", "e"), prefix + "j" + be8(1<<63-1) + "\x01ae"},
		{"time index", appendTimeIndexKey(nil, pid, 7, 3), prefix + "x" + be8(1<<63+7) + be8(3)},
		{"chunk", appendChunkKey(nil, pid, 1024), prefix + "b" + be8(1024)},
		{"sparse tenant index", appendTenantChunkKey(nil, pid, "acme", 7), prefix + "s\x04acme" + be8(7)},
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

func TestVersion2KeysRoundTripAndOrder(t *testing.T) {
	tenant, producer, ok := parseProducerKey(9, appendProducerKey(nil, 9, "acme", "prod"))
	require.True(t, ok)
	require.Equal(t, []string{"acme", "prod"}, []string{string(tenant), string(producer)})
	tenant, producer, seq, ok := parseProducerWindowKey(9, appendProducerWindowKey(nil, 9, "acme", "prod", 77))
	require.True(t, ok)
	require.Equal(t, []string{"acme", "prod"}, []string{string(tenant), string(producer)})
	require.Equal(t, uint64(77), seq)
	tenant, eventID, ok := parseEventIDKey(9, appendEventIDKey(nil, 9, "acme", "e"))
	require.True(t, ok)
	require.Equal(t, []string{"acme", "e"}, []string{string(tenant), string(eventID)})
	until, tenant, eventID, ok := parseEventExpiryKey(9, appendEventExpiryKey(nil, 9, -3, "acme", "e"))
	require.True(t, ok)
	require.Equal(t, int64(-3), until)
	require.Equal(t, []string{"acme", "e"}, []string{string(tenant), string(eventID)})
	ts, offset, ok := parseTimeIndexKey(9, appendTimeIndexKey(nil, 9, math.MinInt64, math.MaxUint64))
	require.True(t, ok)
	require.Equal(t, int64(math.MinInt64), ts)
	require.Equal(t, uint64(math.MaxUint64), offset)

	for name, ok := range map[string]bool{
		"producer key of another partition": func() bool { _, _, ok := parseProducerKey(8, appendProducerKey(nil, 9, "a", "p")); return ok }(),
		"producer key without producer":     func() bool { _, _, ok := parseProducerKey(9, []byte("p"+be8(9)+"d\x01a")); return ok }(),
		"producer key with trailing bytes": func() bool {
			_, _, ok := parseProducerKey(9, append(appendProducerKey(nil, 9, "a", "p"), 0))
			return ok
		}(),
		"window key without sequence": func() bool {
			_, _, _, ok := parseProducerWindowKey(9, appendProducerWindowPrefix(nil, 9, "a", "p"))
			return ok
		}(),
		"event id key without event id": func() bool { _, _, ok := parseEventIDKey(9, []byte("p"+be8(9)+"i\x01a")); return ok }(),
		"event id key with a 256-byte id": func() bool {
			_, _, ok := parseEventIDKey(9, appendEventIDKey(nil, 9, "a", strings.Repeat("e", 256)))
			return ok
		}(),
		"expiry key cut in its until":        func() bool { _, _, _, ok := parseEventExpiryKey(9, []byte("p"+be8(9)+"j\x00")); return ok }(),
		"time index key with trailing bytes": func() bool { _, _, ok := parseTimeIndexKey(9, append(appendTimeIndexKey(nil, 9, 1, 1), 0)); return ok }(),
		"time index key of the record kind": func() bool {
			_, _, ok := parseTimeIndexKey(9, appendRecordKey(nil, 9, 1)[:timeIndexKeyBytes-1])
			return ok
		}(),
	} {
		require.False(t, ok, name)
	}

	// Signed timestamps sort numerically inside keys.
	stamps := []int64{math.MinInt64, -1e18, -1, 0, 1, 1e18, math.MaxInt64}
	for i := 1; i < len(stamps); i++ {
		require.Negative(t, bytes.Compare(appendTimeIndexKey(nil, 3, stamps[i-1], math.MaxUint64), appendTimeIndexKey(nil, 3, stamps[i], 0)))
		require.Negative(t, bytes.Compare(appendEventExpiryKey(nil, 3, stamps[i-1], "z", "z"), appendEventExpiryKey(nil, 3, stamps[i], "a", "a")))
	}
	// One producer's window range never holds another producer's entries.
	for _, pair := range [][2]string{{"p", "pq"}, {"pq", "p"}, {"p\xff", "q"}} {
		lower := appendProducerWindowPrefix(nil, 3, "a", pair[0])
		upper := prefixSuccessor(lower)
		for _, seq := range []uint64{0, math.MaxUint64} {
			other := appendProducerWindowKey(nil, 3, "a", pair[1], seq)
			require.False(t, bytes.Compare(lower, other) <= 0 && bytes.Compare(other, upper) < 0, "%q inside %q", pair[1], pair[0])
		}
	}
	require.Equal(t, []byte("ab"), prefixSuccessor([]byte("aa")))
	require.Equal(t, []byte("b"), prefixSuccessor([]byte("a\xff\xff")))
	require.Nil(t, prefixSuccessor([]byte("\xff")))
	base, ok := parseChunkKey(9, appendChunkKey(nil, 9, 77))
	require.True(t, ok)
	require.Equal(t, uint64(77), base)
	tenant, seq, ok = parseTenantChunkKey(9, appendTenantChunkKey(nil, 9, "acme", 5))
	require.True(t, ok)
	require.Equal(t, "acme", string(tenant))
	require.Equal(t, uint64(5), seq)
	for name, ok := range map[string]bool{
		"chunk key of another partition": func() bool { _, ok := parseChunkKey(8, appendChunkKey(nil, 9, 1)); return ok }(),
		"record key as a chunk key":      func() bool { _, ok := parseChunkKey(9, appendRecordKey(nil, 9, 1)); return ok }(),
		"sparse key without sequence": func() bool {
			_, _, ok := parseTenantChunkKey(9, appendTenantChunkPrefix(nil, 9, "a"))
			return ok
		}(),
		"tenant index key as a sparse key": func() bool {
			_, _, ok := parseTenantChunkKey(9, appendTenantIndexKey(nil, 9, "a", 1))
			return ok
		}(),
	} {
		require.False(t, ok, name)
	}
	// One tenant's sparse entries never fall in another's range.
	for _, pair := range [][2]string{{"a", "ab"}, {"ab", "a"}, {"a\xff", "b"}} {
		lower := appendTenantChunkPrefix(nil, 3, pair[0])
		upper := prefixSuccessor(lower)
		for _, seq := range []uint64{0, math.MaxUint64} {
			other := appendTenantChunkKey(nil, 3, pair[1], seq)
			require.False(t, bytes.Compare(lower, other) <= 0 && bytes.Compare(other, upper) < 0, "%q inside %q", pair[1], pair[0])
		}
	}
	// The longest key fits the restore bound.
	require.Len(t, appendProducerWindowKey(nil, 3, strings.Repeat("t", 255), strings.Repeat("p", 255), 1)[partitionPrefixBytes:], relativeKeyBytesMax)
}
