package log

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRetentionPoint(t *testing.T) {
	db := openMemDB(t)
	p := partition(t, db, 1)
	// 20 records, one per second from t=1s, bodies growing, expiring at
	// 5s, 5s, 6s, 0 (never), then 1s each.
	inBatch(t, p, func(b *Batch) {
		for i := range 20 {
			expire := int64(1e9)
			switch i {
			case 0, 1:
				expire = 5e9
			case 2:
				expire = 6e9
			case 3:
				expire = 0
			}
			_, err := b.AppendRecord(AppendRequest{Tenant: "a", TimestampUnixNano: int64(i+1) * 1e9,
				ExpireAtUnixNano: expire, Body: make([]byte, 10*(i+1))})
			require.NoError(t, err)
		}
	})
	records := readAll(t, p)
	// One chunk: each record's encoded size, the header with record 0.
	valueBytes := func(from int) uint64 {
		var sum uint64
		if from == 0 {
			sum += chunkHeaderBytes
		}
		for _, r := range records[from:] {
			sum += uint64(chunkRecordBytes(len(r.Tenant), len(r.Body)))
		}
		return sum
	}
	require.Equal(t, valueBytes(0), p.SizeBytes())
	now := int64(20e9)

	tests := []struct {
		name   string
		policy RetentionPolicy
		want   uint64
	}{
		{"zero policy keeps everything", RetentionPolicy{}, 0},
		{"max age", RetentionPolicy{MaxAge: 10 * time.Second}, 9}, // first ts >= 10s is offset 9
		{"max age keeps everything", RetentionPolicy{MaxAge: time.Hour}, 0},
		{"max age of 1ns keeps the record at now", RetentionPolicy{MaxAge: time.Nanosecond}, 19},
		{"max records", RetentionPolicy{MaxRecords: 5}, 15},
		{"max records above the count", RetentionPolicy{MaxRecords: 50}, 0},
		{"max bytes exactly fits from 10", RetentionPolicy{MaxBytes: valueBytes(10)}, 10},
		{"max bytes one short", RetentionPolicy{MaxBytes: valueBytes(10) - 1}, 11},
		{"max bytes keeps everything", RetentionPolicy{MaxBytes: valueBytes(0)}, 0},
		{"max bytes of 1 drops everything", RetentionPolicy{MaxBytes: 1}, 20},
		{"expired prefix stops at a record that never expires", RetentionPolicy{DropExpired: true}, 3},
		{"largest rule wins", RetentionPolicy{MaxAge: 15 * time.Second, MaxRecords: 12, DropExpired: true}, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := p.RetentionPoint(tt.policy, now)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
	// Expired prefix at an earlier now: only what had expired then.
	got, err := p.RetentionPoint(RetentionPolicy{DropExpired: true}, 5e9)
	require.NoError(t, err)
	require.Equal(t, uint64(2), got)

	// After a truncation the point is relative to what is retained.
	truncate(t, p, 3)
	got, err = p.RetentionPoint(RetentionPolicy{DropExpired: true}, now)
	require.NoError(t, err)
	require.Equal(t, uint64(3), got, "record 3 never expires: nothing more to drop")
	got, err = p.RetentionPoint(RetentionPolicy{MaxBytes: valueBytes(10)}, now)
	require.NoError(t, err)
	require.Equal(t, uint64(10), got)
	got, err = p.RetentionPoint(RetentionPolicy{}, now)
	require.NoError(t, err)
	require.Equal(t, uint64(3), got)

	_, err = p.RetentionPoint(RetentionPolicy{MaxAge: -time.Second}, now)
	require.ErrorIs(t, err, ErrInvalidArgument)
}

func TestRetentionPointIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("appends 100,000 records")
	}
	db := openMemDB(t)
	p := partition(t, db, 1)
	const total = retentionStepRecordsMax + 2000
	body := make([]byte, 8)
	for batch := range total / 1000 {
		inBatch(t, p, func(b *Batch) {
			for i := range 1000 {
				_, err := b.AppendRecord(AppendRequest{Tenant: "a", TimestampUnixNano: int64(batch*1000 + i), ExpireAtUnixNano: 1, Body: body})
				require.NoError(t, err)
			}
		})
	}
	for _, policy := range []RetentionPolicy{{MaxRecords: 1}, {MaxBytes: 1}, {DropExpired: true}, {MaxAge: time.Nanosecond}} {
		t.Run(fmt.Sprintf("%+v", policy), func(t *testing.T) {
			got, err := p.RetentionPoint(policy, total+10)
			require.NoError(t, err)
			require.Equal(t, uint64(retentionStepRecordsMax), got, "the best point within one step")
		})
	}
	truncate(t, p, retentionStepRecordsMax)
	got, err := p.RetentionPoint(RetentionPolicy{MaxRecords: 1}, total+10)
	require.NoError(t, err)
	require.Equal(t, uint64(total-1), got, "the next call goes on")
}
