package jepsen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/heraldlog/herald/client"
)

// topicName is the topic the workload writes.
const topicName = "jepsen"

// setupTimeout bounds starting the cluster and creating the topic.
const setupTimeout = 60 * time.Second

// finalReadTimeout bounds the final reads of one topic (every partition
// from every node). A 10-minute volume run leaves about a million events
// a partition, read from each of three nodes in pages of
// finalPageEventsMax.
const finalReadTimeout = 5 * time.Minute

// Result is what a run found.
type Result struct {
	History  History
	Verdicts []Verdict
	Summary  Summary
	Schedule []Fault
	// Paths counts the rare code paths the nodes took (scraped from their
	// /metrics during the run).
	Paths PathCounts
}

// OK reports whether every checker passed (or was skipped).
func (r *Result) OK() bool { return len(r.Summary.Failing) == 0 }

// Run starts the cluster, runs the workload under the seeded fault
// schedule for Duration, heals, waits for convergence, reads every
// partition from every node, checks the history and writes history.jsonl,
// verdict.json and report.html into OutDir. An error means the run could
// not be carried out (the cluster did not start, ...); violations are in
// the Result. It stops every process and goroutine it started before
// returning.
func Run(ctx context.Context, opts Options) (*Result, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	progress := func(format string, args ...any) { fmt.Fprintf(opts.Progress, format+"\n", args...) }
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("jepsen: %w", err)
	}
	dataDir := filepath.Join(opts.OutDir, "data")
	if err := os.RemoveAll(dataDir); err != nil {
		return nil, fmt.Errorf("jepsen: %w", err)
	}
	hf, err := os.Create(filepath.Join(opts.OutDir, "history.jsonl"))
	if err != nil {
		return nil, fmt.Errorf("jepsen: %w", err)
	}
	defer hf.Close()

	cluster, err := NewCluster(opts.Binary, dataDir, opts.Nodes, opts.TLS, opts.Logger)
	if err != nil {
		return nil, err
	}
	defer cluster.Close()
	if opts.TLS {
		progress("jepsen: TLS on: every node and client (certificates in %s)", filepath.Join(dataDir, "tls"))
	}
	volume := opts.Mode == ModeVolume
	if volume {
		cluster.ServeArgs = volumeServeArgs()
	}
	if err := cluster.StartAll(); err != nil {
		return nil, err
	}
	progress("jepsen: %d nodes started (data and logs in %s)", opts.Nodes, dataDir)
	// The registry goes first, so that the live topic is at its end: after
	// a restart it is replayed last.
	if opts.RegistryTenants > 0 {
		t0 := time.Now()
		if err := setupRegistry(ctx, cluster, opts.RegistryTenants); err != nil {
			return nil, err
		}
		progress("jepsen: registry: %d tenants created in %s", opts.RegistryTenants, time.Since(t0).Round(time.Millisecond))
	}
	topics := []*client.TopicConfig{{Name: topicName, Partitions: uint32(opts.Partitions), ReplicationFactor: uint32(opts.Nodes), AutoTenants: true}}
	retainedN := 0
	if volume {
		retainedN = retainedProducers(opts.Producers)
	}
	if retainedN > 0 {
		topics = append(topics, retainedTopicConfig(opts))
	}
	if opts.Flood {
		if err := setupFlood(ctx, cluster); err != nil {
			return nil, err
		}
		topics = append(topics, floodTopicConfig(opts))
	}
	for _, cfg := range topics {
		if err := createTopic(ctx, cluster, cfg); err != nil {
			return nil, err
		}
	}
	if opts.Flood {
		progress("jepsen: topic %s ready: tenant %s (quota %d events/s, burst %d) floods it from %d goroutines, %d events a request, unpaced",
			floodTopicName, floodTenant, floodQuotaEventsPerSec, floodQuotaBurst, floodWorkers, floodBatchEvents)
	}
	if opts.GroupMembers > 0 {
		if err := createGroup(ctx, cluster); err != nil {
			return nil, err
		}
		progress("jepsen: group %s of topic %s ready (ack wait %s, no bound on deliveries), %d members", groupName, topicName, groupAckWait, opts.GroupMembers)
	}
	tenantsN := opts.Tenants
	schedule := Schedule(opts.Seed, opts.Nodes, opts.Nemeses, opts.Duration)
	if volume {
		// A tenant's requests go one at a time (the SDK's lanes): enough
		// tenants that every Send in flight can have its own.
		tenantsN = max(tenantsN, opts.Producers*opts.InFlight)
		schedule = volumeSchedule(schedule, opts.Duration)
	}
	tenants := pickTenants(tenantsN, uint32(opts.Partitions))
	progress("jepsen: topic %s ready; %s mode, %d producers, %d readers, %d subscribers, %d faults planned (seed %d)",
		topicName, opts.Mode, opts.Producers, opts.Nodes, opts.Subscribers*opts.Partitions*(1+min(retainedN, 1)), len(schedule), opts.Seed)
	if retainedN > 0 {
		progress("jepsen: topic %s ready: retention %d events or %d bytes per partition; %d of the producers write it, %d readers read it",
			retainedTopicName, retainedEventsMax, retainedBytesMax, retainedN, opts.Nodes)
	}

	var producers []*producerWorker
	var batchers []*batchProducer
	for i := range opts.Producers {
		cl, err := cluster.newClient(ctx)
		if err != nil {
			return nil, err
		}
		defer cl.Close()
		// The last retainedN producers write the retained topic.
		topic := topicName
		if i >= opts.Producers-retainedN {
			topic = retainedTopicName
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		p, err := cl.NewProducer(pctx, topic)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("jepsen: producer %d: %w", i, err)
		}
		defer p.Close()
		if volume {
			batchers = append(batchers, &batchProducer{process: i, topic: opTopic(topic), producer: p, tenants: tenants, batchEvents: opts.BatchEvents, inFlight: opts.InFlight, seed: opts.Seed})
			continue
		}
		producers = append(producers, &producerWorker{process: i, producer: p, tenants: tenants, rng: rand.New(rand.NewPCG(opts.Seed, uint64(i)))})
	}
	var readers []Reader
	for i, n := range cluster.Nodes {
		r := &FetchReader{Process: opts.Producers + i, Node: n, TLS: cluster.TLS(), Topic: topicName, Partitions: uint32(opts.Partitions), Tenants: tenants, Seed: opts.Seed}
		if volume {
			r.Interval = volumeReadInterval
		}
		readers = append(readers, r)
		if retainedN > 0 {
			readers = append(readers, &FetchReader{Process: opts.Producers + opts.Nodes + 8 + i, Node: n, TLS: cluster.TLS(), Topic: retainedTopicName,
				Partitions: uint32(opts.Partitions), Tenants: tenants, Seed: opts.Seed, Interval: retainedReadInterval})
		}
	}
	for k := range opts.GroupMembers {
		readers = append(readers, &GroupMember{Process: groupProcessBase + k, Cluster: cluster, Seed: opts.Seed})
	}
	subTopics := []string{topicName}
	if retainedN > 0 {
		subTopics = append(subTopics, retainedTopicName)
	}
	catches := map[string]*catchUp{}
	for _, t := range subTopics {
		catches[t] = newCatchUp()
	}
	subs := subscribers(opts, cluster.Nodes, cluster.TLS(), subTopics, catches)
	scraper := newPathScraper(cluster.Nodes, cluster.TLS())
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	scraperDone := make(chan struct{})
	go func() { // owned by Run: ends with sctx, cancelled after the final reads
		defer close(scraperDone)
		scraper.run(sctx)
	}()

	rec := NewRecorder(hf)
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, opts.Duration)
	defer cancel()
	faultsDone := make(chan int, 1)
	go func() { // owned by Run: ends by the end of the schedule or wctx
		n := &nemesis{cluster: cluster, rec: rec, topic: topicName}
		faultsDone <- n.run(wctx, start, schedule)
	}()
	churnDone := make(chan [2]int, 1)
	go func() { // owned by Run: ends with wctx
		if !opts.Churn {
			churnDone <- [2]int{}
			return
		}
		c, d := churnTopics(wctx, cluster, opts.Nodes)
		churnDone <- [2]int{c, d}
	}()
	regDone := make(chan struct{})
	go func() { // owned by Run: ends with wctx
		defer close(regDone)
		if opts.RegistryWorkload {
			w := &registryWorker{process: opts.Producers + opts.Nodes, cluster: cluster, replicas: opts.Nodes, rng: rand.New(rand.NewPCG(opts.Seed, 1<<20))}
			w.run(wctx, rec)
		}
	}()
	resendDone := make(chan struct{})
	go func() { // owned by Run: ends with wctx
		defer close(resendDone)
		if opts.Resend {
			w := &resendWorker{process: opts.Producers + opts.Nodes + 1, cluster: cluster, topic: topicName, partitions: uint32(opts.Partitions), rng: rand.New(rand.NewPCG(opts.Seed, 1<<21))}
			w.run(wctx, rec)
		}
	}()
	hijackDone := make(chan struct{})
	go func() { // owned by Run: ends with wctx
		defer close(hijackDone)
		if opts.Hijack {
			w := &hijackWorker{process: opts.Producers + opts.Nodes + 2, cluster: cluster, topic: topicName, partitions: uint32(opts.Partitions), rng: rand.New(rand.NewPCG(opts.Seed, 1<<22))}
			w.run(wctx, rec)
		}
	}()
	mixedDone := make(chan struct{})
	go func() { // owned by Run: ends with wctx
		defer close(mixedDone)
		if opts.Mixed {
			w := &mixedWorker{process: opts.Producers + opts.Nodes + 4, cluster: cluster, topic: topicName, partitions: uint32(opts.Partitions), rng: rand.New(rand.NewPCG(opts.Seed, 1<<23))}
			w.run(wctx, rec)
		}
	}()
	floodDone := make(chan floodStats, 1)
	go func() { // owned by Run: ends with wctx, or at floodRequestsMax
		if !opts.Flood {
			floodDone <- floodStats{}
			return
		}
		w := &floodWorker{cluster: cluster, partitions: uint32(opts.Partitions)}
		floodDone <- w.run(wctx, rec)
	}()
	// The subscribers outlive the workload: after healing they must
	// reach the end of the converged log (see catchUp below).
	subCtx, subCancel := context.WithCancel(ctx)
	subsDone := make(chan []error, 1)
	subsExited := make(chan struct{})
	go func() { // owned by Run: ends once every subscriber has ended, or with subCtx
		defer close(subsExited)
		subsDone <- runWorkers(subCtx, rec, topicName, uint32(opts.Partitions), nil, nil, subs)
	}()
	defer func() { // on every return, so that no subscriber outlives Run
		subCancel()
		<-subsExited
	}()
	werrs := runWorkers(wctx, rec, topicName, uint32(opts.Partitions), producers, batchers, readers)
	injected := <-faultsDone
	<-regDone
	<-resendDone
	<-hijackDone
	<-mixedDone
	if flood := <-floodDone; opts.Flood {
		progress("jepsen: flood: %s", flood)
	}
	if churn := <-churnDone; opts.Churn {
		progress("jepsen: churn: %d topics created, %d deleted", churn[0], churn[1])
	}
	if err := cluster.HealAll(); err != nil {
		return nil, err
	}
	progress("jepsen: workload done, %d faults injected; healed, waiting for convergence", injected)
	cctx, ccancel := context.WithTimeout(ctx, opts.ConvergeTimeout)
	var convErr error
	for _, cfg := range topics {
		if err := awaitConvergence(cctx, cluster, cfg.Name, uint32(opts.Partitions)); err != nil {
			convErr = errors.Join(convErr, fmt.Errorf("topic %s: %w", cfg.Name, err))
		}
	}
	ccancel()
	if convErr != nil {
		progress("jepsen: %v (reading anyway)", convErr)
	}
	werrs = append(werrs, awaitSubscribers(ctx, cluster, opts, catches, convErr == nil, subCancel, subsDone, progress)...)
	if opts.GroupMembers > 0 {
		progress("jepsen: group %s: %s", groupName, drainGroup(ctx, cluster, rec, uint32(opts.Partitions), opts.Seed))
	}
	for _, cfg := range topics {
		fctx, fcancel := context.WithTimeout(ctx, finalReadTimeout)
		t0 := time.Now()
		if err := finalRead(fctx, rec, cluster.Nodes, cluster.TLS(), cfg.Name, uint32(opts.Partitions), opts.Subscribers > 0 || opts.GroupMembers > 0); err != nil {
			progress("jepsen: %v", err)
		}
		fcancel()
		progress("jepsen: final reads of topic %s took %s", cfg.Name, time.Since(t0).Round(time.Millisecond))
	}
	scancel()
	<-scraperDone
	paths := scraper.Counts()
	progress("jepsen: paths taken: %s", paths)
	if err := rec.Flush(); err != nil {
		return nil, err
	}
	h := rec.History()
	progress("jepsen: checking %d history entries", len(h))
	checkStart := time.Now()
	verdicts := Check(h)
	progress("jepsen: checked in %s", time.Since(checkStart).Round(time.Millisecond))
	if volume {
		verdicts = append(verdicts, checkPaths(paths, retainedN > 0))
	}
	if convErr != nil {
		for k := range verdicts {
			if (verdicts[k].Name == CheckConvergence || verdicts[k].Name == CheckRetained) && verdicts[k].Status == StatusPass {
				verdicts[k].Status, verdicts[k].Note = StatusUnknown, convErr.Error()
			}
		}
	}
	sum := Summarize(h, verdicts)
	res := &Result{History: h, Verdicts: verdicts, Summary: sum, Schedule: schedule, Paths: paths}
	if err := writeOutputs(opts.OutDir, opts, h, verdicts, sum, paths); err != nil {
		return res, err
	}
	if len(werrs) > 0 {
		return res, errors.Join(werrs...)
	}
	return res, nil
}

// createTopic waits for the cluster to accept the topic cfg, then for
// every partition leader.
func createTopic(ctx context.Context, c *Cluster, cfg *client.TopicConfig) error {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	var last error
	for {
		cl, err := c.newClient(ctx)
		if err == nil {
			_, err = cl.CreateTopic(ctx, cfg)
			if errors.Is(err, client.ErrTopicExists) {
				err = nil
			}
			_ = cl.Close()
		}
		if err == nil && leadersKnown(ctx, c, cfg.Name) {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("jepsen: the cluster did not accept topic %s: %w", cfg.Name, errors.Join(last, ctx.Err()))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// pickTenants returns n tenant ids ("tenant-<k>") spread evenly over the
// partitions by the SDK's routing, so every partition gets writes.
func pickTenants(n int, partitions uint32) []string {
	per := make([]int, partitions)
	want := (n + int(partitions) - 1) / int(partitions)
	var out []string
	for k := 0; len(out) < n; k++ {
		t := fmt.Sprintf("tenant-%d", k)
		p := client.PartitionForTenant(t, partitions)
		if per[p] < want {
			per[p]++
			out = append(out, t)
		}
	}
	return out
}

// subscribers returns opts.Subscribers subscribers per partition of each
// topic: the even ones replay from EARLIEST at once, the odd ones join at
// a time drawn in the first half of the run, from an offset drawn below
// the highest acknowledged one (on the retained topic, often one that
// retention has removed by then: the out-of-range answer moves them to the
// low watermark); their first nodes go round the cluster.
func subscribers(opts Options, nodes []Node, clientTLS *tls.Config, topics []string, catches map[string]*catchUp) []Reader {
	rng := rand.New(rand.NewPCG(opts.Seed, 1<<24))
	base := opts.Producers + 2*opts.Nodes + 16 // past every other worker's process number
	var out []Reader
	for _, topic := range topics {
		for p := range opts.Partitions {
			for k := range opts.Subscribers {
				i := len(out)
				s := &Subscriber{Process: base + i, Nodes: nodes, TLS: clientTLS, Topic: topic, Partition: uint32(p), First: i, Earliest: k%2 == 0,
					Seed: opts.Seed, catchUp: catches[topic]}
				if !s.Earliest {
					s.JoinAfter = time.Duration(rng.Int64N(int64(opts.Duration/2) + 1))
				}
				out = append(out, s)
			}
		}
	}
	return out
}

// awaitSubscribers ends the subscribers. When the cluster converged, it
// tells them where each partition's log ends and waits until each has got
// there or stopped receiving (SubscribeBehind, a violation), at most
// subscribeCatchUpMax; otherwise it stops them at once. It returns their
// errors.
func awaitSubscribers(ctx context.Context, c *Cluster, opts Options, catches map[string]*catchUp, converged bool, cancel context.CancelFunc, done <-chan []error, progress func(string, ...any)) []error {
	if opts.Subscribers == 0 || !converged {
		cancel()
		return <-done
	}
	for topic, catch := range catches {
		hctx, hcancel := context.WithTimeout(ctx, setupTimeout)
		high, err := highWatermarks(hctx, c.Nodes[:1], c.TLS(), topic, uint32(opts.Partitions))
		hcancel()
		if err != nil {
			progress("jepsen: subscribers of %s not asked to catch up: %v", topic, err)
			continue
		}
		catch.set(high[0])
	}
	t0 := time.Now()
	select {
	case errs := <-done:
		progress("jepsen: subscribers ended (caught up with the converged logs, or behind) in %s", time.Since(t0).Round(time.Millisecond))
		return errs
	case <-time.After(subscribeCatchUpMax):
		progress("jepsen: subscribers still catching up after %s: stopped", subscribeCatchUpMax)
	}
	cancel()
	return <-done
}
