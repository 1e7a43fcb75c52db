package log

import (
	"bytes"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// checkPrefix reports whether records are a dense run from offset from,
// each equal to want at its offset.
func checkPrefix(records []Record, from uint64, want func(offset uint64) Record) error {
	for i, r := range records {
		if r.Offset != from+uint64(i) {
			return errors.New("offsets not dense")
		}
		w := want(r.Offset)
		if r.Sequence != w.Sequence || r.Tenant != w.Tenant || !bytes.Equal(r.Body, w.Body) {
			return errors.New("record differs from what was appended")
		}
	}
	return nil
}

func TestReadsRunConcurrentlyWithTheWriter(t *testing.T) {
	db := openMemDB(t)
	p := partition(t, db, 1)
	tenants := []string{"a", "b", "c"}
	const batches = 60

	// The writer publishes each batch's records before committing it.
	var mu sync.Mutex
	var appended []Record
	want := func(offset uint64) Record {
		mu.Lock()
		defer mu.Unlock()
		return appended[offset]
	}

	var done atomic.Bool
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for reader := range 3 {
		wg.Go(func() {
			// At least one pass, however fast the writer is.
			for first := true; first || !done.Load(); first = false {
				high := p.HighWatermark()
				from := high / 2
				records, err := p.Read(from, 50, 1<<20)
				if err == nil {
					err = checkPrefix(records, from, want)
				}
				if err == nil {
					tenant := tenants[reader]
					records, err = p.ReadTenant(tenant, 1, 20, 1<<20)
					for i, r := range records {
						if err == nil && (r.Tenant != tenant || r.Sequence != uint64(i+1) || r.Offset >= p.HighWatermark()) {
							err = errors.New("tenant read out of order")
						}
					}
				}
				if err == nil {
					_, err = p.NextSequence(tenants[reader])
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for i := range batches {
		es := entries(1+i%17, tenants...)
		stamp := stamper(p)
		b := p.NewBatch()
		var batch []Record
		for _, e := range es {
			offset, seq, err := b.Append(e.tenant, e.ts, e.body)
			require.NoError(t, err)
			batch = append(batch, Record{Offset: offset, Sequence: seq, Tenant: e.tenant, TimestampUnixNano: stamp(e.ts), Body: e.body})
		}
		mu.Lock()
		appended = append(appended, batch...)
		mu.Unlock()
		require.NoError(t, b.Commit(uint64(i+1)))
	}
	done.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, appended, readAll(t, p))
}

func TestCloseWaitsForOperationsInProgress(t *testing.T) {
	db := openMemDB(t)
	p := partition(t, db, 1)
	for i := range 10 {
		commitBatch(t, p, uint64(i+1), entries(50, "a", "b"))
	}
	s, err := p.Snapshot()
	require.NoError(t, err)

	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 4 {
		wg.Go(func() {
			for {
				if _, err := p.Read(0, 100, 1<<20); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Go(func() {
		for {
			if _, err := s.WriteTo(&bytes.Buffer{}); err != nil {
				errs <- err
				return
			}
		}
	})
	require.NoError(t, db.Close())
	wg.Wait()
	close(errs)
	for err := range errs {
		require.ErrorIs(t, err, ErrClosed)
	}
	require.NoError(t, s.Close())
}
