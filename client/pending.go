package client

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"google.golang.org/protobuf/proto"
)

// pending counts the bytes of events in produce calls admitted and not yet
// answered (waiting for a partition's pause, a retry or their reply), and
// makes calls wait, or fail, while a limit would be passed. It is safe for
// concurrent use; waiting happens outside its lock.
type pending struct {
	// limit is the bound in bytes; 0 means none.
	limit int64
	// log receives a DEBUG line when a call waits for room; nil for none.
	log *slog.Logger

	mu struct {
		sync.Mutex
		bytes int64
		// freed is closed, and replaced, whenever bytes fall: waiters for
		// room select on it.
		freed chan struct{}
	}
}

func newPending(limit int64, log *slog.Logger) *pending {
	p := &pending{limit: limit, log: log}
	p.mu.freed = make(chan struct{})
	return p
}

// load returns the bytes counted now.
func (p *pending) load() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.bytes
}

// add counts n bytes without looking at the limit (a Producer's own count,
// or the Client's once admitted).
func (p *pending) add(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.bytes += n
}

// tryAdd counts n bytes if they fit under the limit, or if nothing is
// counted (a call larger than the limit goes alone rather than never),
// and otherwise returns a channel closed when bytes are next released.
func (p *pending) tryAdd(n int64) (bool, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.limit <= 0 || p.mu.bytes == 0 || p.mu.bytes+n <= p.limit {
		p.mu.bytes += n
		return true, nil
	}
	return false, p.mu.freed
}

// acquire counts n bytes, waiting for room under the limit while ctx lasts
// (block) or failing at once with an ErrThrottled error (fail-fast).
func (p *pending) acquire(ctx context.Context, op string, n int64, failFast bool) error {
	for logged := false; ; logged = true {
		ok, freed := p.tryAdd(n)
		if ok {
			return nil
		}
		if failFast {
			return throttledLocally(op, LimitPendingBytes, 0,
				fmt.Sprintf("%d bytes would pass the client's max pending bytes %d", n, p.limit))
		}
		if !logged && p.log != nil {
			p.log.DebugContext(ctx, "herald: waiting for room under max pending bytes", "op", op, "bytes", n, "max_pending_bytes", p.limit)
		}
		select {
		case <-freed:
		case <-ctx.Done():
			return fmt.Errorf("client: %s: waiting for room under max pending bytes %d: %w", op, p.limit, ctx.Err())
		}
	}
}

// release uncounts n bytes and wakes the calls waiting for room.
func (p *pending) release(n int64) {
	if n == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.bytes -= n
	close(p.mu.freed)
	p.mu.freed = make(chan struct{})
}

// eventBytes returns the encoded size of each event and their sum.
func eventBytes(events []*Event) ([]int64, int64) {
	sizes := make([]int64, len(events))
	var total int64
	for i, e := range events {
		sizes[i] = int64(proto.Size(e))
		total += sizes[i]
	}
	return sizes, total
}

// groupBytes sums the sizes of the events at indexes.
func groupBytes(sizes []int64, indexes []int) int64 {
	var n int64
	for _, i := range indexes {
		n += sizes[i]
	}
	return n
}
