package log

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRecordRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		record Record
	}{
		{"small", Record{Offset: 0, Sequence: 1, Tenant: "a", TimestampUnixNano: 1, Body: []byte("x")}},
		{"empty body", Record{Offset: 5, Sequence: 2, Tenant: "acme", TimestampUnixNano: 1700000000000000000, Body: []byte{}}},
		{"binary body", Record{Offset: 1 << 40, Sequence: 1 << 33, Tenant: "t", TimestampUnixNano: -42, Body: []byte{0, 0xff, 0, 'p', 'e'}}},
		{"longest tenant", Record{Offset: 7, Sequence: 9, Tenant: strings.Repeat("T", 255), Body: []byte("body")}},
		{"expiry", Record{Offset: 8, Sequence: 1, Tenant: "a", TimestampUnixNano: 10, ExpireAtUnixNano: 1700000000000000000, Body: []byte("b")}},
		{"negative expiry", Record{Offset: 8, Sequence: 1, Tenant: "a", ExpireAtUnixNano: -1, Body: []byte("b")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			value := appendRecordValue([]byte("prefix-kept"), &tt.record)
			require.Equal(t, "prefix-kept", string(value[:11]))
			value = value[11:]
			require.Len(t, value, recordHeaderV2Bytes+len(tt.record.Tenant)+len(tt.record.Body))
			require.Equal(t, recordVersion2, value[4])
			view, err := parseRecordValue(3, tt.record.Offset, value)
			require.NoError(t, err)
			got := view.record()
			require.Equal(t, tt.record, got)
			// The decoded record owns its memory.
			value[len(value)-1] ^= 0xff
			if len(got.Body) > 0 {
				require.Equal(t, tt.record.Body, got.Body)
			}
		})
	}
}

// reseal recomputes a value's CRC after a deliberate edit, so that the
// other checks are reached.
func reseal(value []byte) {
	binary.BigEndian.PutUint32(value, crc32.Checksum(value[4:], castagnoli))
}

func TestRecordCorruption(t *testing.T) {
	good := appendRecordValue(nil, &Record{Offset: 11, Sequence: 3, Tenant: "acme", TimestampUnixNano: 5, Body: []byte("hello")})
	tests := []struct {
		name      string
		keyOffset uint64
		mutate    func(v []byte) []byte
	}{
		{"flipped checksum", 11, func(v []byte) []byte { v[0] ^= 1; return v }},
		{"flipped body byte", 11, func(v []byte) []byte { v[len(v)-1] ^= 0x80; return v }},
		{"flipped offset byte", 11, func(v []byte) []byte { v[12] ^= 1; return v }},
		{"unknown version", 11, func(v []byte) []byte { v[4] = 3; reseal(v); return v }},
		{"version 0", 11, func(v []byte) []byte { v[4] = 0; reseal(v); return v }},
		{"version 2 cut inside its expiry", 11, func(v []byte) []byte { v = v[:recordHeaderV1Bytes+4]; reseal(v); return v }},
		{"offset mismatch", 12, func(v []byte) []byte { return v }},
		{"zero sequence", 11, func(v []byte) []byte { binary.BigEndian.PutUint64(v[13:], 0); reseal(v); return v }},
		{"tenant length zero", 11, func(v []byte) []byte { v[29] = 0; reseal(v); return v }},
		{"tenant length past end", 11, func(v []byte) []byte { v[29] = 200; reseal(v); return v }},
		{"truncated header", 11, func(v []byte) []byte { return v[:recordHeaderV1Bytes] }},
		{"empty", 11, func(v []byte) []byte { return nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			value := tt.mutate(append([]byte(nil), good...))
			_, err := parseRecordValue(42, tt.keyOffset, value)
			require.ErrorIs(t, err, ErrCorruption)
			var corruption *CorruptionError
			require.True(t, errors.As(err, &corruption))
			require.Equal(t, uint64(42), corruption.Partition)
			require.Equal(t, tt.keyOffset, corruption.Offset)
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	require.NoError(t, (&Options{Dir: "x"}).Validate())
	err := (&Options{CacheBytes: -1}).Validate()
	require.ErrorIs(t, err, ErrInvalidOptions)
	joined, ok := err.(interface{ Unwrap() []error })
	require.True(t, ok)
	require.Len(t, joined.Unwrap(), 2, "both problems are reported")
	_, err = Open(Options{})
	require.ErrorIs(t, err, ErrInvalidOptions)
}
