package partition

import (
	"errors"
	"sync"
	"unsafe"

	heraldlog "github.com/heraldlog/herald/log"
)

// TailOptions configures a Tail. Zero values take the defaults.
type TailOptions struct {
	// PageRecords and PageBytes bound one read of the log into the tail
	// (one fill): 500 records, 1 MiB of bodies.
	PageRecords int
	PageBytes   int
	// MaxBytes bounds what the tail holds (entries with their record
	// bodies and encodings): 8 MiB. The oldest entries go first; dropped
	// ones are freed when the array is next reallocated, so the tail's
	// memory is at most about 1.25 × MaxBytes, plus the page just read.
	MaxBytes int
	// Encode turns a record into the bytes every subscriber is sent (the
	// node's wire encoding). It is called once per record the tail reads,
	// never per subscriber. Required.
	Encode func(*heraldlog.Record) []byte
}

// EnsureDefaults fills zero fields with the defaults.
func (o *TailOptions) EnsureDefaults() {
	if o.PageRecords <= 0 {
		o.PageRecords = 500
	}
	if o.PageBytes <= 0 {
		o.PageBytes = 1 << 20
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 8 << 20
	}
}

// Validate reports what is wrong with o (after EnsureDefaults).
func (o *TailOptions) Validate() error {
	if o.Encode == nil {
		return errors.New("partition: tail options: Encode is required")
	}
	if o.MaxBytes < o.PageBytes {
		return errors.New("partition: tail options: MaxBytes is below PageBytes")
	}
	return nil
}

// TailEntry is one record of a Tail with its encoding. Both are shared by
// every reader of the tail: read-only.
type TailEntry struct {
	Record heraldlog.Record
	Wire   []byte
}

// Tail is the shared live edge of one replica's log for its subscribers:
// the most recent records, read from the log and encoded once however
// many subscribers want them (the fan-out of docs/architecture.md,
// "Subscriptions"). A subscriber at the edge takes its next entries from
// the tail; one further behind than the tail reaches reads the log on its
// own, one page at a time (ReadPage), so a slow subscriber costs one page
// of memory and never holds the others back.
//
// The tail is filled on demand by the first subscriber that asks for the
// offset at its end once the replica has applied it (no goroutine of its
// own); others asking meanwhile wait for that read and share its result.
// It holds a contiguous run of offsets [first, next).
//
// Safe for concurrent use.
type Tail struct {
	r    *Replica
	opts TailOptions

	mu struct {
		sync.Mutex
		entries []TailEntry // offsets first .. next-1, contiguous
		first   uint64
		next    uint64
		bytes   int
	}
}

// NewTail returns an empty tail over r's log.
func NewTail(r *Replica, opts TailOptions) (*Tail, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	return &Tail{r: r, opts: opts}, nil
}

// Since returns entries with offsets from, from+1, … (contiguous, in
// offset order), at most maxRecords of them and maxBytes of encodings (at
// least one entry when there is one). held is false when from is below
// what the tail holds: the caller reads the log itself (ReadPage). An
// empty result with held true means the replica has applied nothing at or
// after from yet (wait on Replica.Changed).
//
// Offsets below the replica's low watermark are the log's
// *OffsetOutOfRangeError, like a read.
func (t *Tail) Since(from uint64, maxRecords, maxBytes int) (entries []TailEntry, held bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.mu.entries) == 0 || from > t.mu.next {
		// Nothing held near from: the tail starts over at from. Only a
		// subscriber at the live edge asks past the end, so the edge moves
		// with it.
		t.resetLocked(from)
	}
	if from < t.mu.first {
		return nil, false, nil
	}
	if from == t.mu.next {
		if err := t.fillLocked(); err != nil {
			return nil, true, err
		}
	}
	i := int(from - t.mu.first)
	if i >= len(t.mu.entries) {
		return nil, true, nil
	}
	end, bytes := i, 0
	for end < len(t.mu.entries) && end-i < maxRecords {
		size := len(t.mu.entries[end].Wire)
		if end > i && bytes+size > maxBytes {
			break
		}
		bytes += size
		end++
	}
	// Capped so that an append by a later fill never writes into what the
	// caller holds.
	return t.mu.entries[i:end:end], true, nil
}

// resetLocked empties the tail, to start at from.
func (t *Tail) resetLocked(from uint64) {
	t.mu.entries = nil
	t.mu.first, t.mu.next, t.mu.bytes = from, from, 0
}

// fillLocked reads the page after the tail's end from the log, encodes it
// and appends it, dropping the oldest entries past MaxBytes.
func (t *Tail) fillLocked() error {
	if t.mu.next >= t.r.HighWatermark() {
		return nil
	}
	recs, err := t.r.Read(t.mu.next, t.opts.PageRecords, t.opts.PageBytes)
	if err != nil {
		return err
	}
	held := len(t.mu.entries)
	for i := range recs {
		e := TailEntry{Record: recs[i]}
		e.Wire = t.opts.Encode(&e.Record)
		t.mu.entries = append(t.mu.entries, e)
		t.mu.bytes += entrySize(&e)
	}
	if len(recs) > 0 {
		t.mu.next = recs[len(recs)-1].Offset + 1
	}
	// Never drop the page just read (its reader is waiting for it): the
	// tail may exceed MaxBytes by at most one page.
	drop := 0
	for t.mu.bytes > t.opts.MaxBytes && drop < held {
		t.mu.bytes -= entrySize(&t.mu.entries[drop])
		drop++
	}
	if drop > 0 {
		// Reslice, never copy here: a full tail drops a few entries on
		// every fill, and copying the rest each time cost a copy of the
		// whole tail per fill (the top of a node's profile with thousands
		// of subscribers). The dropped entries stay in the array until an
		// append outgrows it and copies the live ones into a new one
		// (amortised: append grows the array by at least a quarter), so
		// the tail holds at most about 1.25 × MaxBytes (plus one page). Readers keep
		// capped slices of the old arrays, which appends never write.
		t.mu.entries = t.mu.entries[drop:]
		t.mu.first += uint64(drop)
	}
	return nil
}

// tailEntryBytes is what an entry costs besides its record's body and its
// encoding: the entry itself in the tail's array.
const tailEntryBytes = int(unsafe.Sizeof(TailEntry{}))

func entrySize(e *TailEntry) int { return tailEntryBytes + len(e.Record.Body) + len(e.Wire) }

// ReadPage reads the entries from offset from on the caller's behalf,
// outside the tail (for a subscriber behind it), with the same limits and
// encoding as Since. It holds nothing of the tail.
func (t *Tail) ReadPage(from uint64, maxRecords, maxBytes int) ([]TailEntry, error) {
	recs, err := t.r.Read(from, min(maxRecords, t.opts.PageRecords), min(maxBytes, t.opts.PageBytes))
	if err != nil {
		return nil, err
	}
	out := make([]TailEntry, len(recs))
	for i := range recs {
		out[i] = TailEntry{Record: recs[i]}
		out[i].Wire = t.opts.Encode(&out[i].Record)
	}
	return out, nil
}

// Held reports the offsets the tail holds, [first, next).
func (t *Tail) Held() (first, next uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.mu.first, t.mu.next
}
