package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/heraldlog/herald/client"
)

// The noisy-tenant scenario (`herald bench noisy-tenant`, issue 13) shows
// whether one tenant flooding the cluster hurts the others:
//
//  1. create tenants A..E (A with a quota of QuotaEventsPerSec) and a
//     topic with ordering NONE, so every tenant's events land on every
//     partition;
//  2. after Warmup of the same load, unmeasured, phase "A off", Phase
//     long: B..E each produce SteadyRate events/s,
//     one event per request, paced on a fixed schedule (open loop: a
//     slow ack does not delay the next send, up to steadyInflightMax
//     requests in flight per tenant); each ack's latency is measured from
//     the event's scheduled send time, so queueing in the load generator
//     counts too (no coordinated omission);
//  3. phase "A flooding", Phase long: the same B..E load while A's
//     Flooders senders each send FloodBatch events per request as fast as
//     they can, ignoring throttle hints, without SDK retries, and after a
//     refusal pausing only FloodPause before the next request (a
//     misbehaving tenant);
//  4. report B..E's latency and throughput per phase, A's attempted,
//     admitted and refused rates against its quota, every node's peak RSS
//     (sampled every rssSampleInterval), and plot B..E's p99 per second
//     and A's admitted rate per second as an SVG.
//
// Like the other scenarios it measures and asserts nothing.

// Defaults of NoisyOptions (DefaultNoisyOptions).
const (
	DefaultNoisyQuotaEventsPerSec = 2000
	DefaultNoisySteadyRate        = 200
	DefaultNoisyPhase             = 20 * time.Second
	DefaultNoisyWarmup            = 5 * time.Second
	// DefaultNoisyFlooders and DefaultNoisyFloodBatch make A flood: on
	// the 2-core machine, with no admission control, 8 senders of 100
	// events only reached ~6,000 events/s and moved B..E's p99 by 1.45x;
	// 16 of 500 reached ~11,000 and 4.6x (docs/benchmarks.md).
	DefaultNoisyFlooders   = 16
	DefaultNoisyFloodBatch = 500
	DefaultNoisyFloodPause = 10 * time.Millisecond
	DefaultNoisySVGPath    = "noisy-tenant.svg"
)

// Limits of NoisyOptions and of the run.
const (
	noisySteadyTenants = 4 // B..E
	noisyQuotaMax      = 1e9
	noisySteadyRateMax = 100_000
	noisyPhaseMax      = time.Hour
	noisyFloodersMax   = 256
	noisyFloodPauseMax = time.Minute
	// steadyInflightMax bounds each steady tenant's requests in flight;
	// past it the tenant's next send waits for a slot (its latency,
	// measured from the scheduled time, then includes the wait).
	steadyInflightMax = 256
	// noisyDrainTimeout bounds the wait for the steady requests still in
	// flight when the second phase ends.
	noisyDrainTimeout = 30 * time.Second
)

// NoisyOptions configure the noisy-tenant scenario. Validate reports every
// problem at once.
type NoisyOptions struct {
	// Servers are the gRPC addresses of an existing cluster. Empty: start
	// a local three-node cluster of Executable.
	Servers []string
	// HTTPAddrs are the nodes' HTTP addresses (only with Servers): their
	// RSS is then read from /metrics process_resident_memory_bytes.
	HTTPAddrs []string
	// NodeArgs are extra `herald serve` flags for the local cluster.
	NodeArgs []string
	// Executable is the binary the local cluster runs; empty means
	// os.Executable().
	Executable string
	// Timeout bounds each request (the SDK's attempt timeout) and dial.
	Timeout time.Duration
	// QuotaEventsPerSec is tenant A's quota (TenantQuota.events_per_sec).
	QuotaEventsPerSec uint64
	// SteadyRate is each of B..E's produce rate, events per second.
	SteadyRate float64
	// SizeBytes is every event's payload size.
	SizeBytes int
	// Phase is the length of each of the two phases.
	Phase time.Duration
	// Warmup is how long B..E produce, unmeasured, before the first
	// phase (connections, leader caches, Pebble and Raft warm up).
	Warmup time.Duration
	// Flooders is A's number of concurrent senders.
	Flooders int
	// FloodBatch is the events per request A sends.
	FloodBatch int
	// FloodPause is A's pause after a refused or failed request (0: none).
	FloodPause time.Duration
	// Partitions and Replication shape the topic.
	Partitions, Replication int
	// SVGPath is where the plot is written; empty: no plot.
	SVGPath string
}

// DefaultNoisyOptions returns the scenario's defaults.
func DefaultNoisyOptions() NoisyOptions {
	return NoisyOptions{
		Timeout:           DefaultTimeout,
		QuotaEventsPerSec: DefaultNoisyQuotaEventsPerSec,
		SteadyRate:        DefaultNoisySteadyRate,
		SizeBytes:         DefaultSizeBytes,
		Phase:             DefaultNoisyPhase,
		Warmup:            DefaultNoisyWarmup,
		Flooders:          DefaultNoisyFlooders,
		FloodBatch:        DefaultNoisyFloodBatch,
		FloodPause:        DefaultNoisyFloodPause,
		Partitions:        DefaultPartitions,
		Replication:       DefaultReplication,
		SVGPath:           DefaultNoisySVGPath,
	}
}

// Validate reports every problem with o, each wrapping ErrInvalidOptions
// and naming the CLI flag.
func (o *NoisyOptions) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, args...)...))
	}
	if o.Timeout <= 0 {
		bad("--timeout %s: want a positive duration", o.Timeout)
	}
	if o.QuotaEventsPerSec < 1 || o.QuotaEventsPerSec > noisyQuotaMax {
		bad("--quota %d: want 1 to %g events/s", o.QuotaEventsPerSec, float64(noisyQuotaMax))
	}
	if o.SteadyRate <= 0 || o.SteadyRate > noisySteadyRateMax {
		bad("--steady-rate %g: want more than 0, at most %d events/s", o.SteadyRate, noisySteadyRateMax)
	}
	if o.SizeBytes < 1 || o.SizeBytes > sizeBytesMax {
		bad("--size %d: want 1 to %d bytes", o.SizeBytes, sizeBytesMax)
	}
	if o.Phase < time.Second || o.Phase > noisyPhaseMax {
		bad("--phase %s: want 1s to %s", o.Phase, noisyPhaseMax)
	}
	if o.Warmup < 0 || o.Warmup > noisyPhaseMax {
		bad("--warmup %s: want 0 to %s", o.Warmup, noisyPhaseMax)
	}
	if o.Flooders < 1 || o.Flooders > noisyFloodersMax {
		bad("--flooders %d: want 1 to %d", o.Flooders, noisyFloodersMax)
	}
	if o.FloodBatch < 1 || o.FloodBatch > batchMax {
		bad("--flood-batch %d: want 1 to %d", o.FloodBatch, batchMax)
	}
	if o.FloodPause < 0 || o.FloodPause > noisyFloodPauseMax {
		bad("--flood-pause %s: want 0 to %s", o.FloodPause, noisyFloodPauseMax)
	}
	if o.Partitions < 1 || o.Partitions > partitionsMax {
		bad("--partitions %d: want 1 to %d", o.Partitions, partitionsMax)
	}
	if o.Replication < 1 {
		bad("--replication %d: want at least 1", o.Replication)
	} else if len(o.Servers) == 0 && o.Replication > localNodes {
		bad("--replication %d: the local cluster has %d nodes", o.Replication, localNodes)
	}
	if len(o.HTTPAddrs) > 0 && len(o.Servers) == 0 {
		bad("--http-addrs needs --server (the local cluster's RSS is read from /proc)")
	}
	return errors.Join(errs...)
}

// NoisyTenant is one steady tenant's (or B..E together's) figures in a phase.
type NoisyTenant struct {
	Name     string `json:"name"`
	TenantID string `json:"tenant_id,omitempty"`
	// Sent counts the events scheduled in the phase, Acked those
	// acknowledged, Errors those whose request failed.
	Sent         int64       `json:"sent"`
	Acked        int64       `json:"acked"`
	Errors       int64       `json:"errors"`
	EventsPerSec float64     `json:"events_per_sec"`
	Latency      Percentiles `json:"latency_ms"`
}

// NoisyFlood is tenant A's figures in the flooding phase. Events are
// counted once each: admitted (acknowledged), refused (a backpressure
// refusal, ErrThrottled: nothing written), failed (any other error,
// including unknown outcomes) or cut (in flight when the phase ended).
type NoisyFlood struct {
	TenantID          string           `json:"tenant_id"`
	QuotaEventsPerSec uint64           `json:"quota_events_per_sec"`
	Attempted         int64            `json:"attempted"`
	Admitted          int64            `json:"admitted"`
	Refused           int64            `json:"refused"`
	Failed            int64            `json:"failed"`
	Cut               int64            `json:"cut"`
	RefusedByLimit    map[string]int64 `json:"refused_by_limit,omitempty"`
	AttemptedPerSec   float64          `json:"attempted_per_sec"`
	AdmittedPerSec    float64          `json:"admitted_per_sec"`
	RefusedPerSec     float64          `json:"refused_per_sec"`
	// AdmittedOverQuota is AdmittedPerSec / QuotaEventsPerSec.
	AdmittedOverQuota float64 `json:"admitted_over_quota"`
	FirstError        string  `json:"first_error,omitempty"`
}

// NoisyPhase is one phase's outcome.
type NoisyPhase struct {
	Name      string  `json:"name"`
	DurationS float64 `json:"duration_s"`
	// Steady is B..E together; Tenants each of them.
	Steady  NoisyTenant   `json:"steady"`
	Tenants []NoisyTenant `json:"tenants"`
	Flood   *NoisyFlood   `json:"flood,omitempty"`
	// NodeCPUCores is the CPU the node processes used in the phase, in
	// cores (CPU seconds per second, all nodes together); BenchCPUCores
	// this load generator's. -1 when unknown.
	NodeCPUCores  float64 `json:"node_cpu_cores"`
	BenchCPUCores float64 `json:"bench_cpu_cores"`
}

// NoisyNode is one node's memory over the run.
type NoisyNode struct {
	Node string `json:"node"`
	// RSSStartKiB is the first sample, RSSPeakKiB the largest sample
	// (every rssSampleInterval); HWMKiB the kernel's peak (VmHWM, since
	// the process started; local cluster only, else -1).
	RSSStartKiB int64 `json:"rss_start_kib"`
	RSSPeakKiB  int64 `json:"rss_peak_kib"`
	HWMKiB      int64 `json:"hwm_kib"`
}

// NoisySecond is one second of the run, for the plot: B..E's latency
// percentiles over the events scheduled in that second (-1: none
// acknowledged) and A's attempted and admitted events in it.
type NoisySecond struct {
	Second     int     `json:"second"`
	SteadyP50  float64 `json:"steady_p50_ms"`
	SteadyP99  float64 `json:"steady_p99_ms"`
	SteadyAck  int64   `json:"steady_acked"`
	AAttempted int64   `json:"a_attempted"`
	AAdmitted  int64   `json:"a_admitted"`
	ARefused   int64   `json:"a_refused"`
}

// NoisyResult is the noisy-tenant scenario's outcome. Its JSON keys are a
// contract like Result's: add keys, never rename or remove one.
type NoisyResult struct {
	Scenario    string        `json:"scenario"`
	Cluster     string        `json:"cluster"`
	Topic       string        `json:"topic"`
	Partitions  int           `json:"partitions"`
	Replication int           `json:"replication"`
	Size        int           `json:"size"`
	SteadyRate  float64       `json:"steady_rate"`
	Flooders    int           `json:"flooders"`
	FloodBatch  int           `json:"flood_batch"`
	FloodPauseS float64       `json:"flood_pause_s"`
	Phases      []NoisyPhase  `json:"phases"`
	Nodes       []NoisyNode   `json:"nodes"`
	Seconds     []NoisySecond `json:"seconds"`
	// P99Ratio is B..E's p99 flooding over their p99 with A off (the
	// issue's goal: at most 2).
	P99Ratio float64  `json:"steady_p99_ratio"`
	SVG      string   `json:"svg,omitempty"`
	Notes    []string `json:"notes,omitempty"`
}

// noisyEnv is what RunNoisy hands its phases.
type noisyEnv struct {
	opts    NoisyOptions
	topic   string
	tenants [1 + noisySteadyTenants]string // A, B, C, D, E
	steady  []*client.Client               // one per steady tenant
	flood   []*client.Client               // one per flooder, no retries
	payload []byte
	cpu     cpuMeter // the nodes' CPU; nil when unknown
}

// noisyNames are the tenants' names in the report.
var noisyNames = [1 + noisySteadyTenants]string{"A", "B", "C", "D", "E"}

// RunNoisy runs the noisy-tenant scenario. Progress and cluster lines go
// to progressOut (nil: discarded). It removes what it made (the local
// cluster, or the topic on an external cluster; tenants cannot be
// deleted and stay), also when it fails. With SVGPath set the plot is
// written there once the run has succeeded.
func RunNoisy(ctx context.Context, opts NoisyOptions, progressOut io.Writer) (res *NoisyResult, err error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	logOut := progressOut
	if logOut == nil {
		logOut = io.Discard
	}
	res = &NoisyResult{
		Scenario: "noisy-tenant", Cluster: "external", Partitions: opts.Partitions, Replication: opts.Replication,
		Size: opts.SizeBytes, SteadyRate: opts.SteadyRate, Flooders: opts.Flooders, FloodBatch: opts.FloodBatch,
		FloodPauseS: opts.FloodPause.Seconds(),
	}
	var (
		mem memMeter
		cpu cpuMeter
	)
	servers := opts.Servers
	if len(servers) == 0 {
		// Assigned, not declared: finishRun must see the named results.
		var cluster *LocalCluster
		if cluster, err = startRunCluster(ctx, opts.Executable, opts.NodeArgs, logOut); err != nil {
			return nil, err
		}
		defer finishRun(cluster, &res, &err)
		servers = cluster.GRPCAddrs()
		mem = procMem{pids: cluster.PIDs()}
		cpu = procCPU{pids: cluster.PIDs()}
		res.Cluster = "local"
	} else if len(opts.HTTPAddrs) > 0 {
		hc := &http.Client{Timeout: metricsTimeout}
		mem = metricsMem{httpAddrs: opts.HTTPAddrs, client: hc}
		cpu = metricsCPU{httpAddrs: opts.HTTPAddrs, client: hc}
	} else {
		res.note("--server given without --http-addrs: the nodes' RSS and CPU cannot be read")
	}

	e := &noisyEnv{opts: opts, payload: make([]byte, opts.SizeBytes), cpu: cpu}
	if _, err := rand.Read(e.payload); err != nil {
		return nil, fmt.Errorf("bench: payload: %w", err)
	}
	newClient := func(retries int, mode client.Backpressure) (*client.Client, error) {
		return client.New(ctx, client.Config{
			Servers: servers, DialTimeout: opts.Timeout, RequestTimeout: opts.Timeout, MaxRetries: retries, Backpressure: mode,
			Logger: slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelError})),
		})
	}
	admin, err := newClient(0, client.BackpressureBlock)
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	for range noisySteadyTenants {
		cl, err := newClient(0, client.BackpressureBlock)
		if err != nil {
			return nil, err
		}
		defer cl.Close()
		e.steady = append(e.steady, cl)
	}
	for range opts.Flooders {
		// A misbehaves: no retries (it resends by itself), no pacing.
		cl, err := newClient(-1, client.BackpressureIgnore)
		if err != nil {
			return nil, err
		}
		defer cl.Close()
		e.flood = append(e.flood, cl)
	}

	if err := e.setUp(ctx, admin); err != nil {
		return nil, err
	}
	res.Topic = e.topic
	fmt.Fprintf(logOut, "bench: topic %s (%d partitions x%d, ordering none); tenant A %s with a quota of %d events/s; B..E %v\n",
		e.topic, opts.Partitions, opts.Replication, e.tenants[0], opts.QuotaEventsPerSec, e.tenants[1:])
	if len(opts.Servers) > 0 {
		defer func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), teardownTimeout)
			defer cancel()
			if derr := admin.DeleteTopic(dctx, e.topic, true); derr != nil {
				fmt.Fprintf(logOut, "bench: topic %s left in place: %v\n", e.topic, derr)
			}
		}()
	}
	if note, err := awaitLeaders(ctx, admin, e.topic, preferredTimeout); err != nil {
		return nil, err
	} else if note != "" {
		res.note("%s", note)
	}
	if err := e.warmUp(ctx); err != nil {
		return nil, err
	}

	sampler := startMemSampler(mem)
	run, err := e.run(ctx, progressOut)
	nodes := sampler.stop()
	if err != nil {
		return nil, err
	}
	run.fill(res, e)
	res.Nodes = nodes
	if res.Cluster != "local" {
		res.note("latency is measured on this machine's clock from each event's scheduled send time")
	}
	if opts.SVGPath != "" {
		if err := writeNoisySVG(opts.SVGPath, res); err != nil {
			return nil, err
		}
		res.SVG = opts.SVGPath
	}
	return res, nil
}

// note adds a caveat to the result.
func (r *NoisyResult) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// setUp creates the tenants (A with its quota) and the topic.
func (e *noisyEnv) setUp(ctx context.Context, admin *client.Client) error {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Errorf("bench: names: %w", err)
	}
	run := hex.EncodeToString(b[:])
	for i, name := range noisyNames {
		e.tenants[i] = fmt.Sprintf("noisy-%s-%s", run, name)
		t := &client.Tenant{Id: e.tenants[i], DisplayName: "noisy-tenant bench " + name}
		if i == 0 {
			t.Quota = &client.TenantQuota{EventsPerSec: e.opts.QuotaEventsPerSec}
		}
		if _, err := admin.CreateTenant(ctx, t); err != nil {
			return fmt.Errorf("bench: creating tenant %s: %w", e.tenants[i], err)
		}
	}
	// The quota again through SetTenantQuota, the call an operator makes
	// (CreateTenant's quota and this must agree).
	if _, err := admin.SetTenantQuota(ctx, e.tenants[0], &client.TenantQuota{EventsPerSec: e.opts.QuotaEventsPerSec}); err != nil {
		return fmt.Errorf("bench: setting the quota of %s: %w", e.tenants[0], err)
	}
	e.topic = "bench-noisy-" + run
	_, err := admin.CreateTopic(ctx, &client.TopicConfig{
		Name: e.topic, Partitions: uint32(e.opts.Partitions), ReplicationFactor: uint32(e.opts.Replication),
		Ordering: client.OrderingNone,
	})
	if err != nil {
		return fmt.Errorf("bench: creating topic %s: %w", e.topic, err)
	}
	return nil
}

// warmUp sends one event per partition for every tenant through each
// client, so that connections and leader caches are ready before the
// clock starts.
func (e *noisyEnv) warmUp(ctx context.Context) error {
	send := func(cl *client.Client, tenant string) error {
		events := make([]*client.Event, e.opts.Partitions)
		for i := range events {
			events[i] = &client.Event{TenantId: tenant, Payload: e.payload}
		}
		if _, err := cl.Produce(ctx, e.topic, events...); err != nil {
			return fmt.Errorf("bench: warm-up produce for %s: %w", tenant, err)
		}
		return nil
	}
	for i, cl := range e.steady {
		if err := send(cl, e.tenants[1+i]); err != nil {
			return err
		}
	}
	for _, cl := range e.flood {
		// A may already be refused (its quota's burst is small): only
		// the connection matters here.
		if err := send(cl, e.tenants[0]); err != nil && !errors.Is(err, client.ErrThrottled) {
			return err
		}
	}
	return nil
}
