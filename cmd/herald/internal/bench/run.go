package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mathrand "math/rand/v2"
	"net/http"
	"time"

	"github.com/heraldlog/herald/client"
)

// Bounds of a run's setup and teardown.
const (
	// leadersTimeout bounds the wait for a leader on every partition of
	// the new topic; preferredTimeout the further wait for each leader to
	// be its partition's preferred replica (the reconciler moves it there
	// every 2 s; a move during the measurement would disturb it).
	leadersTimeout      = 30 * time.Second
	preferredTimeout    = 10 * time.Second
	leadersPollInterval = 100 * time.Millisecond
	// teardownTimeout bounds deleting the topic of an external cluster.
	teardownTimeout = 10 * time.Second
	// metricsTimeout bounds one /metrics scrape.
	metricsTimeout = 5 * time.Second
)

// env is what a scenario runs with; built and torn down by Run.
type env struct {
	opts     Options
	topic    string
	admin    *client.Client   // topic admin and reads (replay, e2e)
	clients  []*client.Client // one per producer
	work     *workload
	cpu      cpuWindow
	progress io.Writer // progress lines; nil: none
	result   *Result   // pre-filled with the run's shape
}

// Run runs one scenario and returns its figures. Progress lines, cluster
// start-up lines and SDK warnings go to progressOut (nil: discarded). It
// cleans up what it made, also when it fails: the local cluster and its
// directory, or the topic on an external cluster.
func Run(ctx context.Context, opts Options, progressOut io.Writer) (res *Result, err error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	logOut := progressOut
	if logOut == nil {
		logOut = io.Discard
	}
	e := &env{opts: opts, progress: progressOut}
	e.result = &Result{
		Scenario: opts.Scenario, Producers: opts.Producers, Size: opts.SizeBytes, Sync: opts.Sync,
		Batch: opts.Batch, Inflight: opts.Inflight, Tenants: opts.Tenants, Partitions: opts.Partitions,
		Replication: opts.Replication, Clients: opts.Clients, Cluster: "external",
	}
	if opts.Sync {
		e.result.Batch, e.result.Inflight = 1, 1
	}

	servers := opts.Servers
	if len(servers) == 0 {
		// Assigned, not declared: finishRun must see the named results.
		var cluster *LocalCluster
		if cluster, err = startRunCluster(ctx, opts.Executable, opts.NodeArgs, logOut); err != nil {
			return nil, err
		}
		defer finishRun(cluster, &res, &err)
		servers = cluster.GRPCAddrs()
		e.cpu.meter = procCPU{pids: cluster.PIDs()}
		e.result.Cluster = "local"
	} else if len(opts.HTTPAddrs) > 0 {
		e.cpu.meter = metricsCPU{httpAddrs: opts.HTTPAddrs, client: &http.Client{Timeout: metricsTimeout}}
	} else {
		e.cpu.note = "--server given without --http-addrs: the nodes' CPU cannot be read"
	}

	cfg := client.Config{
		Servers: servers, DialTimeout: opts.Timeout, RequestTimeout: opts.Timeout,
		Logger: slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if e.admin, err = client.New(ctx, cfg); err != nil {
		return nil, err
	}
	defer e.admin.Close()
	e.clients = make([]*client.Client, opts.Producers)
	for i := range e.clients {
		if opts.Clients == ClientsShared {
			e.clients[i] = e.admin
			continue
		}
		if e.clients[i], err = client.New(ctx, cfg); err != nil {
			return nil, err
		}
		defer e.clients[i].Close()
	}

	seed := time.Now().UnixNano()
	if e.work, err = newWorkload(opts.Tenants, opts.Partitions, opts.SizeBytes, mathrand.New(mathrand.NewPCG(uint64(seed), 0))); err != nil {
		return nil, err
	}
	if opts.Tenants < opts.Partitions {
		e.note("%d tenants over %d partitions: some partitions get no events", opts.Tenants, opts.Partitions)
	}
	if e.topic, err = createTopic(ctx, e.admin, opts); err != nil {
		return nil, err
	}
	e.result.Topic = e.topic
	fmt.Fprintf(logOut, "bench: topic %s created (%d partitions, replication %d)\n", e.topic, opts.Partitions, opts.Replication)
	if len(opts.Servers) > 0 {
		defer func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), teardownTimeout)
			defer cancel()
			if derr := e.admin.DeleteTopic(dctx, e.topic, true); derr != nil {
				fmt.Fprintf(logOut, "bench: topic %s left in place: %v\n", e.topic, derr)
			}
		}()
	}
	preferredWait := preferredTimeout
	if opts.preferredWait > 0 {
		preferredWait = opts.preferredWait
	}
	if note, err := awaitLeaders(ctx, e.admin, e.topic, preferredWait); err != nil {
		return nil, err
	} else if note != "" {
		e.note("%s", note)
	}

	switch opts.Scenario {
	case ScenarioProduce:
		err = runProduce(ctx, e)
	case ScenarioReplay:
		err = runReplay(ctx, e)
	case ScenarioE2E:
		err = runE2E(ctx, e)
	case ScenarioGroup:
		err = runGroup(ctx, e)
	}
	if err != nil {
		return nil, err
	}
	return e.result, nil
}

// note adds a caveat to the result.
func (e *env) note(format string, args ...any) {
	e.result.Notes = append(e.result.Notes, fmt.Sprintf(format, args...))
}

// finishCPU closes the CPU window into the result (after setThroughput).
func (e *env) finishCPU(ctx context.Context) {
	node, note, self := e.cpu.end(ctx)
	e.result.setCPU(node, note, self)
}

// createTopic creates bench-<random hex> with auto_tenants.
func createTopic(ctx context.Context, cl *client.Client, opts Options) (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("bench: topic name: %w", err)
	}
	name := "bench-" + hex.EncodeToString(b[:])
	_, err := cl.CreateTopic(ctx, &client.TopicConfig{
		Name: name, Partitions: uint32(opts.Partitions), ReplicationFactor: uint32(opts.Replication), AutoTenants: true,
	})
	if err != nil {
		return "", fmt.Errorf("bench: creating topic %s: %w", name, err)
	}
	return name, nil
}

// awaitLeaders waits until every partition of topic has a leader (an
// error after leadersTimeout), then, for at most preferredWait more,
// until each leader is its partition's preferred (first) replica; if
// that does not happen it returns a note rather than an error.
func awaitLeaders(ctx context.Context, cl *client.Client, topic string, preferredWait time.Duration) (note string, err error) {
	start := time.Now()
	var allLedAt time.Time // when every partition first had a leader
	tick := time.NewTicker(leadersPollInterval)
	defer tick.Stop()
	for {
		info, err := cl.DescribeTopic(ctx, topic)
		if err != nil && !errors.Is(err, client.ErrTopicNotFound) && !errors.Is(err, client.ErrNoLeader) {
			return "", fmt.Errorf("bench: describing topic %s: %w", topic, err)
		}
		led, preferred := leaderCounts(info)
		total := len(info.GetPartitions())
		if total > 0 && led == total && allLedAt.IsZero() {
			allLedAt = time.Now()
		}
		switch {
		case total > 0 && preferred == total:
			return "", nil
		case !allLedAt.IsZero() && time.Since(allLedAt) > preferredWait:
			return fmt.Sprintf("%d of %d partition leaders were not on their preferred node at the start; a leadership move may disturb the run", total-preferred, total), nil
		case allLedAt.IsZero() && time.Since(start) > leadersTimeout:
			return "", fmt.Errorf("bench: topic %s: %d of %d partitions without a leader after %s", topic, total-led, total, leadersTimeout)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-tick.C:
		}
	}
}

// leaderCounts counts the partitions with a leader and those led by their
// preferred replica.
func leaderCounts(info *client.TopicInfo) (led, preferred int) {
	for _, p := range info.GetPartitions() {
		if p.GetLeaderId() == "" {
			continue
		}
		led++
		if len(p.GetReplicas()) > 0 && p.GetReplicas()[0] == p.GetLeaderId() {
			preferred++
		}
	}
	return led, preferred
}
