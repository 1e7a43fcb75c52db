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
