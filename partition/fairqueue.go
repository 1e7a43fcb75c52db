package partition

import (
	"container/list"
	"context"
	"sync"
)

// fairQueue holds a leader's produce calls waiting to be batched, one FIFO
// per tenant, and hands them out by deficit round-robin over the tenants
// (by bytes): a tenant with many calls waiting only delays its own, and
// each tenant with calls waiting gets about the same bytes per round. It
// bounds the calls it holds; push waits for room.
//
// Its methods are safe for concurrent use.
type fairQueue struct {
	quantum  int // bytes a tenant may send per round
	callsMax int

	mu      sync.Mutex
	tenants map[string]*fairTenant
	ring    *list.List // of *fairTenant with calls waiting, in round order
	calls   int
	closed  bool
	ready   chan struct{} // closed and replaced when a call arrives
	room    chan struct{} // closed and replaced when a call leaves
}

// fairTenant is one tenant's FIFO of calls and its deficit.
type fairTenant struct {
	name    string
	calls   []*produceCall
	deficit int
	granted bool // has had its quantum this round
	elem    *list.Element
}

func newFairQueue(quantum, callsMax int) *fairQueue {
	return &fairQueue{
		quantum:  max(quantum, 1),
		callsMax: callsMax,
		tenants:  make(map[string]*fairTenant),
		ring:     list.New(),
		ready:    make(chan struct{}),
		room:     make(chan struct{}),
	}
}

// push queues c behind its tenant's earlier calls, waiting while the queue
// holds callsMax calls. It fails with ctx's error, or ErrClosed, without
// queueing c.
func (q *fairQueue) push(ctx context.Context, c *produceCall) error {
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return ErrClosed
		}
		if q.calls < q.callsMax {
			t := q.tenants[c.tenant]
			if t == nil {
				t = &fairTenant{name: c.tenant}
				q.tenants[c.tenant] = t
			}
			t.calls = append(t.calls, c)
			if t.elem == nil {
				t.elem = q.ring.PushBack(t)
			}
			q.calls++
			close(q.ready)
			q.ready = make(chan struct{})
			q.mu.Unlock()
			return nil
		}
		room := q.room
		q.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// pop takes the next call in deficit round-robin order, or nil when none
// is waiting; ready is closed when one arrives after a nil answer.
func (q *fairQueue) pop() (c *produceCall, ready <-chan struct{}) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.ring.Len() > 0 {
		t := q.ring.Front().Value.(*fairTenant)
		if !t.granted {
			t.deficit += q.quantum
			t.granted = true
		}
		head := t.calls[0]
		if head.bytes > t.deficit {
			// Not enough this round: the next tenant's turn. A call larger
			// than the quantum goes after a few rounds of credit.
			t.granted = false
			q.ring.MoveToBack(t.elem)
			continue
		}
		t.deficit -= head.bytes
		t.calls[0] = nil
		t.calls = t.calls[1:]
		if len(t.calls) == 0 {
			q.ring.Remove(t.elem)
			t.elem = nil
			t.deficit, t.granted = 0, false
			t.calls = nil
			delete(q.tenants, t.name)
		}
		q.calls--
		close(q.room)
		q.room = make(chan struct{})
		return head, nil
	}
	return nil, q.ready
}

// close refuses later pushes and returns the calls still waiting, for the
// caller to answer.
func (q *fairQueue) close() []*produceCall {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	var out []*produceCall
	for e := q.ring.Front(); e != nil; e = e.Next() {
		out = append(out, e.Value.(*fairTenant).calls...)
	}
	q.ring.Init()
	clear(q.tenants)
	q.calls = 0
	close(q.room)
	q.room = make(chan struct{})
	return out
}
