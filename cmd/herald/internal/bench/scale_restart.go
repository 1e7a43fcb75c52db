package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/server/proccluster"
)

// Pacing of the restart measurement.
const (
	// scaleRestartPollInterval paces the /readyz probes and the /metrics
	// scrapes of the restarted node: the resolution of its times.
	scaleRestartPollInterval = 100 * time.Millisecond
	// scaleFillTenant is the tenant of the fill's events.
	scaleFillTenant = "scale-fill"
	// fillFailedRequestsMax bounds the failed requests a fill goes on
	// after.
	fillFailedRequestsMax = 100
)

// fill produces opts.FillBytes of payload over every partition of the
// run's topics, round robin, each request to one partition (ordering per
// key, one key per partition: one large Raft entry per request rather
// than a few events for each of the topic's partitions), with
// opts.FillProducers senders of one SDK client each, for at most
// opts.FillTimeout. A failed request (an unknown outcome while a leader
// moves, say) is counted and the fill goes on: its events' outcome is not
// needed, the fill only gives the restart data to open, and only the
// acknowledged bytes are reported; after fillFailedRequestsMax failures
// the fill stops.
func (s *scaleRun) fill(ctx context.Context) (*ScaleFill, error) {
	o := s.opts
	f := &ScaleFill{TargetBytes: o.FillBytes, EventBytes: o.FillEventBytes}
	payload := make([]byte, o.FillEventBytes)
	if _, err := rand.Read(payload); err != nil { // incompressible, like the payloads
		return nil, fmt.Errorf("bench: payload: %w", err)
	}
	type target struct {
		topic string
		key   []byte
	}
	var targets []target
	for _, t := range s.topics {
		for _, key := range partitionKeys(t.partitions) {
			targets = append(targets, target{topic: t.name, key: key})
		}
	}
	if len(targets) == 0 {
		f.Problem = "no partition to fill"
		return f, nil
	}
	events := (o.FillBytes + int64(o.FillEventBytes) - 1) / int64(o.FillEventBytes)
	fctx, cancel := context.WithTimeout(ctx, o.FillTimeout)
	defer cancel()
	failure := &firstFailure{cancel: cancel}
	var claimed, acked, failed atomic.Int64
	var firstErr sync.Once
	prog := startProgress(s.log, "bench: scale: fill", events)
	start := time.Now()
	var wg sync.WaitGroup
	for range o.FillProducers {
		cl, err := client.New(ctx, client.Config{
			Servers: s.cluster.GRPCAddrs(), DialTimeout: o.Timeout, RequestTimeout: o.Timeout,
			Logger: slog.New(slog.NewTextHandler(s.log, &slog.HandlerOptions{Level: slog.LevelError})),
		})
		if err != nil {
			cancel()
			wg.Wait()
			prog.stop()
			return nil, err
		}
		wg.Go(func() {
			defer cl.Close()
			for fctx.Err() == nil {
				end := claimed.Add(int64(o.FillBatch))
				first := end - int64(o.FillBatch)
				n := min(int64(o.FillBatch), events-first)
				if n <= 0 {
					return
				}
				to := targets[int((first/int64(o.FillBatch))%int64(len(targets)))]
				batch := make([]*client.Event, n)
				for i := range batch {
					batch[i] = &client.Event{TenantId: scaleFillTenant, Key: to.key, Payload: payload}
				}
				results, err := cl.Produce(fctx, to.topic, batch...)
				var ok int64
				for _, r := range results {
					if r != nil {
						ok++
					}
				}
				acked.Add(ok)
				prog.add(ok)
				if err != nil && fctx.Err() == nil {
					err = fmt.Errorf("produce to %s: %w", to.topic, err)
					firstErr.Do(func() { f.FirstError = err.Error() })
					if failed.Add(1) >= fillFailedRequestsMax {
						failure.set(fmt.Errorf("%d requests failed, the last: %w", fillFailedRequestsMax, err))
						return
					}
				}
			}
		})
	}
	wg.Wait()
	prog.stop()
	elapsed := time.Since(start).Seconds()
	f.Events, f.FailedRequests = acked.Load(), failed.Load()
	f.Bytes = f.Events * int64(o.FillEventBytes)
	f.DurationS = round(elapsed, 3)
	if elapsed > 0 {
		f.MBPerSec = round(float64(f.Bytes)/1e6/elapsed, 2)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	switch err := failure.err(); {
	case err != nil:
		f.Problem = "fill stopped: " + err.Error()
	case fctx.Err() != nil:
		f.Problem = fmt.Sprintf("fill stopped by --fill-timeout %s", o.FillTimeout)
	}
	return f, nil
}

// partitionKeysTriesMax bounds partitionKeys' search (a topic of 1,024
// partitions needs about 7,500 keys: n ln n).
const partitionKeysTriesMax = 1 << 20

// partitionKeys returns a key for each partition of a topic of n
// partitions under per-key ordering: keys[p] routes to partition p (the
// first of "k0", "k1", ... that does). A partition no key was found for
// within partitionKeysTriesMax tries is left out.
func partitionKeys(n int) [][]byte {
	keys := make([][]byte, n)
	found := 0
	for i := 0; found < n && i < partitionKeysTriesMax; i++ {
		k := []byte("k" + strconv.Itoa(i))
		if p := client.PartitionFor(client.OrderingPerKey, scaleFillTenant, k, "", uint32(n)); keys[p] == nil {
			keys[p] = k
			found++
		}
	}
	return slices.DeleteFunc(keys, func(k []byte) bool { return k == nil })
}

// restart optionally fills the cluster, then stops one node that does not
// lead the controller (SIGTERM), starts it again on its data and times
// start to /readyz 200 and start to caught up: ready, and every replica
// of the node's partitions applied to at least the commit index its
// leader had before the stop (the node's admin /metrics). Either time not
// reached within opts.RestartTimeout is -1, with Problem saying so.
func (s *scaleRun) restart(ctx context.Context) (*ScaleRestart, error) {
	r := &ScaleRestart{ReadyzS: -1, CaughtUpS: -1}
	if s.opts.FillBytes > 0 {
		f, err := s.fill(ctx)
		if err != nil {
			return nil, err
		}
		r.Fill = f
		fmt.Fprintf(s.log, "bench: scale: filled %s events (%.1f MB) in %.1fs; settling %s\n", formatCount(f.Events), float64(f.Bytes)/1e6, f.DurationS, s.opts.Settle)
		if err := sleepCtx(ctx, s.opts.Settle); err != nil {
			return nil, err
		}
	}
	status, err := s.admin.ClusterStatus(ctx)
	if err != nil {
		return nil, fmt.Errorf("bench: cluster status before the restart: %w", err)
	}
	nodes := s.cluster.procs.Nodes()
	idx := len(nodes) - 1
	for i := len(nodes) - 1; i >= 0; i-- {
		if nodes[i].ID != status.GetControllerLeaderId() {
			idx = i
			break
		}
	}
	node := nodes[idx]
	r.Node = node.ID
	r.ControllerLeader = node.ID == status.GetControllerLeaderId()
	targets := map[string]uint64{} // group id → the leader's commit index
	for _, p := range status.GetPartitions() {
		if !strings.HasPrefix(p.GetTopic(), s.prefix) {
			continue
		}
		for _, id := range p.GetReplicas() {
			if id == node.ID {
				targets[strconv.FormatUint(p.GetGroupId(), 10)] = p.GetCommitIndex()
			}
		}
	}
	r.Replicas = len(targets)
	fmt.Fprintf(s.log, "bench: scale: restarting %s with %d replicas\n", node.ID, r.Replicas)

	stopStart := time.Now()
	if err := s.cluster.procs.Stop(idx); err != nil {
		return nil, fmt.Errorf("bench: stopping %s: %w", node.ID, err)
	}
	r.StopS = round(time.Since(stopStart).Seconds(), 3)
	start := time.Now()
	if err := s.cluster.procs.Start(idx); err != nil {
		return nil, fmt.Errorf("bench: starting %s again: %w", node.ID, err)
	}
	rctx, cancel := context.WithTimeout(ctx, s.opts.RestartTimeout)
	defer cancel()
	hc := &http.Client{Timeout: metricsTimeout}
	defer hc.CloseIdleConnections()
	tick := time.NewTicker(scaleRestartPollInterval)
	defer tick.Stop()
	for r.ReadyzS < 0 || r.CaughtUpS < 0 {
		if r.ReadyzS < 0 && proccluster.ProbeReady(rctx, hc, "http://"+node.HTTPAddr+"/readyz") {
			r.ReadyzS = round(time.Since(start).Seconds(), 3)
		}
		// The replicas are looked at only once /readyz answers 200, so
		// that scraping a thousand replicas' series every poll does not
		// slow the start it times (caught up implies every replica open,
		// which /readyz checks too).
		if r.ReadyzS >= 0 && r.CaughtUpS < 0 {
			if open, applied := caughtUp(rctx, hc, node.AdminAddr, targets); applied == len(targets) {
				r.CaughtUpS = round(time.Since(start).Seconds(), 3)
			} else {
				r.Open, r.Applied = open, applied
			}
		}
		if err := s.cluster.Exited(); err != nil {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-rctx.Done():
			r.Problem = fmt.Sprintf("%s not ready and caught up within --restart-timeout %s (%d of %d replicas open, %d applied)",
				node.ID, s.opts.RestartTimeout, r.Open, r.Replicas, r.Applied)
			return r, nil
		case <-tick.C:
		}
	}
	r.Open, r.Applied = r.Replicas, r.Replicas
	pid := s.cluster.procs.Process(idx).Pid()
	r.RSSKiB = procStatusKiB(pid, "VmRSS")
	r.OpenFiles = countOpenFiles(pid)
	return r, nil
}

// caughtUp scrapes a node's /metrics once and counts the groups of
// targets it has a replica of (open) and those applied to at least their
// target index (applied). A failed scrape counts nothing.
func caughtUp(ctx context.Context, hc *http.Client, adminAddr string, targets map[string]uint64) (open, applied int) {
	body, err := scrapeMetrics(ctx, hc, adminAddr)
	if err != nil {
		return 0, 0
	}
	return countCaughtUp(strings.NewReader(body), targets)
}

// countCaughtUp reads herald_partition_applied_index{group="G"} samples of
// a Prometheus text exposition: open counts the groups of targets present,
// applied those whose value is at least their target.
func countCaughtUp(r io.Reader, targets map[string]uint64) (open, applied int) {
	const metric = `herald_partition_applied_index{group="`
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), metric)
		if !ok {
			continue
		}
		group, value, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		target, ok := targets[group]
		if !ok {
			continue
		}
		open++
		if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil && uint64(v) >= target {
			applied++
		}
	}
	return open, applied
}
