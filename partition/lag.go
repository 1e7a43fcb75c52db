package partition

import "time"

// LagPressure is what the consumer groups a topic protects ask of its
// producers on one partition, as a LagGuard sees it now: a throttle hint
// while a group is behind by its slow lag, a pause (refusal) from its
// pause lag on. The zero value asks nothing.
type LagPressure struct {
	// Throttle is added to produce replies as their throttle hint.
	Throttle time.Duration
	// Pause refuses produce calls (THROTTLED, limit consumer_lag).
	Pause bool
	// Topic and Group name the protected group behind, with its lag (in
	// events) and the pause lag it is held to, for the refusal.
	Topic, Group  string
	Lag, PauseLag uint64
}

// LagGuard reports the current lag pressure on a partition. The admission
// controller calls it once per produce call on the leader, so it must be
// cheap (a cached value refreshed elsewhere).
type LagGuard func() LagPressure

// SetLagGuard installs the guard of the partition's protected consumer
// groups (nil: none). The node sets it when the replica opens and again
// whenever the topic's protected groups change.
func (r *Replica) SetLagGuard(g LagGuard) {
	if g == nil {
		r.lagGuard.Store(nil)
		return
	}
	r.lagGuard.Store(&g)
}

// lagPressure is the guard's current answer, or none.
func (r *Replica) lagPressure() LagPressure {
	if g := r.lagGuard.Load(); g != nil {
		return (*g)()
	}
	return LagPressure{}
}

// GroupLag returns consumer group name's lag on this partition as applied
// here: the high watermark minus the group's floor (its committed next
// offset, below which every offset is done). ok is false when the group
// does not exist here or its state cannot be read (a read error is the
// group reads' to report, see GroupState). It is one point read, safe for
// concurrent use with everything; the lag guard calls it on every tick.
func (r *Replica) GroupLag(name string) (lag uint64, ok bool) {
	state, err := r.cfg.Log.GroupState(name)
	if err != nil {
		return 0, false
	}
	// The floor was read first and the high watermark only grows, so the
	// floor is at most the watermark read after it.
	high := r.cfg.Log.HighWatermark()
	if state.Floor >= high {
		return 0, true
	}
	return high - state.Floor, true
}
