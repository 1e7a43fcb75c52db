package server

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/heraldlog/herald/partition"
)

// The WebSocket hub: subscriptions at the live edge of their replica need
// no goroutine of their own. A subscription starts in its own goroutine
// (wsConn.runSubscription) and reads until it has caught up with the
// tail; it then attaches to its tail's hub and the goroutine ends. One
// goroutine per tail with attached subscriptions (wsTailHub.loop) reads
// each new page of the tail once and hands every attached subscription
// its events: all of them sit at the hub's cursor, so the hub needs no
// read per subscription, and a subscription filtered by tenant is looked
// at only when the page holds events of its tenant (a per-tenant index),
// which makes a subscriber's own stream on a shared partition cost
// nothing per event of other tenants. Subscriptions with the same id and
// no filter get one encoded frame, shared (broadcast).
//
// The hub never waits on a connection: a frame that does not fit in a
// connection's send queue detaches the subscription at its position and
// gives it back its own goroutine, which waits for room (and closes a slow
// consumer) as before; so does a subscription whose context ends
// (unsubscribe, the connection closing), whose replica goes away, or when
// the hub's cursor falls out of the tail (a burst larger than the tail
// between two wake-ups). Heartbeats of attached subscriptions are sent by
// the hub's ticker, so their interval is kept to within wsHubTick.

// wsHubTick is how often a hub checks its subscriptions' heartbeats and
// its replica.
const wsHubTick = time.Second

// wsHub finds or starts the hub of a tail.
type wsHub struct {
	n  *Node
	mu struct {
		sync.Mutex
		byTail map[*partition.Tail]*wsTailHub
	}
}

// wsHubSub is an attached subscription (or one that was).
type wsHubSub struct {
	c        *wsConn
	ctx      context.Context
	id       string
	sub      *wsSub
	s        *subscription
	pos      *wsPosition
	lastSent time.Time
	// plain is set when the subscription has no filter: its frames are
	// the same as every other plain subscription's with its id.
	plain bool
	// stopWatch stops the watch on ctx set up at attach.
	stopWatch func() bool
}

// wsTailHub serves the subscriptions attached to one tail.
type wsTailHub struct {
	hub   *wsHub
	tail  *partition.Tail
	r     *partition.Replica
	epoch uint64 // the replica's group id
	mu    struct {
		sync.Mutex
		// cur is the offset every attached subscription reads next.
		cur      uint64
		all      map[*wsHubSub]struct{} // no tenant filter
		byTenant map[string]map[*wsHubSub]struct{}
		count    int
		running  bool // the loop goroutine runs
		// nextBeat is no later than the earliest heartbeat due: the
		// ticker looks at the subscriptions only from then on (a scan of
		// every subscription each tick was 5% of a node's CPU with 19,500
		// of them). Deliveries only make heartbeats due later.
		nextBeat time.Time
	}
}

// attach hands hs to its tail's hub, which takes it when it can give it
// every event up to the hub's cursor now; it returns false (hs stays with
// its goroutine) otherwise.
func (h *wsHub) attach(hs *wsHubSub) bool {
	h.mu.Lock()
	if h.mu.byTail == nil {
		h.mu.byTail = make(map[*partition.Tail]*wsTailHub)
	}
	th := h.mu.byTail[hs.s.tail]
	if th == nil {
		th = &wsTailHub{hub: h, tail: hs.s.tail, r: hs.s.r, epoch: hs.s.epoch}
		th.mu.all = make(map[*wsHubSub]struct{})
		th.mu.byTenant = make(map[string]map[*wsHubSub]struct{})
		h.mu.byTail[hs.s.tail] = th
	}
	h.mu.Unlock()
	return th.attach(hs)
}

func (th *wsTailHub) attach(hs *wsHubSub) bool {
	th.mu.Lock()
	defer th.mu.Unlock()
	if hs.ctx.Err() != nil || th.hub.n.replica(hs.s.epoch) != th.r {
		return false
	}
	if th.mu.count == 0 {
		th.mu.cur = hs.s.next
	} else {
		if !th.advanceLocked() {
			return false
		}
		if !th.catchUpLocked(hs) {
			return false
		}
	}
	th.insertLocked(hs)
	hs.lastSent = time.Now()
	if due := hs.lastSent.Add(hs.s.heartbeat); th.mu.nextBeat.IsZero() || due.Before(th.mu.nextBeat) {
		th.mu.nextBeat = due
	}
	hs.stopWatch = context.AfterFunc(hs.ctx, func() { th.detach(hs) })
	th.hub.n.metrics.wsHubSubscriptions.Inc()
	if !th.mu.running && th.hub.n.spawn(th.loop) {
		th.mu.running = true // (no loop once the node closes: it drops every subscription)
	}
	return true
}

// catchUpLocked sends hs the events between its position and the hub's
// cursor; false if they do not fit its send queue or the tail no longer
// holds them.
func (th *wsTailHub) catchUpLocked(hs *wsHubSub) bool {
	s := hs.s
	for s.next < th.mu.cur {
		entries, held, err := th.tail.Since(s.next, subscribeBatchEventsMax, subscribeCreditBytesDefault)
		if err != nil || !held || len(entries) == 0 {
			return false
		}
		if first := entries[0].Record.Offset; entries[len(entries)-1].Record.Offset >= th.mu.cur {
			entries = entries[:th.mu.cur-first] // first < cur: at least one
		}
		picked, _, nBytes := selectEntries(entries, s.filter, subscribeBatchEventsMax, 1<<62, time.Now().UnixNano())
		next := entries[len(entries)-1].Record.Offset + 1
		if len(picked) > 0 {
			b := &subscribeBatch{entries: picked, bytes: nBytes, next: next, highWatermark: th.r.HighWatermark(), lowWatermark: th.r.LowWatermark()}
			if err := hs.c.queue.put(hs.ctx, wsFrame{typ: wsTypeEvents, data: wsEventsFrame(hs.id, s.index, s.epoch, b)}, 0, hs.c.startWriter); err != nil {
				return false
			}
		}
		s.next = next
	}
	return true
}

func (th *wsTailHub) insertLocked(hs *wsHubSub) {
	if t := hs.s.filter.tenant; t != "" {
		set := th.mu.byTenant[t]
		if set == nil {
			set = make(map[*wsHubSub]struct{})
			th.mu.byTenant[t] = set
		}
		set[hs] = struct{}{}
	} else {
		th.mu.all[hs] = struct{}{}
	}
	th.mu.count++
}

// removeLocked takes hs out of the hub; false if it was not in it. Its
// position becomes the hub's cursor (where every attached subscription is).
func (th *wsTailHub) removeLocked(hs *wsHubSub) bool {
	if t := hs.s.filter.tenant; t != "" {
		set := th.mu.byTenant[t]
		if _, ok := set[hs]; !ok {
			return false
		}
		delete(set, hs)
		if len(set) == 0 {
			delete(th.mu.byTenant, t)
		}
	} else {
		if _, ok := th.mu.all[hs]; !ok {
			return false
		}
		delete(th.mu.all, hs)
	}
	th.mu.count--
	hs.s.next = th.mu.cur
	th.hub.n.metrics.wsHubSubscriptions.Dec()
	return true
}

// detach gives hs back its own goroutine, if the hub still holds it.
func (th *wsTailHub) detach(hs *wsHubSub) {
	th.mu.Lock()
	ok := th.removeLocked(hs)
	th.mu.Unlock()
	if ok {
		hs.c.followSubscription(hs)
	}
}

// giveBackLocked removes hs (at the hub's cursor) and appends it to out,
// for the caller to resume once the lock is released.
func (th *wsTailHub) giveBackLocked(hs *wsHubSub, out []*wsHubSub) []*wsHubSub {
	if th.removeLocked(hs) {
		hs.stopWatch()
		out = append(out, hs)
	}
	return out
}

// advanceLocked hands every attached subscription the events after the
// cursor, page by page, up to the tail's end. False when the cursor fell
// out of the tail: every subscription is then given back.
func (th *wsTailHub) advanceLocked() bool {
	var back []*wsHubSub
	defer func() { resume(back) }()
	for {
		entries, held, err := th.tail.Since(th.mu.cur, subscribeBatchEventsMax, subscribeCreditBytesDefault)
		if err != nil || !held {
			back = append(back, th.giveBackAllLocked()...)
			return false
		}
		if len(entries) == 0 {
			return true
		}
		back = th.deliverLocked(entries, back)
		th.mu.cur = entries[len(entries)-1].Record.Offset + 1
	}
}

// deliverLocked sends one page (at the cursor) to the subscriptions that
// want some of it.
func (th *wsTailHub) deliverLocked(entries []partition.TailEntry, back []*wsHubSub) []*wsHubSub {
	now := time.Now()
	next := entries[len(entries)-1].Record.Offset + 1
	high, low := th.r.HighWatermark(), th.r.LowWatermark()
	shared := map[string][]byte{} // plain subscriptions' frames, by id
	send := func(hs *wsHubSub) {
		s := hs.s
		picked, _, nBytes := selectEntries(entries, s.filter, subscribeBatchEventsMax, 1<<62, now.UnixNano())
		if len(picked) == 0 {
			return
		}
		var frame []byte
		if hs.plain {
			frame = shared[hs.id]
		}
		if frame == nil {
			b := &subscribeBatch{entries: picked, bytes: nBytes, next: next, highWatermark: high, lowWatermark: low}
			frame = wsEventsFrame(hs.id, s.index, s.epoch, b)
			if hs.plain {
				shared[hs.id] = frame
			}
		}
		if err := hs.c.queue.put(hs.ctx, wsFrame{typ: wsTypeEvents, data: frame}, 0, hs.c.startWriter); err != nil {
			// No room (or closing): its own goroutine resends from here.
			back = th.giveBackLocked(hs, back)
			return
		}
		hs.lastSent = now
		th.hub.n.metrics.subscribeEvents.WithLabelValues(s.topic).Add(float64(len(picked)))
	}
	for hs := range th.mu.all {
		send(hs)
	}
	seen := map[string]bool{}
	for i := range entries {
		t := entries[i].Record.Tenant
		if seen[t] {
			continue
		}
		seen[t] = true
		for hs := range th.mu.byTenant[t] {
			send(hs)
		}
	}
	return back
}

// loop wakes on every change of the replica and every tick, until the
// hub is empty or the node stops.
func (th *wsTailHub) loop() {
	n := th.hub.n
	tick := time.NewTicker(wsHubTick)
	defer tick.Stop()
	for {
		changed := th.r.Changed()
		th.mu.Lock()
		if n.replica(th.epoch) != th.r {
			resume(th.giveBackAllLocked())
		} else {
			th.advanceLocked()
		}
		if th.mu.count == 0 {
			th.mu.running = false
			th.mu.Unlock()
			th.hub.forget(th)
			return
		}
		th.mu.Unlock()
		select {
		case <-changed:
		case <-tick.C:
			th.heartbeats()
		case <-n.stop:
			th.mu.Lock()
			resume(th.giveBackAllLocked())
			th.mu.running = false
			th.mu.Unlock()
			return
		}
	}
}

// resume gives each subscription handed back a goroutine of its own.
func resume(back []*wsHubSub) {
	for _, hs := range back {
		go hs.c.followSubscription(hs)
	}
}

// eachLocked calls fn for every attached subscription (fn may remove it).
func (th *wsTailHub) eachLocked(fn func(*wsHubSub)) {
	for hs := range th.mu.all {
		fn(hs)
	}
	for _, set := range th.mu.byTenant {
		for hs := range set {
			fn(hs)
		}
	}
}

// giveBackAllLocked removes every subscription and returns them, for the
// caller to resume (followSubscription) once the lock is released.
func (th *wsTailHub) giveBackAllLocked() []*wsHubSub {
	var back []*wsHubSub
	th.eachLocked(func(hs *wsHubSub) { back = th.giveBackLocked(hs, back) })
	return back
}

// heartbeats sends each idle subscription its heartbeat, dropped when its
// queue is full (the client has frames to read already).
func (th *wsTailHub) heartbeats() {
	now := time.Now()
	th.mu.Lock()
	defer th.mu.Unlock()
	if now.Before(th.mu.nextBeat) {
		return
	}
	high, low := th.r.HighWatermark(), th.r.LowWatermark()
	if high < th.mu.cur {
		return // the replica's log went back (a restore): nothing to report
	}
	var next time.Time
	beat := func(hs *wsHubSub) {
		if due := hs.lastSent.Add(hs.s.heartbeat); now.Before(due) {
			if next.IsZero() || due.Before(next) {
				next = due
			}
			return
		}
		if due := now.Add(hs.s.heartbeat); next.IsZero() || due.Before(next) {
			next = due
		}
		data, err := json.Marshal(&wsPosition{Type: wsTypeHeartbeat, ID: hs.id, Partition: hs.s.index, Epoch: hs.s.epoch,
			NextOffset: th.mu.cur, HighWatermark: high, LowWatermark: low})
		if err != nil {
			return
		}
		hs.lastSent = now
		err = hs.c.queue.put(hs.ctx, wsFrame{typ: wsTypeHeartbeat, data: data}, 0, hs.c.startWriter)
		switch {
		case errors.Is(err, errWSQueueFull):
			th.hub.n.metrics.wsQueueDrops.WithLabelValues("heartbeat").Inc()
		case err == nil:
			th.hub.n.metrics.subscribeHeartbeats.Inc()
		}
	}
	th.eachLocked(beat)
	th.mu.nextBeat = next
}

// forget drops an empty hub (a new one starts on the next attach).
func (h *wsHub) forget(th *wsTailHub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	th.mu.Lock()
	defer th.mu.Unlock()
	if th.mu.count == 0 && !th.mu.running && h.mu.byTail[th.tail] == th {
		delete(h.mu.byTail, th.tail)
	}
}
