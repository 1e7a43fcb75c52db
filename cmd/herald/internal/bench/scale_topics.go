package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/heraldlog/herald/client"
)

// Bounds of growing the cluster.
const (
	// scaleCreateAttemptsMax bounds the creates of one topic: the first,
	// and resends after an unknown outcome.
	scaleCreateAttemptsMax = 5
	// scaleCreateBackoff is the pause before resend k (times k).
	scaleCreateBackoff = 500 * time.Millisecond
	// scaleLeadersPollInterval paces the ListTopics polls for leaders
	// (each one lists every topic with its partitions).
	scaleLeadersPollInterval = 500 * time.Millisecond
)

// grow adds partitions until the cluster has target replicas per node,
// waits for a leader on every partition, lets it settle and measures it.
// Creating and waiting together are bounded by opts.StepTimeout; past it
// (or when a create fails) the step is returned with Reached false and
// Problem set, and measured as it stands. An error means the run cannot
// go on (ctx ended, a node died).
func (s *scaleRun) grow(ctx context.Context, target int, base *ScaleStep) (ScaleStep, error) {
	timeout := s.opts.StepTimeout
	if s.opts.stepTimeout > 0 {
		timeout = s.opts.stepTimeout
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	fmt.Fprintf(s.log, "bench: scale: growing to %d replicas per node (%d partitions to create)\n", target, target-s.partitions)
	var problem error
	start := time.Now()
	problem = s.createTopics(sctx, target-s.partitions)
	createS := time.Since(start).Seconds()
	var led, total int
	leadersStart := time.Now()
	if problem == nil {
		led, total, problem = s.awaitLeaders(sctx)
	} else {
		led, total, _ = s.countLeaders(ctx)
	}
	leadersS := time.Since(leadersStart).Seconds()
	if ctx.Err() != nil {
		return ScaleStep{}, ctx.Err()
	}
	if err := s.cluster.Exited(); err != nil {
		return ScaleStep{}, err
	}
	if problem == nil {
		if err := sleepCtx(ctx, s.opts.Settle); err != nil {
			return ScaleStep{}, err
		}
	}
	step, err := s.measure(ctx, base)
	if err != nil {
		return ScaleStep{}, err
	}
	step.TargetReplicasPerNode = target
	step.Reached = problem == nil
	if problem != nil {
		step.Problem = problem.Error()
	}
	step.Led, step.Listed = led, total
	step.CreateS, step.LeadersS = round(createS, 3), round(leadersS, 3)
	return step, nil
}

// createTopics creates topics of at most opts.TopicPartitions partitions
// each, partitions in all, with opts.CreateConcurrency creates in flight.
// Every topic created is recorded (also when another fails); the first
// failure cancels the creates not yet made and is returned.
func (s *scaleRun) createTopics(ctx context.Context, partitions int) error {
	type job struct {
		name       string
		partitions int
	}
	var jobs []job
	for left := partitions; left > 0; {
		n := min(left, s.opts.TopicPartitions)
		jobs = append(jobs, job{name: fmt.Sprintf("%s%04d", s.prefix, len(s.topics)+len(jobs)), partitions: n})
		left -= n
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	failure := &firstFailure{cancel: cancel}
	queue := make(chan job) // unbuffered: the feeder waits for a free worker
	var mu sync.Mutex       // guards the appends below
	var wg sync.WaitGroup
	for range min(s.opts.CreateConcurrency, len(jobs)) {
		wg.Go(func() {
			for j := range queue {
				if err := s.createTopic(ctx, j.name, j.partitions); err != nil {
					failure.set(err)
					continue
				}
				mu.Lock()
				s.topics = append(s.topics, scaleTopic{name: j.name, partitions: j.partitions})
				s.partitions += j.partitions
				mu.Unlock()
			}
		})
	}
feed:
	for _, j := range jobs {
		select {
		case queue <- j:
		case <-ctx.Done():
			break feed
		}
	}
	close(queue)
	wg.Wait()
	if err := failure.err(); err != nil {
		return err
	}
	return ctx.Err()
}

// createTopic creates topic name (replication 3, ordering per key, auto
// tenants: the fill picks each request's partition by its key). A create whose outcome is unknown (ErrUnknownOutcome: it may
// or may not have been applied) is sent again, at most
// scaleCreateAttemptsMax times in all. That is safe because a create of a
// name that exists changes nothing: the controller refuses it with
// ErrTopicExists whatever its configuration. So ErrTopicExists is taken
// as success only when the existing topic has the partitions and
// replication asked for (the names are this run's own, so it is the
// earlier attempt's); with another configuration it is an error.
func (s *scaleRun) createTopic(ctx context.Context, name string, partitions int) error {
	cfg := &client.TopicConfig{
		Name: name, Partitions: uint32(partitions), ReplicationFactor: scaleReplication,
		AutoTenants: true, Ordering: client.OrderingPerKey,
	}
	for attempt := 1; ; attempt++ {
		_, err := s.admin.CreateTopic(ctx, cfg)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, client.ErrTopicExists):
			info, derr := s.admin.DescribeTopic(ctx, name)
			if derr != nil {
				return fmt.Errorf("bench: topic %s exists, and describing it failed: %w", name, derr)
			}
			if len(info.GetPartitions()) != partitions || info.GetConfig().GetReplicationFactor() != scaleReplication {
				return fmt.Errorf("bench: topic %s exists with %d partitions x%d, not %d x%d", name,
					len(info.GetPartitions()), info.GetConfig().GetReplicationFactor(), partitions, scaleReplication)
			}
			return nil
		case errors.Is(err, client.ErrUnknownOutcome) && attempt < scaleCreateAttemptsMax:
			fmt.Fprintf(s.log, "bench: scale: create %s: %v; sending it again\n", name, err)
			if err := sleepCtx(ctx, time.Duration(attempt)*scaleCreateBackoff); err != nil {
				return err
			}
		default:
			return fmt.Errorf("bench: creating topic %s: %w", name, err)
		}
	}
}

// awaitLeaders polls ListTopics until every partition of the run's topics
// has a leader, and returns how many had one and how many were listed. A
// failed poll is retried until ctx ends; then the error says how far it
// got.
func (s *scaleRun) awaitLeaders(ctx context.Context) (led, total int, err error) {
	tick := time.NewTicker(scaleLeadersPollInterval)
	defer tick.Stop()
	var last error
	for {
		led, total, last = s.countLeaders(ctx)
		if last == nil && total == s.partitions && led == total {
			return led, total, nil
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return led, total, fmt.Errorf("%d of %d partitions with a leader when the step timed out (last listing: %v)", led, s.partitions, last)
			}
			return led, total, fmt.Errorf("%d of %d partitions with a leader when the step timed out", led, s.partitions)
		case <-tick.C:
		}
	}
}

// countLeaders lists the topics once and counts the run's partitions and
// those with a leader (as the answering node's replica knows it).
func (s *scaleRun) countLeaders(ctx context.Context) (led, total int, err error) {
	topics, err := s.admin.ListTopics(ctx)
	if err != nil {
		return 0, 0, err
	}
	for _, t := range topics {
		if !strings.HasPrefix(t.GetConfig().GetName(), s.prefix) {
			continue
		}
		for _, p := range t.GetPartitions() {
			total++
			if p.GetLeaderId() != "" {
				led++
			}
		}
	}
	return led, total, nil
}
