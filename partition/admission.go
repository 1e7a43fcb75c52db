package partition

import (
	"fmt"
	"math"
	"sync"
	"time"
)

// Admission control: what a partition leader decides about a produce call
// before it reaches the batcher (docs/architecture.md, "Admission
// control"). In order:
//
//  1. the lag of the consumer groups the topic protects (LagGuard): past
//     the pause lag the call is refused, past the slow lag it is admitted
//     with a throttle hint;
//  2. each tenant's token buckets (events/s and bytes/s, with burst) from
//     the tenant's quota, as shared out to this partition (TenantLimits):
//     a tenant whose buckets run dry is admitted into debt with a throttle
//     hint (the time the debt takes to repay), and refused once the debt
//     would pass half a bucket;
//  3. the batcher's byte bounds (the partition's, and each tenant's share
//     of it), drained fairly by deficit round-robin over tenants.
//
// A refusal at any step wrote nothing and took nothing: tokens taken by a
// call the batcher then refuses are given back.

// TenantLimit is the share of one tenant's quota that one partition leader
// enforces. A zero rate is unlimited.
type TenantLimit struct {
	EventsPerSec float64
	BytesPerSec  float64
	// BurstEvents and BurstBytes are the buckets' capacities; zero means one
	// second's worth of the rate.
	BurstEvents float64
	BurstBytes  float64
	// QueuedBytesMax, when positive, caps the bytes of the tenant's calls
	// the partition leader holds (queued or in flight) below the default
	// share (half of the partition's bound).
	QueuedBytesMax int
}

// unlimited reports whether the limit limits nothing.
func (l TenantLimit) unlimited() bool { return l.EventsPerSec <= 0 && l.BytesPerSec <= 0 }

// TenantLimits returns a tenant's share of its quota on the partition with
// Raft group groupID; ok is false when the tenant has no quota. It is
// called for every produce call on a leader, so it must be cheap; a quota
// changed in the registry applies from the next call.
type TenantLimits func(tenant string, groupID uint64) (limit TenantLimit, ok bool)

// QuotaError is a refusal by a tenant's token buckets: the tenant is over
// its quota on this partition. Nothing was written. It matches
// ErrThrottled.
type QuotaError struct {
	Tenant     string
	Detail     string // which bucket: "events/s" or "bytes/s", with the limit
	RetryAfter time.Duration
}

// Error implements error.
func (e *QuotaError) Error() string {
	return fmt.Sprintf("partition: tenant %s over its quota (%s); retry after %s", e.Tenant, e.Detail, e.RetryAfter)
}

// Is reports whether target is ErrThrottled.
func (e *QuotaError) Is(target error) bool { return target == ErrThrottled }

// LagError is a refusal because a consumer group the topic protects is at
// or past its pause lag on this partition. Nothing was written. It matches
// ErrThrottled.
type LagError struct {
	Pressure   LagPressure
	RetryAfter time.Duration
}

// Error implements error.
func (e *LagError) Error() string {
	return fmt.Sprintf("partition: consumer group %s of %s is %d events behind (pause at %d); retry after %s",
		e.Pressure.Group, e.Pressure.Topic, e.Pressure.Lag, e.Pressure.PauseLag, e.RetryAfter)
}

// Is reports whether target is ErrThrottled.
func (e *LagError) Is(target error) bool { return target == ErrThrottled }

// lagRetryAfter is the retry hint of a LagError: about how often the lag
// guard looks again.
const lagRetryAfter = 250 * time.Millisecond

// debtFraction is how deep below empty a bucket may go, as a fraction of
// its capacity, before calls are refused rather than throttled. A producer
// that waits out its throttle hints never reaches it.
const debtFraction = 0.5

// bucketsIdleMax is how long a tenant's buckets are kept unused: a refilled
// bucket idle that long is full again, so dropping it loses nothing.
const bucketsIdleMax = time.Minute

// bucketsMax bounds the tenants with buckets on one partition leader; past
// it, idle buckets are swept first, then the call's tenant goes without a
// bucket (admitted unthrottled) rather than growing the map without bound.
const bucketsMax = 65_536

// bucket is a token bucket that may run into debt (tokens below zero).
type bucket struct {
	tokens float64
	rate   float64 // per second; <= 0: unlimited
	burst  float64
}

// refill adds the tokens earned over dt, up to the capacity.
func (b *bucket) refill(dt time.Duration) {
	if b.rate <= 0 {
		return
	}
	b.tokens = math.Min(b.burst, b.tokens+b.rate*dt.Seconds())
}

// judge reports what taking cost tokens would do: the throttle hint (the
// time until the debt it leaves is repaid), or, when it would go deeper
// than the debt allowance, refused with the time until it would not. A
// cost larger than the capacity plus the allowance is admitted only from a
// full bucket.
func (b *bucket) judge(cost float64) (throttle time.Duration, refused bool, retryAfter time.Duration) {
	if b.rate <= 0 || cost <= 0 {
		return 0, false, 0
	}
	after := b.tokens - cost
	floor := -debtFraction * b.burst
	if after < floor && b.tokens < b.burst {
		need := math.Min(cost+floor, b.burst) - b.tokens // tokens until it may go
		return 0, true, seconds(need / b.rate)
	}
	if after >= 0 {
		return 0, false, 0
	}
	return seconds(-after / b.rate), false, 0
}

// seconds converts s seconds to a Duration, rounded up to a millisecond
// (hints travel in milliseconds; a zero hint would mean "no throttle").
func seconds(s float64) time.Duration {
	d := time.Duration(math.Ceil(s * 1000))
	return max(d, 1) * time.Millisecond
}

// tenantBuckets are one tenant's buckets on one partition leader.
type tenantBuckets struct {
	events, bytes bucket
	last          time.Time // of the last refill
}

// admission holds a partition leader's token buckets. Its methods are
// safe for concurrent use.
type admission struct {
	groupID uint64
	limits  TenantLimits // nil: every tenant unlimited
	metrics *Metrics
	now     func() time.Time

	mu        sync.Mutex
	buckets   map[string]*tenantBuckets
	lastSweep time.Time
}

func newAdmission(groupID uint64, limits TenantLimits, metrics *Metrics, now func() time.Time) *admission {
	return &admission{groupID: groupID, limits: limits, metrics: metrics, now: now, buckets: make(map[string]*tenantBuckets)}
}

// tenantCost is what one produce call asks of one tenant's buckets.
type tenantCost struct {
	tenant string
	events float64
	bytes  float64
}

// ticket is an admission taken: give it back when the call is refused
// later with nothing written.
type ticket struct {
	a     *admission
	costs []tenantCost
	taken []bool // per cost: whether tokens were taken
	// queuedBytesMax is the first tenant's (the call's key in the fair
	// queue) TenantLimit.QueuedBytesMax: 0 for the default share.
	queuedBytesMax int
}

// take decides a call of costs against the tenants' buckets, all or
// nothing: either every tenant admits it (tokens taken, the longest
// throttle hint returned) or the first tenant that refuses it is reported
// in a *QuotaError and nothing is taken.
func (a *admission) take(costs []tenantCost) (*ticket, time.Duration, error) {
	if a.limits == nil {
		return &ticket{}, 0, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	a.sweep(now)
	tk := &ticket{a: a, costs: costs, taken: make([]bool, len(costs))}
	var throttle time.Duration
	held := make([]*tenantBuckets, len(costs))
	for i, c := range costs {
		lim, ok := a.limits(c.tenant, a.groupID)
		if ok && i == 0 {
			tk.queuedBytesMax = lim.QueuedBytesMax
		}
		if !ok || lim.unlimited() {
			continue
		}
		tb := a.bucketsOf(c.tenant, lim, now)
		if tb == nil {
			continue
		}
		held[i] = tb
		for _, k := range []struct {
			b    *bucket
			cost float64
			what string
		}{{&tb.events, c.events, "events/s"}, {&tb.bytes, c.bytes, "bytes/s"}} {
			t, refused, retry := k.b.judge(k.cost)
			if refused {
				return nil, 0, &QuotaError{Tenant: c.tenant, Detail: fmt.Sprintf("%s %.0f", k.what, k.b.rate), RetryAfter: retry}
			}
			throttle = max(throttle, t)
		}
	}
	for i, c := range costs {
		if tb := held[i]; tb != nil {
			if tb.events.rate > 0 {
				tb.events.tokens -= c.events
			}
			if tb.bytes.rate > 0 {
				tb.bytes.tokens -= c.bytes
			}
			tk.taken[i] = true
		}
	}
	a.metrics.observeTokens(costs, held)
	return tk, throttle, nil
}

// giveBack returns a ticket's tokens: its call was refused after
// admission, with nothing written.
func (t *ticket) giveBack() {
	if t == nil || t.a == nil {
		return
	}
	a := t.a
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, c := range t.costs {
		if !t.taken[i] {
			continue
		}
		tb := a.buckets[c.tenant]
		if tb == nil {
			continue
		}
		if tb.events.rate > 0 {
			tb.events.tokens = math.Min(tb.events.burst, tb.events.tokens+c.events)
		}
		if tb.bytes.rate > 0 {
			tb.bytes.tokens = math.Min(tb.bytes.burst, tb.bytes.tokens+c.bytes)
		}
		t.taken[i] = false
	}
}

// bucketsOf returns tenant's buckets refilled to now under lim (made full
// when new; rates and capacities follow lim as it changes), or nil when
// the table is full.
func (a *admission) bucketsOf(tenant string, lim TenantLimit, now time.Time) *tenantBuckets {
	eBurst, bBurst := lim.BurstEvents, lim.BurstBytes
	if eBurst <= 0 {
		eBurst = lim.EventsPerSec
	}
	if bBurst <= 0 {
		bBurst = lim.BytesPerSec
	}
	tb, ok := a.buckets[tenant]
	if !ok {
		if len(a.buckets) >= bucketsMax {
			return nil
		}
		tb = &tenantBuckets{
			events: bucket{tokens: eBurst, rate: lim.EventsPerSec, burst: eBurst},
			bytes:  bucket{tokens: bBurst, rate: lim.BytesPerSec, burst: bBurst},
			last:   now,
		}
		a.buckets[tenant] = tb
		return tb
	}
	dt := now.Sub(tb.last)
	tb.last = now
	for _, k := range []struct {
		b           *bucket
		rate, burst float64
	}{{&tb.events, lim.EventsPerSec, eBurst}, {&tb.bytes, lim.BytesPerSec, bBurst}} {
		if k.b.rate != k.rate || k.b.burst != k.burst {
			// The quota changed: keep the debt or the fill, within the new
			// capacity.
			if k.b.rate <= 0 {
				k.b.tokens = k.burst
			}
			k.b.rate, k.b.burst = k.rate, k.burst
			k.b.tokens = math.Min(k.b.tokens, k.burst)
		}
		if dt > 0 {
			k.b.refill(dt)
		}
	}
	return tb
}

// sweep drops buckets idle for bucketsIdleMax (they would be full again),
// at most once a second.
func (a *admission) sweep(now time.Time) {
	if now.Sub(a.lastSweep) < time.Second {
		return
	}
	a.lastSweep = now
	for t, tb := range a.buckets {
		if now.Sub(tb.last) > bucketsIdleMax {
			delete(a.buckets, t)
		}
	}
}
