package client

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// Backpressure says what a produce call does when the cluster asks it to
// slow down: when a partition's last answer carried throttle_ms, or a
// request to it was refused with THROTTLED or QUEUE_FULL (ErrThrottled).
type Backpressure int

const (
	// BackpressureBlock (the default) makes Produce and Producer.Send
	// wait, while their context lasts, until a partition's pause is over
	// before sending to it, and resend a refused request after its
	// retry-after plus jitter, at most Config.MaxThrottleRetries times. A
	// refusal wrote nothing, so these resends are safe for Produce as for
	// a Producer and never make an outcome unknown.
	BackpressureBlock Backpressure = iota
	// BackpressureFailFast makes a produce call to a partition under a
	// pause, or one that is refused, fail at once with an error matching
	// ErrThrottled, on which RetryAfter gives the time left; nothing of
	// that partition's events was sent (or, when refused, written).
	BackpressureFailFast
	// BackpressureIgnore makes produce calls neither wait for a pause nor
	// resend a refused request: they send at once, and a refusal is
	// returned as it came (nothing written). It is for tools that play a
	// producer ignoring the cluster's hints, such as `herald bench
	// noisy-tenant` and the jepsen flood workload; a well-behaved producer
	// uses one of the other modes.
	BackpressureIgnore
)

// String names the mode as in the docs ("block", "fail-fast").
func (b Backpressure) String() string {
	switch b {
	case BackpressureBlock:
		return "block"
	case BackpressureFailFast:
		return "fail-fast"
	case BackpressureIgnore:
		return "ignore"
	}
	return "Backpressure(" + strconv.Itoa(int(b)) + ")"
}

// Limits named by the ErrThrottled errors the SDK makes itself, without
// asking the cluster (RetryAfter returns them); the cluster's own refusals
// name the Limit* values of the wire contract.
const (
	// LimitPacing: in fail-fast mode, the partition's last answer asked
	// for a pause (throttle_ms) that is not over.
	LimitPacing = "pacing"
	// LimitPendingBytes: in fail-fast mode, the call would take the
	// Client's pending bytes past Config.MaxPendingBytes.
	LimitPendingBytes = "pending_bytes"
)

// pauseMax bounds one pause taken from the cluster (throttle_ms or
// retry_after_ms): a hint past it is taken as pauseMax, so that a wrong
// answer cannot park a partition's producers for days. Callers bound the
// whole wait with their context.
const pauseMax = time.Minute

// pacerSweepEntries is the number of remembered pauses past which setting
// one also drops those that are over: the map stays about as large as the
// set of partitions currently paused.
const pacerSweepEntries = 256

// pacer remembers, per partition, the time until which produce calls
// should not send to it: the end of the pause its last answer asked for
// (throttle_ms) or of a refusal's retry-after. It is safe for concurrent
// use; waiting happens outside its lock.
type pacer struct {
	log *slog.Logger
	// now reads the clock; time.Now unless a test replaces it.
	now func() time.Time

	mu struct {
		sync.Mutex
		// pauses holds each paused partition's end of pause and the limit
		// that caused it ("" for a throttle_ms hint, the refusal's limit
		// otherwise).
		pauses map[partitionKey]pause
	}
}

// partitionKey names one partition of one topic.
type partitionKey struct {
	topic     string
	partition uint32
}

// pause is one partition's pause: until when, and why.
type pause struct {
	until time.Time
	limit string
}

func newPacer(log *slog.Logger) *pacer {
	p := &pacer{log: log, now: time.Now}
	p.mu.pauses = make(map[partitionKey]pause)
	return p
}

// hold pauses the partition for d from now (capped at pauseMax), unless it
// is already paused for longer. limit names the cause ("" for throttle_ms).
func (p *pacer) hold(topic string, partition uint32, d time.Duration, limit string) {
	if d <= 0 {
		return
	}
	d = min(d, pauseMax)
	now := p.now()
	key := partitionKey{topic: topic, partition: partition}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.mu.pauses) >= pacerSweepEntries {
		for k, v := range p.mu.pauses {
			if !v.until.After(now) {
				delete(p.mu.pauses, k)
			}
		}
	}
	if cur, ok := p.mu.pauses[key]; ok && !cur.until.Before(now.Add(d)) {
		return
	}
	p.mu.pauses[key] = pause{until: now.Add(d), limit: limit}
}

// remaining returns how long the partition's pause still lasts (0 when it
// is not paused) and its cause; it forgets a pause that is over.
func (p *pacer) remaining(topic string, partition uint32) (time.Duration, string) {
	key := partitionKey{topic: topic, partition: partition}
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	cur, ok := p.mu.pauses[key]
	if !ok {
		return 0, ""
	}
	if left := cur.until.Sub(now); left > 0 {
		return left, cur.limit
	}
	delete(p.mu.pauses, key)
	return 0, ""
}

// wait returns once the partition is not paused, or ctx's error wrapped.
// A pause extended while it waits is waited for too.
func (p *pacer) wait(ctx context.Context, op, topic string, partition uint32) error {
	for {
		left, limit := p.remaining(topic, partition)
		if left <= 0 {
			return nil
		}
		p.log.DebugContext(ctx, "herald: pacing", "op", op, "wait", left, "limit", limit)
		if err := sleep(ctx, left); err != nil {
			return fmt.Errorf("client: %s: waiting %s for the partition's pause: %w", op, left, err)
		}
	}
}

// throttledLocally makes the ErrThrottled error of a call the SDK did not
// send (fail-fast mode): limit names the cause, and retryAfter, when
// positive, the time after which to try again (RetryAfter).
func throttledLocally(op, limit string, retryAfter time.Duration, detail string) error {
	md := map[string]string{wire.MetadataLimit: limit}
	msg := fmt.Sprintf("client: %s: throttled (%s), not sent", op, detail)
	if retryAfter > 0 {
		// Rounded up: a caller that waits the hint does not come back
		// before the pause is over.
		ms := int64((retryAfter + time.Millisecond - 1) / time.Millisecond)
		md[wire.MetadataRetryAfterMs] = strconv.FormatInt(ms, 10)
		msg += fmt.Sprintf("; retry after %d ms", ms)
	}
	return &Error{Reason: heraldpb.ErrorReason_THROTTLED, Code: codes.ResourceExhausted, Message: msg, Metadata: md}
}
