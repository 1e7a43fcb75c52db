package log

import (
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/stretchr/testify/require"
)

func TestCorruptVersion2StateIsDetected(t *testing.T) {
	setup := func(t *testing.T) (*DB, *Partition) {
		db := openMemDB(t)
		p := partition(t, db, 7)
		inBatch(t, p, func(b *Batch) {
			for seq := uint64(1); seq <= 4; seq++ {
				req := producerReq(seq)
				req.EventID, req.DedupeUntilUnixNano = "e", int64(seq)*1000
				req.TimestampUnixNano = int64(seq) * 1000
				_, err := b.AppendRecord(req)
				require.NoError(t, err)
			}
		})
		return db, p
	}
	// rawSet writes behind the package's back.
	rawSet := func(t *testing.T, db *DB, key, value []byte) {
		require.NoError(t, db.Pebble().Set(key, value, pebble.NoSync))
	}
	tests := []struct {
		name   string
		damage func(t *testing.T, db *DB)
		use    func(b *Batch) error
		// offset is where the error points: the batch's next offset for
		// state not tied to a record.
		offset uint64
	}{
		{"malformed producer state", func(t *testing.T, db *DB) {
			rawSet(t, db, appendProducerKey(nil, 7, "acme", "prod"), []byte("short"))
		}, func(b *Batch) error { _, err := b.AppendRecord(producerReq(5)); return err }, 4},
		{"producer state with sequence 0", func(t *testing.T, db *DB) {
			rawSet(t, db, appendProducerKey(nil, 7, "acme", "prod"), producerState{}.encode())
		}, func(b *Batch) error { _, err := b.ExpireDedupe(0, time.Hour); return err }, 4},
		{"malformed window entry", func(t *testing.T, db *DB) {
			rawSet(t, db, appendProducerWindowKey(nil, 7, "acme", "prod", 3), []byte("x"))
		}, func(b *Batch) error { _, err := b.AppendRecord(producerReq(3)); return err }, 4},
		{"malformed event entry", func(t *testing.T, db *DB) {
			rawSet(t, db, appendEventIDKey(nil, 7, "acme", "e"), []byte("x"))
		}, func(b *Batch) error { _, err := b.AppendRecord(eventReq("e", 0, 1)); return err }, 4},
		{"expiry key without its entry", func(t *testing.T, db *DB) {
			rawSet(t, db, appendEventExpiryKey(nil, 7, 1, "acme", "gone"), nil)
		}, func(b *Batch) error { _, err := b.ExpireDedupe(10, time.Hour); return err }, 4},
		{"malformed time index key", func(t *testing.T, db *DB) {
			rawSet(t, db, append(appendTimeIndexKey(nil, 7, 1<<62, 9), 0), nil)
		}, func(b *Batch) error { _, _, err := b.Append("a", 0, nil); return err }, 4},
		{"chunk missing in the truncated range", func(t *testing.T, db *DB) {
			require.NoError(t, db.Pebble().Delete(appendChunkKey(nil, 7, 0), pebble.NoSync))
		}, func(b *Batch) error { return b.TruncateBefore(3) }, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, p := setup(t)
			tt.damage(t, db)
			b := p.NewBatch()
			defer b.Abort()
			requireCorruption(t, tt.use(b), 7, tt.offset)
		})
	}
}

func TestOutOfOrderErrorMessage(t *testing.T) {
	err := error(&OutOfOrderError{Tenant: "acme", ProducerID: "p1", Expected: 3, Got: 5})
	require.ErrorIs(t, err, ErrOutOfOrder)
	require.NotErrorIs(t, err, ErrSequenceTooOld)
	require.Equal(t, `log: producer "p1" of tenant "acme": sequence 5 out of order, expected 3`, err.Error())
}
