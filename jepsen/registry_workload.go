package jepsen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/heraldlog/herald/client"
)

// Registry operations (Op.Mode of FRegistry ops).
const (
	RegCreateTenant  = "create-tenant"
	RegCreateTopic   = "create-topic"
	RegDeleteTopic   = "delete-topic"
	RegListTenants   = "list-tenants"
	RegDescribeTopic = "describe-topic"
)

// registryPrefix names the registry workload's tenants and topics.
const registryPrefix = "rw-"

// registryWorker creates tenants and creates and deletes topics through
// random nodes, and reads them back (ListTenants, DescribeTopic) through
// random nodes, recording every operation as an FRegistry op.
type registryWorker struct {
	process  int
	cluster  *Cluster
	replicas int
	rng      *rand.Rand
}

func (w *registryWorker) run(ctx context.Context, rec *Recorder) {
	clients := make([]*client.Client, len(w.cluster.Nodes))
	for i, n := range w.cluster.Nodes {
		cl, err := client.New(ctx, client.Config{TLS: w.cluster.TLS(),
			Servers: []string{n.GRPCAddr}, DialTimeout: time.Second, RequestTimeout: 3 * time.Second,
			MaxRetries: 2, BackoffMax: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			return
		}
		defer cl.Close()
		clients[i] = cl
	}
	do := func(mode, name string, f func(ctx context.Context, cl *client.Client, op *Op) error) {
		i := w.rng.IntN(len(clients))
		op := Op{F: FRegistry, Process: w.process, Mode: mode, Name: name, Node: w.cluster.Nodes[i].ID}
		inv := rec.Now()
		octx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // not ctx: an op in flight completes
		err := f(octx, clients[i], &op)
		cancel()
		op.Time = rec.Now()
		op.LatencyNs = op.Time - inv
		op.Type = TypeOK
		if err != nil {
			op.Type, op.Error = TypeFail, err.Error()
			if errors.Is(err, client.ErrUnknownOutcome) {
				op.Type = TypeInfo
			}
		}
		rec.Record(op)
	}
	reads := func(topic string) {
		for range 2 {
			do(RegListTenants, "", func(ctx context.Context, cl *client.Client, op *Op) error {
				ts, err := cl.ListTenants(ctx)
				for _, t := range ts {
					if strings.HasPrefix(t.GetId(), registryPrefix) {
						op.Names = append(op.Names, t.GetId())
					}
				}
				return err
			})
			do(RegDescribeTopic, topic, func(ctx context.Context, cl *client.Client, op *Op) error {
				_, err := cl.DescribeTopic(ctx, topic)
				if err == nil {
					op.Found = true
				}
				if errors.Is(err, client.ErrTopicNotFound) {
					return nil // found=false, ok
				}
				return err
			})
		}
	}
	for k := 0; ctx.Err() == nil; k++ {
		tenant, topic := fmt.Sprintf("%stenant-%d", registryPrefix, k), fmt.Sprintf("%stopic-%d", registryPrefix, k)
		do(RegCreateTenant, tenant, func(ctx context.Context, cl *client.Client, _ *Op) error {
			_, err := cl.CreateTenant(ctx, &client.Tenant{Id: tenant})
			return err
		})
		do(RegCreateTopic, topic, func(ctx context.Context, cl *client.Client, _ *Op) error {
			_, err := cl.CreateTopic(ctx, &client.TopicConfig{Name: topic, Partitions: 1, ReplicationFactor: uint32(w.replicas), AutoTenants: true})
			return err
		})
		reads(topic)
		do(RegDeleteTopic, topic, func(ctx context.Context, cl *client.Client, _ *Op) error {
			return cl.DeleteTopic(ctx, topic, true)
		})
		reads(topic)
		sleepCtx(ctx, 100*time.Millisecond)
	}
}

// checkRegistry: a registry read that began after a write was
// acknowledged reflects it. A tenant created before a ListTenants began
// is listed; a topic created before a DescribeTopic began, and not being
// deleted by then, is found; a topic deleted before it began is not.
func checkRegistry(h History) Verdict {
	v := Verdict{Name: CheckRegistry}
	type window struct {
		ackAt     int64 // completion of an acknowledged write; -1: none
		invokedAt int64 // invocation of any attempt (for deletes); -1: none
		ackOp     int
		ackNode   string
	}
	none := func() *window { return &window{ackAt: -1, invokedAt: -1} }
	tenantCreated := map[string]*window{}
	topicCreated := map[string]*window{}
	topicDeleted := map[string]*window{}
	get := func(m map[string]*window, k string) *window {
		if m[k] == nil {
			m[k] = none()
		}
		return m[k]
	}
	var reads []Op
	n := 0
	for _, op := range h {
		if op.F != FRegistry {
			continue
		}
		n++
		begin := op.Time - op.LatencyNs
		switch op.Mode {
		case RegCreateTenant, RegCreateTopic, RegDeleteTopic:
			m := map[string]map[string]*window{RegCreateTenant: tenantCreated, RegCreateTopic: topicCreated, RegDeleteTopic: topicDeleted}[op.Mode]
			w := get(m, op.Name)
			if w.invokedAt < 0 || begin < w.invokedAt {
				w.invokedAt = begin
			}
			if op.Type == TypeOK && (w.ackAt < 0 || op.Time < w.ackAt) {
				w.ackAt, w.ackOp, w.ackNode = op.Time, op.Index, op.Node
			}
		default:
			if op.Type == TypeOK {
				reads = append(reads, op)
			}
		}
	}
	if n == 0 {
		v.Status, v.Note = StatusSkipped, "no registry operations"
		return v
	}
	for _, r := range reads {
		begin := r.Time - r.LatencyNs
		switch r.Mode {
		case RegListTenants:
			for t, w := range tenantCreated {
				if w.ackAt >= 0 && w.ackAt < begin && !slices.Contains(r.Names, t) {
					v.add("stale read: tenant %s created (op %d via %s, acknowledged at %s) is missing from ListTenants op %d via %s that began at %s",
						t, w.ackOp, w.ackNode, time.Duration(w.ackAt), r.Index, r.Node, time.Duration(begin))
				}
			}
		case RegDescribeTopic:
			c, d := get(topicCreated, r.Name), get(topicDeleted, r.Name)
			if d.ackAt >= 0 && d.ackAt < begin && r.Found {
				v.add("stale read: topic %s deleted (op %d via %s, acknowledged at %s) is still found by DescribeTopic op %d via %s that began at %s",
					r.Name, d.ackOp, d.ackNode, time.Duration(d.ackAt), r.Index, r.Node, time.Duration(begin))
			}
			deleting := d.invokedAt >= 0 && d.invokedAt < r.Time
			if c.ackAt >= 0 && c.ackAt < begin && !deleting && !r.Found {
				v.add("stale read: topic %s created (op %d via %s, acknowledged at %s) is not found (TOPIC_NOT_FOUND) by DescribeTopic op %d via %s that began at %s",
					r.Name, c.ackOp, c.ackNode, time.Duration(c.ackAt), r.Index, r.Node, time.Duration(begin))
			}
		}
	}
	if v.Violations == 0 {
		v.Status = StatusPass
		v.Note = fmt.Sprintf("%d registry reads checked", len(reads))
	} else {
		v.Status = StatusFail
	}
	return v
}
