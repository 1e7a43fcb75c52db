package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldlog/herald/client"
)

// The two phases of the noisy-tenant scenario.
const (
	phaseAOff      = 0
	phaseAFlooding = 1
	noisyPhases    = 2
)

// noisyPhaseNames name the phases in the report.
var noisyPhaseNames = [noisyPhases]string{"A off", "A flooding"}

// noisyRun is what the two phases measure. The steady and flood
// goroutines record into it concurrently; the owner (noisyEnv.run) reads
// it once they are all done, and the progress goroutine reads the
// per-second figures while they run.
type noisyRun struct {
	start   time.Time
	phase   time.Duration
	seconds int // 2 × phase, in whole seconds: the plot's x range

	mu struct {
		sync.Mutex
		// latency, sent, acked and errs are per phase and steady tenant
		// (index 0 is B), by each event's scheduled send time.
		latency [noisyPhases][noisySteadyTenants]*latency
		sent    [noisyPhases][noisySteadyTenants]int64
		acked   [noisyPhases][noisySteadyTenants]int64
		errs    [noisyPhases][noisySteadyTenants]int64
		// perSecond is B..E's latency by scheduled second.
		perSecond []*latency
		// refusedByLimit counts A's refused events by the limit named.
		refusedByLimit map[string]int64
		firstSteadyErr string
		firstFloodErr  string
	}

	// A's events by second of the run: attempted by send time, the
	// outcomes by the time the request returned.
	aAttempted, aAdmitted, aRefused []atomic.Int64
	// cpuAt are the nodes' and this process's CPU seconds at the start
	// of each phase and at the end (-1: unknown); written by the CPU
	// sampler, read after it is done.
	nodeCPUAt, selfCPUAt [noisyPhases + 1]float64

	// A's totals over the flooding phase.
	aAttemptedTotal, aAdmittedTotal, aRefusedTotal, aFailedTotal, aCutTotal atomic.Int64
}

func newNoisyRun(start time.Time, phase time.Duration) *noisyRun {
	seconds := int(math.Ceil(2 * phase.Seconds()))
	r := &noisyRun{start: start, phase: phase, seconds: seconds}
	for p := range noisyPhases {
		for t := range noisySteadyTenants {
			r.mu.latency[p][t] = newLatency()
		}
	}
	r.mu.perSecond = make([]*latency, seconds)
	for s := range r.mu.perSecond {
		r.mu.perSecond[s] = newLatency()
	}
	r.mu.refusedByLimit = map[string]int64{}
	r.aAttempted = make([]atomic.Int64, seconds)
	r.aAdmitted = make([]atomic.Int64, seconds)
	r.aRefused = make([]atomic.Int64, seconds)
	return r
}

// second returns the run's second of t, clamped to the plot's range.
func (r *noisyRun) second(t time.Time) int {
	return min(max(int(t.Sub(r.start)/time.Second), 0), r.seconds-1)
}

// phaseOf returns the phase of a time in the run.
func (r *noisyRun) phaseOf(t time.Time) int {
	if t.Sub(r.start) < r.phase {
		return phaseAOff
	}
	return phaseAFlooding
}

// recordSteady records one steady event scheduled at due: acknowledged
// after took (err nil), or failed.
func (r *noisyRun) recordSteady(tenant int, due time.Time, took time.Duration, err error) {
	p, s := r.phaseOf(due), r.second(due)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.sent[p][tenant]++
	if err != nil {
		r.mu.errs[p][tenant]++
		if r.mu.firstSteadyErr == "" {
			r.mu.firstSteadyErr = err.Error()
		}
		return
	}
	r.mu.acked[p][tenant]++
	r.mu.latency[p][tenant].record(took)
	r.mu.perSecond[s].record(took)
}

// recordFlood records one of A's requests of n events, sent at sent and
// returned at done with admitted events acknowledged and err for the rest;
// cut says the phase ended while it was in flight.
func (r *noisyRun) recordFlood(sent, done time.Time, n, admitted int, err error, cut bool) {
	r.aAttempted[r.second(sent)].Add(int64(n))
	r.aAttemptedTotal.Add(int64(n))
	r.aAdmitted[r.second(done)].Add(int64(admitted))
	r.aAdmittedTotal.Add(int64(admitted))
	rest := int64(n - admitted)
	if rest == 0 {
		return
	}
	switch {
	case cut:
		r.aCutTotal.Add(rest)
		return
	case errors.Is(err, client.ErrThrottled) && !errors.Is(err, client.ErrUnknownOutcome):
		r.aRefused[r.second(done)].Add(rest)
		r.aRefusedTotal.Add(rest)
		limit := throttleLimit(err)
		r.mu.Lock()
		r.mu.refusedByLimit[limit] += rest
		r.mu.Unlock()
		return
	}
	r.aFailedTotal.Add(rest)
	r.mu.Lock()
	if r.mu.firstFloodErr == "" && err != nil {
		r.mu.firstFloodErr = err.Error()
	}
	r.mu.Unlock()
}

// throttleLimit returns the limit named by the first backpressure refusal
// in err's tree (Produce joins one error per partition, and RetryAfter
// looks only at the first *wire.Error), or "unnamed".
func throttleLimit(err error) string {
	if err == nil {
		return "unnamed"
	}
	if _, limit, _ := client.RetryAfter(err); limit != "" {
		return limit
	}
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if limit := throttleLimit(e); limit != "unnamed" {
				return limit
			}
		}
	case interface{ Unwrap() error }:
		return throttleLimit(u.Unwrap())
	}
	return "unnamed"
}

// run runs both phases and returns what they measured. Its goroutines
// (one pacer per steady tenant and its sends, the flooders, the progress
// printer) are owned by run and done before it returns.
func (e *noisyEnv) run(ctx context.Context, progressOut io.Writer) (*noisyRun, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	warmStart := time.Now()
	r := newNoisyRun(warmStart.Add(e.opts.Warmup), e.opts.Phase)
	end := r.start.Add(2 * e.opts.Phase)

	quit := make(chan struct{})
	var printer sync.WaitGroup
	if progressOut != nil {
		printer.Go(func() { r.printProgress(progressOut, quit) })
	}
	var wg sync.WaitGroup
	wg.Go(func() { e.sampleCPU(ctx, r) })
	for i := range noisySteadyTenants {
		wg.Go(func() { e.steadyTenant(ctx, r, i, warmStart) })
	}
	floodCtx, stopFlood := context.WithDeadline(ctx, end)
	defer stopFlood()
	for _, cl := range e.flood {
		wg.Go(func() {
			if sleepUntil(floodCtx, r.start.Add(e.opts.Phase)) != nil {
				return
			}
			e.flooder(floodCtx, r, cl)
		})
	}
	wg.Wait()
	close(quit)
	printer.Wait()
	return r, ctx.Err()
}

// sampleCPU reads the nodes' and this process's CPU at the start of each
// phase and at the end of the last.
func (e *noisyEnv) sampleCPU(ctx context.Context, r *noisyRun) {
	for i := range r.nodeCPUAt {
		r.nodeCPUAt[i], r.selfCPUAt[i] = -1, -1
	}
	for i := range r.nodeCPUAt {
		if sleepUntil(ctx, r.start.Add(time.Duration(i)*r.phase)) != nil {
			return
		}
		r.selfCPUAt[i] = selfCPUSeconds()
		if e.cpu != nil {
			if v, err := e.cpu.cpuSeconds(ctx); err == nil {
				r.nodeCPUAt[i] = v
			}
		}
	}
}

// cores returns the CPU used between two readings per second of phase,
// or -1 when either reading is unknown.
func cores(before, after float64, phase time.Duration) float64 {
	if before < 0 || after < 0 {
		return -1
	}
	return round((after-before)/phase.Seconds(), 2)
}

// steadyTenant sends tenant i's events (index 0 is B) one per request on
// a fixed schedule from from (the warm-up's start) to the end of both
// phases: event k is due at from + k/SteadyRate; those due before the
// first phase are not recorded. Each send is a goroutine of its own, at
// most steadyInflightMax at a time; steadyTenant waits for them before it
// returns.
func (e *noisyEnv) steadyTenant(ctx context.Context, r *noisyRun, i int, from time.Time) {
	cl, tenant := e.steady[i], e.tenants[1+i]
	total := int64(math.Round((r.start.Sub(from) + 2*e.opts.Phase).Seconds() * e.opts.SteadyRate))
	interval := float64(time.Second) / e.opts.SteadyRate
	slots := make(chan struct{}, steadyInflightMax)
	var sends sync.WaitGroup
	defer sends.Wait()
	for k := range total {
		due := from.Add(time.Duration(float64(k) * interval))
		if sleepUntil(ctx, due) != nil {
			return
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		sends.Go(func() {
			defer func() { <-slots }()
			sctx, cancel := context.WithTimeout(ctx, noisyDrainTimeout)
			defer cancel()
			_, err := cl.Produce(sctx, e.topic, &client.Event{TenantId: tenant, Payload: e.payload})
			if ctx.Err() != nil || due.Before(r.start) {
				return // the run was cancelled, or the warm-up: not a measurement
			}
			r.recordSteady(i, due, time.Since(due), err)
		})
	}
}

// flooder is one of A's senders: FloodBatch events per request, the next
// request at once after an ack and FloodPause after anything else, until
// ctx ends.
func (e *noisyEnv) flooder(ctx context.Context, r *noisyRun, cl *client.Client) {
	tenant := e.tenants[0]
	for ctx.Err() == nil {
		events := make([]*client.Event, e.opts.FloodBatch)
		for i := range events {
			events[i] = &client.Event{TenantId: tenant, Payload: e.payload}
		}
		sent := time.Now()
		results, err := cl.Produce(ctx, e.topic, events...)
		admitted := 0
		for _, res := range results {
			if res != nil {
				admitted++
			}
		}
		r.recordFlood(sent, time.Now(), len(events), admitted, err, err != nil && ctx.Err() != nil)
		if err != nil && e.opts.FloodPause > 0 {
			_ = sleepUntil(ctx, time.Now().Add(e.opts.FloodPause))
		}
	}
}

// printProgress prints one line a second until quit is closed: the
// phase, B..E's acks and p99 in the last whole second, A's rates in it.
func (r *noisyRun) printProgress(w io.Writer, quit <-chan struct{}) {
	tick := time.NewTicker(progressInterval)
	defer tick.Stop()
	for {
		select {
		case <-quit:
			return
		case now := <-tick.C:
			s := int(now.Sub(r.start)/time.Second) - 1 // the last whole second
			if s < 0 || s >= r.seconds {
				continue
			}
			r.mu.Lock()
			acked, p99 := r.mu.perSecond[s].count(), r.mu.perSecond[s].percentiles().P99
			r.mu.Unlock()
			fmt.Fprintf(w, "noisy-tenant: %s, second %d/%d: B..E %d acked, p99 %s; A %s attempted, %s admitted, %s refused\n",
				noisyPhaseNames[r.phaseOf(r.start.Add(time.Duration(s)*time.Second))], s+1, r.seconds, acked, formatMs(p99),
				formatCount(r.aAttempted[s].Load()), formatCount(r.aAdmitted[s].Load()), formatCount(r.aRefused[s].Load()))
		}
	}
}

// fill writes the run's figures into res.
func (r *noisyRun) fill(res *NoisyResult, e *noisyEnv) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seconds := r.phase.Seconds()
	res.Phases = nil
	for p := range noisyPhases {
		ph := NoisyPhase{
			Name: noisyPhaseNames[p], DurationS: round(seconds, 3),
			NodeCPUCores:  cores(r.nodeCPUAt[p], r.nodeCPUAt[p+1], r.phase),
			BenchCPUCores: cores(r.selfCPUAt[p], r.selfCPUAt[p+1], r.phase),
		}
		all := newLatency()
		steady := NoisyTenant{Name: "B..E"}
		for t := range noisySteadyTenants {
			nt := NoisyTenant{
				Name: noisyNames[1+t], TenantID: e.tenants[1+t],
				Sent: r.mu.sent[p][t], Acked: r.mu.acked[p][t], Errors: r.mu.errs[p][t],
				EventsPerSec: round(float64(r.mu.acked[p][t])/seconds, 1),
				Latency:      roundPercentiles(r.mu.latency[p][t].percentiles()),
			}
			ph.Tenants = append(ph.Tenants, nt)
			steady.Sent += nt.Sent
			steady.Acked += nt.Acked
			steady.Errors += nt.Errors
			all.merge(r.mu.latency[p][t])
		}
		steady.EventsPerSec = round(float64(steady.Acked)/seconds, 1)
		steady.Latency = roundPercentiles(all.percentiles())
		ph.Steady = steady
		if p == phaseAFlooding {
			f := &NoisyFlood{
				TenantID: e.tenants[0], QuotaEventsPerSec: e.opts.QuotaEventsPerSec,
				Attempted: r.aAttemptedTotal.Load(), Admitted: r.aAdmittedTotal.Load(), Refused: r.aRefusedTotal.Load(),
				Failed: r.aFailedTotal.Load(), Cut: r.aCutTotal.Load(), FirstError: r.mu.firstFloodErr,
			}
			if len(r.mu.refusedByLimit) > 0 {
				f.RefusedByLimit = maps.Clone(r.mu.refusedByLimit)
			}
			f.AttemptedPerSec = round(float64(f.Attempted)/seconds, 1)
			f.AdmittedPerSec = round(float64(f.Admitted)/seconds, 1)
			f.RefusedPerSec = round(float64(f.Refused)/seconds, 1)
			f.AdmittedOverQuota = round(f.AdmittedPerSec/float64(f.QuotaEventsPerSec), 3)
			ph.Flood = f
		}
		res.Phases = append(res.Phases, ph)
	}
	if off := res.Phases[phaseAOff].Steady.Latency.P99; off > 0 {
		res.P99Ratio = round(res.Phases[phaseAFlooding].Steady.Latency.P99/off, 2)
	}
	res.Seconds = make([]NoisySecond, r.seconds)
	for s := range res.Seconds {
		sec := NoisySecond{
			Second: s, SteadyP50: -1, SteadyP99: -1, SteadyAck: r.mu.perSecond[s].count(),
			AAttempted: r.aAttempted[s].Load(), AAdmitted: r.aAdmitted[s].Load(), ARefused: r.aRefused[s].Load(),
		}
		if sec.SteadyAck > 0 {
			pc := r.mu.perSecond[s].percentiles()
			sec.SteadyP50, sec.SteadyP99 = round(pc.P50, 3), round(pc.P99, 3)
		}
		res.Seconds[s] = sec
	}
	if r.mu.firstSteadyErr != "" {
		res.note("B..E had failed requests; the first: %s", r.mu.firstSteadyErr)
	}
}

// roundPercentiles rounds every figure to the microsecond.
func roundPercentiles(p Percentiles) Percentiles {
	return Percentiles{
		P50: round(p.P50, 3), P99: round(p.P99, 3), P999: round(p.P999, 3),
		Max: round(p.Max, 3), Mean: round(p.Mean, 3), Count: p.Count,
	}
}
