package client

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Fetcher reads one page of a partition. *Client is the Fetcher of every
// ordinary reader: it routes, retries and fails over (see Client.Fetch).
// Another Fetcher, such as one bound to a single node, lets a tool read
// through a Reader with its own routing; the Reader adds no retry of its
// own, so what the Fetcher returns is what Next returns.
type Fetcher interface {
	Fetch(ctx context.Context, req *FetchRequest) (*FetchResponse, error)
}

var _ Fetcher = (*Client)(nil)

// ErrInconsistentPage matches the error of a Reader given a page that
// breaks the read contract: events out of order, before the position asked
// for, or a next position that does not pass them. The Reader does not
// move; it never skips or repeats an event to get past such a page.
var ErrInconsistentPage = errors.New("client: inconsistent fetch page")

// readerEmptyPauseDefault is ReaderConfig.EmptyPause when zero.
const readerEmptyPauseDefault = 100 * time.Millisecond

// readerWaitMax is the longest long poll a server honours
// (herald.proto: max_wait_ms is capped at 30,000).
const readerWaitMax = 30 * time.Second

// startKind says what a Start counts in.
type startKind uint8

const (
	startEarliest startKind = iota // the zero Start
	startLatest
	startOffset
	startSequence
	startTime
)

// Start is where a Reader reads from: FromEarliest (the zero Start),
// FromLatest, FromOffset, FromSequence (a tenant read) or FromTime. A
// Reader's Position is a Start too: the exact place to resume. Starts are
// comparable with ==.
type Start struct {
	kind startKind
	n    uint64 // the offset or sequence
	at   int64  // the time, Unix nanoseconds
}

// FromEarliest starts at the partition's first retained event, or the
// tenant's first event (sequence 1) for a tenant read.
func FromEarliest() Start { return Start{kind: startEarliest} }

// FromLatest starts after the last event: only events produced from now
// on. Its first page is empty and only fixes the position (the leader
// answers it at once, without waiting).
func FromLatest() Start { return Start{kind: startLatest} }

// FromOffset starts at a partition offset. A tenant read from an offset
// scans the partition and keeps the tenant's events.
func FromOffset(offset uint64) Start { return Start{kind: startOffset, n: offset} }

// FromSequence starts at a tenant sequence (1 is the first); it needs
// ReaderConfig.TenantID.
func FromSequence(sequence uint64) Start { return Start{kind: startSequence, n: sequence} }

// FromTime starts at the first event produced at or after t (the leader's
// clock when it was produced); the read then goes on by offset.
func FromTime(t time.Time) Start { return Start{kind: startTime, at: t.UnixNano()} }

// Offset returns the offset of a FromOffset start.
func (s Start) Offset() (uint64, bool) { return s.n, s.kind == startOffset }

// Sequence returns the sequence of a FromSequence start.
func (s Start) Sequence() (uint64, bool) { return s.n, s.kind == startSequence }

// String is "earliest", "latest", "offset:N", "seq:N" or "time:RFC3339",
// the spelling of herald consume --from.
func (s Start) String() string {
	switch s.kind {
	case startLatest:
		return "latest"
	case startOffset:
		return fmt.Sprintf("offset:%d", s.n)
	case startSequence:
		return fmt.Sprintf("seq:%d", s.n)
	case startTime:
		return "time:" + time.Unix(0, s.at).UTC().Format(time.RFC3339Nano)
	default:
		return "earliest"
	}
}

// ReaderConfig says what a Reader reads and how.
type ReaderConfig struct {
	// Topic and Partition name the partition read.
	Topic     string
	Partition uint32
	// TenantID, when set, keeps only this tenant's events; Partition must
	// then be the tenant's (Client.TenantReader finds it).
	TenantID string
	// Start is where the first page starts; the zero Start is FromEarliest.
	Start Start
	// PageEventsMax and PageBytesMax bound a page (FetchRequest.max_events
	// and max_bytes); 0 takes the server's defaults (500 events, 4 MiB),
	// and the server caps them (10,000 events, 16 MiB).
	PageEventsMax uint32
	PageBytesMax  uint32
	// Wait is the long poll: when nothing new is readable, the replica
	// waits up to this long for its log to grow before answering with an
	// empty page. 0 answers at once. At most 30s; with a *Client, kept a
	// second below its RequestTimeout, which bounds each attempt.
	Wait time.Duration
	// EmptyPause applies when Wait > 0: an empty page that came back
	// sooner than EmptyPause (a server that does not long-poll) is
	// followed by a pause of EmptyPause inside Next, so a tailing loop
	// never spins. 0 means 100ms.
	EmptyPause time.Duration
}

// Validate reports every problem with the configuration at once.
func (c *ReaderConfig) Validate() error {
	var errs []error
	if c.Topic == "" {
		errs = append(errs, InvalidArgument("topic", "a reader needs a topic"))
	}
	if c.Start.kind == startSequence {
		if c.TenantID == "" {
			errs = append(errs, InvalidArgument("tenant_id", "a read from a tenant sequence needs the tenant id"))
		}
		if c.Start.n == 0 {
			errs = append(errs, InvalidArgument("sequence", "tenant sequences start at 1"))
		}
	}
	if c.Wait < 0 || c.Wait > readerWaitMax {
		errs = append(errs, InvalidArgument("max_wait_ms", "wait %s: want 0 to %s", c.Wait, readerWaitMax))
	}
	if c.EmptyPause < 0 {
		errs = append(errs, InvalidArgument("empty_pause", "empty pause %s is negative", c.EmptyPause))
	}
	return errors.Join(errs...)
}

// Reader is a cursor over one partition, or one tenant's events in it:
// each Next reads the page after the previous one, long-polling when
// ReaderConfig.Wait is set, and Position says where the next page starts.
//
// The position moves only past the events a successful Next returned:
// after an error it stays where it was, and a Reader started (by
// NewReader) at Position reads exactly the events this one would have
// read next, with no gap and no repeat. A read that cannot go on where
// it is fails with a typed error and does not jump: an offset below the
// partition's low watermark (retention removed it) is an
// *OffsetOutOfRangeError naming the bounds, and skipping to them is the
// caller's decision (a new Reader FromOffset(Low)).
//
// Retries and failover are the Fetcher's: with a *Client, NOT_LEADER,
// NO_LEADER and unavailable nodes are retried with backoff on another
// node, at most Config.MaxRetries times; an error that outlasts them is
// returned, and Next may be called again to go on from the same place.
//
// A Reader is owned by one goroutine: its methods must not be called
// concurrently. It holds no goroutine or connection of its own.
type Reader struct {
	fetcher Fetcher
	cfg     ReaderConfig
	pos     Start
	atEnd   bool
}

// NewReader returns a Reader of cfg.Topic's partition cfg.Partition
// through f (usually a *Client). It reads nothing until Next.
//
// With a *Client, the long poll asked of the server is kept below the
// Client's RequestTimeout (see waitWithin), so that the answer arrives
// within the attempt.
func NewReader(f Fetcher, cfg ReaderConfig) (*Reader, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.EmptyPause == 0 {
		cfg.EmptyPause = readerEmptyPauseDefault
	}
	if c, ok := f.(*Client); ok {
		cfg.Wait = waitWithin(cfg.Wait, c.cfg.RequestTimeout)
	}
	return &Reader{fetcher: f, cfg: cfg, pos: cfg.Start}, nil
}

// readerWaitMargin is how long before the end of an attempt a long poll
// ends at the latest, for the answer to travel back.
const readerWaitMargin = time.Second

// waitWithin returns wait, shortened if need be to end readerWaitMargin
// (or, for short timeouts, half the timeout) before an attempt of
// requestTimeout does: a long poll that outlasted its attempt would fail
// with DeadlineExceeded instead of answering an empty page.
func waitWithin(wait, requestTimeout time.Duration) time.Duration {
	return min(wait, max(requestTimeout-readerWaitMargin, requestTimeout/2))
}

// TenantReader returns a Reader of tenant's events in topic, from the
// tenant's partition; cfg.Topic, cfg.Partition and cfg.TenantID are set
// here. The topic must be ordered per tenant: under other orderings a
// tenant's events span partitions (read them with NewReader, partition by
// partition), and TenantReader returns an InvalidArgument error.
func (c *Client) TenantReader(ctx context.Context, topic, tenant string, cfg ReaderConfig) (*Reader, error) {
	if tenant == "" {
		return nil, InvalidArgument("tenant_id", "a tenant reader needs a tenant id")
	}
	shape, err := c.shape(ctx, topic)
	if err != nil {
		return nil, err
	}
	switch shape.ordering {
	case OrderingPerKey, OrderingNone:
		return nil, InvalidArgument("ordering", "topic %q is ordered %s: a tenant's events span partitions", topic, shape.ordering)
	}
	cfg.Topic, cfg.TenantID = topic, tenant
	cfg.Partition = PartitionForTenant(tenant, shape.partitions)
	return NewReader(c, cfg)
}

// Topic is the topic r reads.
func (r *Reader) Topic() string { return r.cfg.Topic }

// Partition is the partition r reads.
func (r *Reader) Partition() uint32 { return r.cfg.Partition }

// TenantID is the tenant whose events r reads; "" for every tenant's.
func (r *Reader) TenantID() string { return r.cfg.TenantID }

// Position is where the next page starts: the configured Start until a
// page fixes it, then FromOffset or FromSequence (a tenant read from the
// earliest point, the latest point or a sequence goes on by sequence;
// every other read by offset). Give it to a new Reader as its Start to
// resume.
func (r *Reader) Position() Start { return r.pos }

// AtEnd reports whether the last page reached the end of the log as the
// replica that answered knew it: for a read by offset, the position is at
// the page's high watermark; for a read by sequence, the page found no
// event at the position. False before the first page. New events may of
// course come after it.
func (r *Reader) AtEnd() bool { return r.atEnd }

// Next reads the page at Position and moves past its events. The page may
// be empty: the long poll (ReaderConfig.Wait) ended with nothing new, or
// a tenant read scanned only other tenants' events (the position moved
// anyway). Its HighWatermark and LowWatermark are the answering replica's.
//
// On error the position does not move; see Reader for the errors.
func (r *Reader) Next(ctx context.Context) (*FetchResponse, error) {
	req := r.request()
	asked := time.Now()
	resp, err := r.fetcher.Fetch(ctx, req)
	if err != nil {
		return nil, err
	}
	next, atEnd, err := r.advance(resp)
	if err != nil {
		return nil, err
	}
	if len(resp.GetEvents()) == 0 && r.cfg.Wait > 0 && time.Since(asked) < r.cfg.EmptyPause {
		if err := sleep(ctx, r.cfg.EmptyPause); err != nil {
			return nil, err
		}
	}
	r.pos, r.atEnd = next, atEnd
	return resp, nil
}

// request is the fetch of the page at r's position.
func (r *Reader) request() *FetchRequest {
	req := &FetchRequest{
		Topic: r.cfg.Topic, Partition: r.cfg.Partition, TenantId: r.cfg.TenantID,
		MaxEvents: r.cfg.PageEventsMax, MaxBytes: r.cfg.PageBytesMax,
		MaxWaitMs: uint32(r.cfg.Wait / time.Millisecond),
	}
	switch p := r.pos; p.kind {
	case startEarliest:
		req.Start = &FetchFromPosition{Position: Earliest}
	case startLatest:
		req.Start = &FetchFromPosition{Position: Latest}
	case startOffset:
		req.Start = &FetchFromOffset{Offset: p.n}
	case startSequence:
		req.Start = &FetchFromSequence{Sequence: p.n}
	case startTime:
		req.Start = &FetchFromTime{TimeUnixNano: p.at}
	}
	return req
}

// bySequence reports whether a read from r's position goes on by tenant
// sequence (the server answers next_sequence for it) rather than offset.
func (r *Reader) bySequence() bool {
	switch r.pos.kind {
	case startSequence:
		return true
	case startEarliest, startLatest:
		return r.cfg.TenantID != ""
	}
	return false
}

// advance checks resp against the read contract and returns the position
// after it and whether it reached the end of the log.
func (r *Reader) advance(resp *FetchResponse) (Start, bool, error) {
	events := resp.GetEvents()
	if r.bySequence() {
		// What the page was asked from; earliest is sequence 1, latest
		// only learns where the tenant's end is.
		from := uint64(1)
		if r.pos.kind == startSequence {
			from = r.pos.n
		}
		next := resp.GetNextSequence()
		if r.pos.kind == startLatest {
			if len(events) > 0 || next == 0 {
				return r.pos, false, r.inconsistent("a latest read answered %d events and next sequence %d", len(events), next)
			}
			return FromSequence(next), true, nil
		}
		for i, e := range events {
			if e.GetSequence() < from || (i > 0 && e.GetSequence() <= events[i-1].GetSequence()) {
				return r.pos, false, r.inconsistent("event %d of the page has sequence %d, reading from %d", i, e.GetSequence(), from)
			}
		}
		if len(events) > 0 && next <= events[len(events)-1].GetSequence() {
			return r.pos, false, r.inconsistent("next sequence %d does not pass the page's last event (%d)", next, events[len(events)-1].GetSequence())
		}
		if next < from {
			return r.pos, false, r.inconsistent("next sequence %d is before %d", next, from)
		}
		return FromSequence(next), next == from, nil
	}
	next := resp.GetNextOffset()
	if from, ok := r.pos.Offset(); ok {
		if next < from {
			return r.pos, false, r.inconsistent("next offset %d is before %d", next, from)
		}
		if len(events) > 0 && events[0].GetOffset() < from {
			return r.pos, false, r.inconsistent("the page starts at offset %d, reading from %d", events[0].GetOffset(), from)
		}
	}
	for i, e := range events {
		if i > 0 && e.GetOffset() <= events[i-1].GetOffset() {
			return r.pos, false, r.inconsistent("event %d of the page has offset %d after %d", i, e.GetOffset(), events[i-1].GetOffset())
		}
	}
	if len(events) > 0 && next <= events[len(events)-1].GetOffset() {
		return r.pos, false, r.inconsistent("next offset %d does not pass the page's last event (%d)", next, events[len(events)-1].GetOffset())
	}
	return FromOffset(next), next >= resp.GetHighWatermark(), nil
}

// inconsistent is an ErrInconsistentPage error about r's current page.
func (r *Reader) inconsistent(format string, args ...any) error {
	return fmt.Errorf("%w: read of %s/%d from %s: %s", ErrInconsistentPage, r.cfg.Topic, r.cfg.Partition, r.pos, fmt.Sprintf(format, args...))
}
