package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// callEveryRPC calls each public and node-internal RPC of the node at addr
// once and reports an answer that is neither a success nor an error a
// client may retry, or that claims a registered tenant or topic is absent.
func callEveryRPC(ctx context.Context, hc heraldpb.HeraldClient, ic heraldpb.NodeInternalClient, k int) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	calls := []struct {
		name string
		do   func() error
	}{
		{"Metadata", func() error { _, err := hc.Metadata(ctx, &heraldpb.MetadataRequest{}); return err }},
		{"Metadata(topic)", func() error {
			_, err := hc.Metadata(ctx, &heraldpb.MetadataRequest{Topics: []string{"live"}})
			return err
		}},
		{"ListTopics", func() error { _, err := hc.ListTopics(ctx, &heraldpb.ListTopicsRequest{}); return err }},
		{"DescribeTopic", func() error {
			_, err := hc.DescribeTopic(ctx, &heraldpb.DescribeTopicRequest{Name: "live"})
			return err
		}},
		{"ListTenants", func() error { _, err := hc.ListTenants(ctx, &heraldpb.ListTenantsRequest{}); return err }},
		{"DescribeTenant", func() error {
			_, err := hc.DescribeTenant(ctx, &heraldpb.DescribeTenantRequest{Id: "acme"})
			return err
		}},
		{"CreateTenant", func() error {
			_, err := hc.CreateTenant(ctx, &heraldpb.CreateTenantRequest{Tenant: &heraldpb.Tenant{Id: fmt.Sprintf("load-%d", k)}})
			if errors.Is(wire.FromStatus(err), wire.ErrTenantExists) {
				return nil
			}
			return err
		}},
		{"Produce", func() error {
			_, err := hc.Produce(ctx, &heraldpb.ProduceRequest{Topic: "live", Events: []*heraldpb.Event{{TenantId: "acme", Payload: []byte("x")}}})
			return err
		}},
		{"Fetch", func() error {
			_, err := hc.Fetch(ctx, &heraldpb.FetchRequest{Topic: "live", Start: &heraldpb.FetchRequest_Position{Position: heraldpb.StartPosition_EARLIEST}, MaxEvents: 10})
			return err
		}},
		{"ClusterStatus", func() error { _, err := hc.ClusterStatus(ctx, &heraldpb.ClusterStatusRequest{}); return err }},
		{"InitProducer", func() error { _, err := hc.InitProducer(ctx, &heraldpb.InitProducerRequest{}); return err }},
		{"NodeStatus", func() error { _, err := ic.NodeStatus(ctx, &heraldpb.NodeStatusRequest{}); return err }},
	}
	for _, c := range calls {
		err := c.do()
		if err == nil {
			continue
		}
		ce := wire.FromStatus(err)
		switch {
		case errors.Is(ce, wire.ErrTopicNotFound), errors.Is(ce, wire.ErrTenantNotFound):
			return fmt.Errorf("%s: a registered name reported absent: %w", c.name, err)
		case errors.Is(ce, wire.ErrNoLeader), errors.Is(ce, wire.ErrNotLeader), errors.Is(ce, wire.ErrUnknownOutcome):
		case status.Code(err) == codes.Unavailable, status.Code(err) == codes.DeadlineExceeded, status.Code(err) == codes.Canceled:
		default:
			return fmt.Errorf("%s: %w", c.name, err)
		}
	}
	return nil
}

// Nodes restarted one at a time, with a long registry, while clients keep
// calling every RPC of every node: no node crashes, every call is answered
// or refused with an error a client retries, and no acknowledged event is
// lost. Before the serving gate, public calls reached handlers before the
// controller was open (nil dereference in Node.nodes, and a data race on
// Node.controller under -race).
func TestRestartsUnderClientLoadWithLongRegistry(t *testing.T) {
	if testing.Short() {
		t.Skip("long registry, many restarts")
	}
	restarts := envInt(t, "HERALD_TEST_RESTARTS", 6)
	c := startCluster(t, 3)
	hc := c.rawClient(0)
	createTenantsParallel(t, hc, "bulk", 2000)
	createTopic(t, hc, "live", 1, 3)
	createTenant(t, hc, "acme")

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var answered atomic.Int64
	failures := make(chan error, 16)
	for i := range c.cfgs {
		conn, err := grpc.NewClient(c.cfgs[i].GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		nhc, nic := heraldpb.NewHeraldClient(conn), heraldpb.NewNodeInternalClient(conn)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ctx.Err() == nil; k++ {
				if err := callEveryRPC(ctx, nhc, nic, k); err != nil && ctx.Err() == nil {
					select {
					case failures <- fmt.Errorf("node %d: %w", i, err):
					default:
					}
				}
				answered.Add(1)
			}
		}()
	}
	acked := 0
	for r := range restarts {
		victim := r % len(c.nodes)
		c.stop(victim)
		produceRetry(t, c.rawClient((victim+1)%len(c.nodes)), "live", &heraldpb.Event{TenantId: "acme", Payload: []byte(fmt.Sprint(acked))})
		acked++
		c.restart(victim)
		c.awaitReconciles(victim, 1)
	}
	cancel()
	wg.Wait()
	close(failures)
	for err := range failures {
		t.Error(err)
	}
	t.Logf("%d rounds of calls answered", answered.Load())
	for i := range c.nodes {
		rc := c.rawClient(i)
		eventually(t, 30*time.Second, func() error {
			resp, err := fetchAll(t, rc, "live", 0)
			if err != nil {
				return err
			}
			seen := map[string]bool{}
			for _, ev := range resp.Events {
				seen[string(ev.Payload)] = true
			}
			for k := range acked {
				if !seen[fmt.Sprint(k)] {
					return fmt.Errorf("node %d lost acknowledged event %d", i, k)
				}
			}
			return nil
		})
	}
}

// envInt reads a positive integer test setting from the environment.
func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}
