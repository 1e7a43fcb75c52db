package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldtest"
)

// scriptedFetcher answers each Fetch with the next of its pages and
// records the requests.
type scriptedFetcher struct {
	pages []scriptedPage
	reqs  []*client.FetchRequest
}

type scriptedPage struct {
	resp *client.FetchResponse
	err  error
}

func (f *scriptedFetcher) Fetch(_ context.Context, req *client.FetchRequest) (*client.FetchResponse, error) {
	f.reqs = append(f.reqs, req)
	if len(f.pages) == 0 {
		return nil, errors.New("scriptedFetcher: no page left")
	}
	p := f.pages[0]
	f.pages = f.pages[1:]
	return p.resp, p.err
}

// at builds events at the given offsets (sequence = offset + 1).
func at(offsets ...uint64) []*client.Event {
	out := make([]*client.Event, len(offsets))
	for i, o := range offsets {
		out[i] = &client.Event{Offset: o, Sequence: o + 1, TenantId: "acme"}
	}
	return out
}

func TestReaderConfigValidateReportsEveryProblem(t *testing.T) {
	cfg := client.ReaderConfig{Start: client.FromSequence(0), Wait: time.Minute, EmptyPause: -1}
	err := cfg.Validate()
	require.Error(t, err)
	for _, want := range []string{"topic", "tenant id", "start at 1", "wait 1m0s", "empty pause"} {
		assert.Contains(t, err.Error(), want)
	}
	assert.ErrorIs(t, err, client.ErrInvalidArgument)
	_, err = client.NewReader(&scriptedFetcher{}, cfg)
	assert.Error(t, err)
}

// The request each start sends, and where the read goes on from.
func TestReaderRequestsAndPositions(t *testing.T) {
	cases := []struct {
		name     string
		tenant   string
		start    client.Start
		resp     *client.FetchResponse
		check    func(t *testing.T, req *client.FetchRequest)
		wantNext client.Start
		wantEnd  bool
	}{
		{
			name: "earliest of a partition", start: client.FromEarliest(),
			resp:  &client.FetchResponse{Events: at(4, 5), NextOffset: 6, HighWatermark: 9, LowWatermark: 4},
			check: func(t *testing.T, req *client.FetchRequest) { assert.Equal(t, client.Earliest, req.GetPosition()) },
			// The read goes on by offset.
			wantNext: client.FromOffset(6),
		},
		{
			name: "earliest of a tenant", tenant: "acme", start: client.FromEarliest(),
			resp:     &client.FetchResponse{Events: at(0, 2), NextSequence: 4, NextOffset: 3, HighWatermark: 3},
			check:    func(t *testing.T, req *client.FetchRequest) { assert.Equal(t, "acme", req.GetTenantId()) },
			wantNext: client.FromSequence(4),
		},
		{
			name: "latest of a partition", start: client.FromLatest(),
			resp:     &client.FetchResponse{NextOffset: 9, HighWatermark: 9},
			check:    func(t *testing.T, req *client.FetchRequest) { assert.Equal(t, client.Latest, req.GetPosition()) },
			wantNext: client.FromOffset(9), wantEnd: true,
		},
		{
			name: "latest of a tenant", tenant: "acme", start: client.FromLatest(),
			resp:     &client.FetchResponse{NextOffset: 9, NextSequence: 3, HighWatermark: 9},
			wantNext: client.FromSequence(3), wantEnd: true,
		},
		{
			name: "offset, end of the log", start: client.FromOffset(7),
			resp:     &client.FetchResponse{Events: at(7, 8), NextOffset: 9, HighWatermark: 9},
			check:    func(t *testing.T, req *client.FetchRequest) { assert.Equal(t, uint64(7), req.GetOffset()) },
			wantNext: client.FromOffset(9), wantEnd: true,
		},
		{
			name: "tenant scan by offset past other tenants", tenant: "acme", start: client.FromOffset(2),
			resp:     &client.FetchResponse{NextOffset: 5, HighWatermark: 9},
			wantNext: client.FromOffset(5),
		},
		{
			name: "sequence, nothing new", tenant: "acme", start: client.FromSequence(3),
			resp:     &client.FetchResponse{NextSequence: 3, HighWatermark: 9},
			check:    func(t *testing.T, req *client.FetchRequest) { assert.Equal(t, uint64(3), req.GetSequence()) },
			wantNext: client.FromSequence(3), wantEnd: true,
		},
		{
			name: "time goes on by offset", tenant: "acme", start: client.FromTime(time.Unix(0, 42)),
			resp:     &client.FetchResponse{Events: at(3), NextOffset: 4, NextSequence: 5, HighWatermark: 9},
			check:    func(t *testing.T, req *client.FetchRequest) { assert.Equal(t, int64(42), req.GetTimeUnixNano()) },
			wantNext: client.FromOffset(4),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &scriptedFetcher{pages: []scriptedPage{{resp: tc.resp}}}
			r, err := client.NewReader(f, client.ReaderConfig{
				Topic: "orders", Partition: 2, TenantID: tc.tenant, Start: tc.start,
				PageEventsMax: 7, PageBytesMax: 1 << 10, Wait: 1500 * time.Millisecond,
			})
			require.NoError(t, err)
			assert.Equal(t, tc.start, r.Position())
			assert.False(t, r.AtEnd())
			page, err := r.Next(context.Background())
			require.NoError(t, err)
			assert.Equal(t, tc.resp, page)
			require.Len(t, f.reqs, 1)
			req := f.reqs[0]
			assert.Equal(t, "orders", req.GetTopic())
			assert.Equal(t, uint32(2), req.GetPartition())
			assert.Equal(t, uint32(7), req.GetMaxEvents())
			assert.Equal(t, uint32(1<<10), req.GetMaxBytes())
			assert.Equal(t, uint32(1500), req.GetMaxWaitMs())
			if tc.check != nil {
				tc.check(t, req)
			}
			assert.Equal(t, tc.wantNext, r.Position())
			assert.Equal(t, tc.wantEnd, r.AtEnd())
		})
	}
}

// A page that breaks the read contract is refused and the Reader stays
// where it was: it neither skips nor repeats an event to get past it.
func TestReaderRefusesInconsistentPages(t *testing.T) {
	cases := []struct {
		name   string
		tenant string
		start  client.Start
		resp   *client.FetchResponse
	}{
		{name: "page before the offset asked", start: client.FromOffset(5), resp: &client.FetchResponse{Events: at(4, 5), NextOffset: 6}},
		{name: "next offset does not pass the page", start: client.FromOffset(5), resp: &client.FetchResponse{Events: at(5, 6), NextOffset: 6}},
		{name: "next offset goes back", start: client.FromOffset(5), resp: &client.FetchResponse{NextOffset: 3}},
		{name: "offsets out of order", start: client.FromOffset(5), resp: &client.FetchResponse{Events: at(6, 5), NextOffset: 7}},
		{name: "sequence before the one asked", tenant: "acme", start: client.FromSequence(5), resp: &client.FetchResponse{Events: at(2), NextSequence: 4}},
		{name: "next sequence does not pass the page", tenant: "acme", start: client.FromSequence(1), resp: &client.FetchResponse{Events: at(0, 1), NextSequence: 2}},
		{name: "latest of a tenant with events", tenant: "acme", start: client.FromLatest(), resp: &client.FetchResponse{Events: at(0), NextSequence: 2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &scriptedFetcher{pages: []scriptedPage{{resp: tc.resp}}}
			r, err := client.NewReader(f, client.ReaderConfig{Topic: "orders", TenantID: tc.tenant, Start: tc.start})
			require.NoError(t, err)
			page, err := r.Next(context.Background())
			assert.ErrorIs(t, err, client.ErrInconsistentPage)
			assert.Nil(t, page)
			assert.Equal(t, tc.start, r.Position())
		})
	}
}

// An error leaves the position where it was, so the next call reads the
// same page again.
func TestReaderStaysOnError(t *testing.T) {
	oor := client.OffsetOutOfRange(3, 5, 9)
	f := &scriptedFetcher{pages: []scriptedPage{
		{err: oor},
		{resp: &client.FetchResponse{Events: at(3), NextOffset: 4, HighWatermark: 9}},
	}}
	r, err := client.NewReader(f, client.ReaderConfig{Topic: "orders", Start: client.FromOffset(3)})
	require.NoError(t, err)
	_, err = r.Next(context.Background())
	var got *client.OffsetOutOfRangeError
	require.ErrorAs(t, err, &got)
	assert.Equal(t, client.OffsetOutOfRangeError{Requested: 3, Low: 5, High: 9}, *got)
	assert.Equal(t, client.FromOffset(3), r.Position())

	_, err = r.Next(context.Background())
	require.NoError(t, err)
	assert.Equal(t, uint64(3), f.reqs[1].GetOffset())
	assert.Equal(t, client.FromOffset(4), r.Position())
}

// A long-polling Reader given an empty page at once pauses before
// returning, so a tailing loop never spins; one that does not long-poll
// does not.
func TestReaderPausesAfterAnEmptyAnswerThatCameBackAtOnce(t *testing.T) {
	const pause = 50 * time.Millisecond
	for _, wait := range []time.Duration{0, time.Second} {
		f := &scriptedFetcher{pages: []scriptedPage{{resp: &client.FetchResponse{NextOffset: 2, HighWatermark: 2}}}}
		r, err := client.NewReader(f, client.ReaderConfig{Topic: "orders", Start: client.FromOffset(2), Wait: wait, EmptyPause: pause})
		require.NoError(t, err)
		began := time.Now()
		_, err = r.Next(context.Background())
		require.NoError(t, err)
		if wait > 0 {
			assert.GreaterOrEqual(t, time.Since(began), pause, "wait %s", wait)
		} else {
			assert.Less(t, time.Since(began), pause, "wait %s", wait)
		}
	}

	// The pause ends with the context, with its error.
	f := &scriptedFetcher{pages: []scriptedPage{{resp: &client.FetchResponse{NextOffset: 2, HighWatermark: 2}}}}
	r, err := client.NewReader(f, client.ReaderConfig{Topic: "orders", Start: client.FromOffset(2), Wait: time.Second, EmptyPause: time.Hour})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(10*time.Millisecond, cancel)
	_, err = r.Next(ctx)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestStartString(t *testing.T) {
	assert.Equal(t, "earliest", client.Start{}.String())
	assert.Equal(t, "latest", client.FromLatest().String())
	assert.Equal(t, "offset:5", client.FromOffset(5).String())
	assert.Equal(t, "seq:7", client.FromSequence(7).String())
	assert.Equal(t, "time:2025-01-02T03:04:05Z", client.FromTime(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)).String())
	o, ok := client.FromOffset(5).Offset()
	assert.True(t, ok)
	assert.Equal(t, uint64(5), o)
	_, ok = client.FromSequence(5).Offset()
	assert.False(t, ok)
	s, ok := client.FromSequence(5).Sequence()
	assert.True(t, ok)
	assert.Equal(t, uint64(5), s)
}

// Through a Client, the long poll asked of the server ends before the
// attempt does.
func TestReaderKeepsItsWaitBelowTheRequestTimeout(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	cluster.CreateTopic("orders", 1, 0)
	c := newClient(t, cluster.Addrs(), func(cfg *client.Config) { cfg.RequestTimeout = 3 * time.Second })
	node := cluster.Nodes[0]
	waits := make(chan uint32, 1)
	node.Handle("Fetch", func(ctx context.Context, req any) (any, error) {
		waits <- req.(*client.FetchRequest).GetMaxWaitMs()
		return &client.FetchResponse{NextOffset: 0}, nil
	})
	r, err := client.NewReader(c, client.ReaderConfig{Topic: "orders", Start: client.FromOffset(0), Wait: 10 * time.Second, EmptyPause: time.Nanosecond})
	require.NoError(t, err)
	_, err = r.Next(context.Background())
	require.NoError(t, err)
	assert.Equal(t, uint32(2000), <-waits)
}
