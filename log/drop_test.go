package log

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"
)

func TestDropRemovesOnePartitionOnly(t *testing.T) {
	fs := vfs.NewMem()
	db, err := Open(Options{Dir: "db", FS: fs, Logger: discardLogger()})
	require.NoError(t, err)
	tenants := []string{"a", "b"}
	views := map[uint64]partitionView{}
	for _, id := range []uint64{1, 2, 3} {
		p := partition(t, db, id)
		commitBatch(t, p, 10, entries(5+int(id), tenants...))
		views[id] = view(t, p, tenants...)
	}
	dropped := partition(t, db, 2)
	require.NotEmpty(t, rawKeys(t, db, 2))

	require.NoError(t, dropped.Drop())
	require.Empty(t, rawKeys(t, db, 2))
	empty := partitionView{ByTenant: map[string][]Record{"a": nil, "b": nil}, NextSequence: map[string]uint64{"a": 1, "b": 1}}
	require.Equal(t, empty, view(t, dropped, tenants...))
	_, ok, err := dropped.OffsetOfSequence("a", 1)
	require.NoError(t, err)
	require.False(t, ok)
	_, err = dropped.Read(1, 1, 1)
	require.ErrorIs(t, err, ErrOffsetOutOfRange)
	for _, id := range []uint64{1, 3} {
		require.Equal(t, views[id], view(t, partition(t, db, id), tenants...))
	}

	// The dropped partition stays usable and starts again from offset 0,
	// sequence 1, applied index 0.
	records := commitBatch(t, dropped, 1, entries(1, "a"))
	require.Equal(t, Record{Offset: 0, Sequence: 1, Tenant: "a", TimestampUnixNano: 1_000_000, Body: []byte("body-0-a")}, records[0])
	require.NoError(t, dropped.Drop())
	require.NoError(t, db.Close())

	// The drop was synced and survives a reopen.
	db = openDB(t, fs)
	require.Equal(t, empty, view(t, partition(t, db, 2), tenants...))
	for _, id := range []uint64{1, 3} {
		require.Equal(t, views[id], view(t, partition(t, db, id), tenants...))
	}
}
