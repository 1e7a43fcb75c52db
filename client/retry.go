package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// leaderHopsMax bounds the NOT_LEADER redirects followed at once, without
// a backoff, between two retries: two nodes that each name the other (a
// stale view during an election) must not bounce a request forever.
const leaderHopsMax = 3

// call is one logical request, attempted until it succeeds, fails for good,
// or runs out of retries or context.
type call struct {
	op string // for logs and errors: "produce to orders/2"
	// topic and partition name the partition a call is for, when bound:
	// attempts go to its cached leader first, and what the call learns
	// about the leader updates the cache.
	topic     string
	partition uint32
	bound     bool
	// mutating calls must not be resent once they may have reached a
	// server and their outcome is unknown.
	mutating bool
	// idempotent mutating calls (an idempotent producer's events, which
	// the cluster recognises when they come again) are resent after an
	// ambiguous failure too; if the call then fails, its error still
	// matches ErrUnknownOutcome, since an earlier attempt may have been
	// applied.
	idempotent bool
	// paced produce calls (bound to their partition) obey backpressure:
	// each attempt first waits for the partition's pause to end (or, in
	// fail-fast mode, fails with ErrThrottled while it lasts), and a
	// refusal's retry-after pauses the partition for every call.
	paced bool
	// do makes one attempt on the given server.
	do func(ctx context.Context, hc heraldpb.HeraldClient) error
}

// invoke makes the unary RPC rpc(req) through c.run, as cl says (cl.do is
// set here), and returns the answer of the attempt that succeeded.
func invoke[Req, Resp any](ctx context.Context, c *Client, cl call,
	rpc func(heraldpb.HeraldClient, context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, error) {
	var resp Resp
	cl.do = func(ctx context.Context, hc heraldpb.HeraldClient) error {
		r, err := rpc(hc, ctx, req)
		resp = r
		return err
	}
	err := c.run(ctx, cl)
	return resp, err
}

// run attempts cl until it succeeds or fails for good. Each attempt gets
// RequestTimeout; retries (at most MaxRetries) wait with backoff, except
// NOT_LEADER redirects to a newly named leader, which go at once (at most
// leaderHopsMax in a row), and backpressure refusals, which wait their
// retry-after plus jitter (at most MaxThrottleRetries). A paced call
// waits for its partition's pause before each attempt (see call.paced).
//
// What is retried:
//   - a request that never left this process (no server reachable, the
//     connection not up): on another server, after a backoff;
//   - NO_LEADER and NOT_LEADER: definite refusals, nothing was applied;
//   - THROTTLED and QUEUE_FULL (ErrThrottled): definite refusals, on the
//     same leader after the hint, unless the call is paced and the
//     Client fails fast;
//   - for reads only, any transient failure after sending (Unavailable,
//     DeadlineExceeded of an attempt, ResourceExhausted, Aborted).
//
// A mutating call that may have reached a server and did not get a
// definite refusal fails with an error wrapping ErrUnknownOutcome, unless
// it is idempotent: it is then retried like a transient failure, and only
// if it finally fails does its error wrap ErrUnknownOutcome.
func (c *Client) run(ctx context.Context, cl call) error {
	var (
		hint  string // an address named by NOT_LEADER, tried next
		tried string // the address of the last attempt
		hops  int
		// throttled counts the resends after backpressure refusals.
		throttled int
		// maybeApplied: an earlier attempt of an idempotent call may have
		// been applied, so any failure now has an unknown outcome.
		maybeApplied bool
	)
	fail := func(addr string, err error) error {
		if maybeApplied && !errors.Is(err, ErrUnknownOutcome) {
			return unknownOutcome(cl.op, addr, err)
		}
		return err
	}
	for retry, attempts := 0, 1; ; attempts++ {
		if cl.paced {
			if err := c.pace(ctx, cl); err != nil {
				return fail(tried, err)
			}
		}
		addr := hint
		hint = ""
		if addr == "" && cl.bound {
			addr = c.meta.leader(cl.topic, cl.partition)
		}
		if addr == "" {
			addr = c.meta.nextServer(tried)
		}
		tried = addr

		sent, err := c.attempt(ctx, addr, cl.do)
		if err == nil {
			return nil
		}
		ambiguous := sent && cl.mutating && !refused(err)
		if ctx.Err() != nil {
			// The caller gave up (or its deadline passed) mid-attempt.
			if ambiguous {
				return unknownOutcome(cl.op, addr, err)
			}
			if errorReason(err) != heraldpb.ErrorReason_ERROR_REASON_UNSPECIFIED {
				return fail(addr, err)
			}
			return fail(addr, fmt.Errorf("client: %s via %s: %w", cl.op, addr, ctxErr(ctx, err)))
		}

		var notLeader *NotLeaderError
		switch {
		case errors.As(err, &notLeader):
			if cl.bound {
				c.meta.setLeader(cl.topic, cl.partition, notLeader.LeaderAddr)
			}
			if notLeader.LeaderAddr == "" {
				c.refresh(ctx, cl.topic)
			} else if notLeader.LeaderAddr != addr && hops < leaderHopsMax {
				hops++
				hint = notLeader.LeaderAddr
				c.log.DebugContext(ctx, "herald: following leader", "op", cl.op, "from", addr, "to", hint)
				continue
			}
		case errors.Is(err, ErrThrottled):
			// Refused before anything was proposed: the same leader takes
			// it after the hint. Other calls to the partition wait too.
			after, limit, ok := RetryAfter(err)
			if cl.paced && ok {
				c.pacer.hold(cl.topic, cl.partition, after, limit)
			}
			if cl.paced && c.cfg.Backpressure != BackpressureBlock {
				return fail(addr, err)
			}
			if throttled >= c.cfg.MaxThrottleRetries {
				return fail(addr, fmt.Errorf("client: %s: still throttled after %d resends: %w", cl.op, throttled, err))
			}
			delay := c.backoff.afterHint(after, ok, throttled)
			c.log.DebugContext(ctx, "herald: throttled, resending after the hint", "op", cl.op, "addr", addr,
				"limit", limit, "retry_after", after, "delay", delay, "resend", throttled+1)
			if werr := sleep(ctx, delay); werr != nil {
				return fail(addr, fmt.Errorf("client: %s: %w; last attempt: %w", cl.op, werr, err))
			}
			throttled++
			hops = 0
			continue
		case errors.Is(err, ErrNoLeader):
			c.forget(cl, addr)
		case !sent && transient(err):
			c.forget(cl, addr)
		case ambiguous && cl.idempotent:
			maybeApplied = true
			c.forget(cl, addr)
		case ambiguous:
			return unknownOutcome(cl.op, addr, err)
		case !cl.mutating && transient(err):
			c.forget(cl, addr)
		default:
			return fail(addr, annotate(cl.op, addr, err))
		}

		if retry >= c.cfg.MaxRetries {
			return fail(addr, fmt.Errorf("client: %s: gave up after %d attempts: %w", cl.op, attempts, annotate(cl.op, addr, err)))
		}
		delay := c.backoff.delay(retry)
		c.log.DebugContext(ctx, "herald: retrying", "op", cl.op, "addr", addr, "retry", retry+1, "backoff", delay, "err", err)
		if werr := sleep(ctx, delay); werr != nil {
			return fail(addr, fmt.Errorf("client: %s: %w; last attempt: %w", cl.op, werr, annotate(cl.op, addr, err)))
		}
		retry++
		hops = 0
	}
}

// attempt makes one attempt of do on addr and reports whether the request
// may have reached the server.
func (c *Client) attempt(ctx context.Context, addr string, do func(context.Context, heraldpb.HeraldClient) error) (sent bool, err error) {
	hc, err := c.pool.client(addr)
	if err != nil {
		return false, err
	}
	attemptCtx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	attemptCtx, sentFn := wire.TrackSent(attemptCtx)
	err = FromStatus(do(attemptCtx, hc))
	return sentFn(), err
}

// pace waits, before an attempt of a paced call, until its partition's
// pause is over; in fail-fast mode it fails with ErrThrottled instead
// while the pause lasts.
func (c *Client) pace(ctx context.Context, cl call) error {
	switch c.cfg.Backpressure {
	case BackpressureIgnore:
		return nil
	case BackpressureBlock:
		return c.pacer.wait(ctx, cl.op, cl.topic, cl.partition)
	}
	left, limit := c.pacer.remaining(cl.topic, cl.partition)
	if left <= 0 {
		return nil
	}
	if limit == "" {
		limit = LimitPacing
	}
	c.log.DebugContext(ctx, "herald: partition paused, failing fast", "op", cl.op, "left", left, "limit", limit)
	return throttledLocally(cl.op, limit, left, "the partition is paused")
}

// forget drops a bound call's cached leader after addr failed it.
func (c *Client) forget(cl call, addr string) {
	if cl.bound {
		c.meta.forgetLeader(cl.topic, cl.partition, addr)
	}
}

// refused reports whether err is an answer by which the server certainly
// did not apply the request.
func refused(err error) bool {
	switch errorReason(err) {
	case heraldpb.ErrorReason_UNKNOWN_OUTCOME, heraldpb.ErrorReason_CORRUPTION:
		return false
	case heraldpb.ErrorReason_ERROR_REASON_UNSPECIFIED:
	default:
		return true
	}
	// Without a Herald reason the status came from gRPC itself, on either
	// side. ResourceExhausted is not a refusal then: the client's own
	// receive limit reports a response too large for it that way, after
	// the server committed the request.
	switch errorCode(err) {
	case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.PermissionDenied,
		codes.Unauthenticated, codes.FailedPrecondition, codes.OutOfRange, codes.Unimplemented:
		return true
	}
	return false
}

// transient reports whether err may go away by itself.
func transient(err error) bool {
	switch errorReason(err) {
	case heraldpb.ErrorReason_NO_LEADER, heraldpb.ErrorReason_QUEUE_FULL:
		return true
	}
	if errorReason(err) != heraldpb.ErrorReason_ERROR_REASON_UNSPECIFIED {
		return false
	}
	switch errorCode(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted:
		return true
	}
	return false
}

// unknownOutcome wraps err, from a write that may have been applied, so
// that it matches ErrUnknownOutcome.
func unknownOutcome(op, addr string, err error) error {
	if errors.Is(err, ErrUnknownOutcome) {
		return fmt.Errorf("client: %s via %s: %w", op, addr, err)
	}
	return fmt.Errorf("client: %s via %s: %w (%w)", op, addr, ErrUnknownOutcome, err)
}

// annotate adds the operation and address to an error that does not say
// them itself (Herald errors do).
func annotate(op, addr string, err error) error {
	if errorReason(err) != heraldpb.ErrorReason_ERROR_REASON_UNSPECIFIED || errors.Is(err, ErrClosed) {
		return err
	}
	return fmt.Errorf("client: %s via %s: %w", op, addr, err)
}

// ctxErr joins the context's error with the attempt's.
func ctxErr(ctx context.Context, err error) error {
	if errors.Is(err, ctx.Err()) {
		return err
	}
	return fmt.Errorf("%w (%w)", ctx.Err(), err)
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
