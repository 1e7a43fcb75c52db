package log

import (
	"fmt"
	"math"
)

// Reads of the consumer group state, as committed. They are safe for
// concurrent use, with each other and with the writer; each reads one
// point-in-time view, but two calls may straddle a commit. While a restore
// is under way (or after one failed) the partition has no group, as it has
// no record.
// Memory is bounded by limit (GroupsMax for Groups).

// groupStore reads the committed state. db.lifecycle must be read-held.
func (p *Partition) groupStoreLocked() groupStore {
	return groupStore{partition: p.id, r: p.db.pebble, nearOffset: p.high.Load()}
}

// GroupState returns group name's state; an absent group is an error
// matching ErrUnknownGroup.
func (p *Partition) GroupState(name string) (GroupState, error) {
	if err := checkGroupName(name); err != nil {
		return GroupState{}, err
	}
	if err := p.db.acquire(); err != nil {
		return GroupState{}, err
	}
	defer p.db.release()
	if p.restoring.Load() {
		return GroupState{}, fmt.Errorf("%w: %q (partition restoring)", ErrUnknownGroup, name)
	}
	h, found, err := p.groupStoreLocked().header(name)
	if err != nil {
		return GroupState{}, err
	}
	if !found {
		return GroupState{}, fmt.Errorf("%w: %q", ErrUnknownGroup, name)
	}
	return h.state(name), nil
}

// Groups returns the state of every group of the partition (at most
// GroupsMax), in key order: by name length, then name bytes.
func (p *Partition) Groups() ([]GroupState, error) {
	if err := p.db.acquire(); err != nil {
		return nil, err
	}
	defer p.db.release()
	if p.restoring.Load() {
		return nil, nil
	}
	var states []GroupState
	err := p.groupStoreLocked().groups(func(name string, h groupHeader) bool {
		states = append(states, h.state(name))
		return len(states) < GroupsMax
	})
	return states, err
}

// GroupPending returns up to limit (at least 1) of group name's pending
// deliveries with offset at or above from, in offset order. An absent
// group is an error matching ErrUnknownGroup.
func (p *Partition) GroupPending(name string, from uint64, limit int) ([]PendingDelivery, error) {
	return p.scanGroup(name, limit, func(s groupStore, fn func(PendingDelivery) bool) error {
		return s.scanPending(name, from, math.MaxUint64, limit, fn)
	})
}

// GroupExpired returns up to limit (at least 1) of group name's pending
// deliveries due at nowUnixNano (not-before at or before it), the
// earliest first (then by offset): what the leader redelivers, or
// dead-letters when they reached the group's max deliveries. An absent
// group is an error matching ErrUnknownGroup.
func (p *Partition) GroupExpired(name string, nowUnixNano int64, limit int) ([]PendingDelivery, error) {
	return p.scanGroup(name, limit, func(s groupStore, fn func(PendingDelivery) bool) error {
		return s.scanDue(name, nowUnixNano, fn)
	})
}

// scanGroup checks name and limit, that the group exists, and collects up
// to limit deliveries from scan.
func (p *Partition) scanGroup(name string, limit int, scan func(groupStore, func(PendingDelivery) bool) error) ([]PendingDelivery, error) {
	if err := checkGroupName(name); err != nil {
		return nil, err
	}
	if limit < 1 {
		return nil, fmt.Errorf("%w: consumer group read limit %d, want at least 1", ErrInvalidArgument, limit)
	}
	if err := p.db.acquire(); err != nil {
		return nil, err
	}
	defer p.db.release()
	if p.restoring.Load() {
		return nil, fmt.Errorf("%w: %q (partition restoring)", ErrUnknownGroup, name)
	}
	// One point-in-time view: the due keys, the pending deliveries and the
	// header must agree while applies go on.
	view := p.db.pebble.NewSnapshot()
	defer view.Close()
	store := groupStore{partition: p.id, r: view, nearOffset: p.high.Load()}
	if _, found, err := store.header(name); err != nil {
		return nil, err
	} else if !found {
		return nil, fmt.Errorf("%w: %q", ErrUnknownGroup, name)
	}
	var out []PendingDelivery
	err := scan(store, func(d PendingDelivery) bool {
		out = append(out, d)
		return len(out) < limit
	})
	return out, err
}
