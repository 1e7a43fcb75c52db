package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	"github.com/heraldlog/herald/server/proccluster"
)

// procStatusBytes reads a "<field>: N kB" line of /proc/<pid>/status
// (VmRSS, VmHWM), in bytes.
func procStatusBytes(t *testing.T, pid int, field string) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc status: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			t.Fatalf("/proc/%d/status %s: %v", pid, field, err)
		}
		return kb << 10
	}
	t.Fatalf("/proc/%d/status has no %s", pid, field)
	return 0
}

// TestProcessesFetchFloodBoundedByNodeLimit: 40 concurrent 16 MiB fetches
// (the flood: it took a node from 366 MiB to 2.7 GB RSS) against a
// `herald serve` process whose fetch budget is 32 MiB: some are served,
// the rest are refused THROTTLED node_limit fetch_bytes, and the node's
// peak RSS grows by less than a bound derived from the budget.
//
// The bound: a fetch's answer is in memory about three times while it is
// served (the records read, their wire encoding, the gRPC message), and
// the Go heap may grow to twice what is live before a collection; so
// 3 × 2 × the budget, with as much again for the runtime, the transport's
// buffers and pebble's reads: 12 × 32 MiB = 384 MiB. Without the limit,
// the 40 fetches hold 40 × 16 MiB at once (640 MiB, about 1.9 GiB with
// their copies).
func TestProcessesFetchFloodBoundedByNodeLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real process")
	}
	const (
		budget     = 32 << 20
		fetches    = 40
		fetchBytes = 16 << 20
		growthMax  = 12 * budget
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	node := startFloodNode(t, ctx, budget)
	hc := node.hc
	pid := node.pid
	before := procStatusBytes(t, pid, "VmHWM")

	var (
		mu      sync.Mutex
		served  int
		refused int
		others  []error
		wg      sync.WaitGroup
	)
	for range fetches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := hc.Fetch(ctx, &heraldpb.FetchRequest{Topic: "flood", Start: &heraldpb.FetchRequest_Offset{Offset: 0},
				MaxEvents: floodEvents, MaxBytes: fetchBytes})
			mu.Lock()
			defer mu.Unlock()
			err = wire.FromStatus(err)
			var e *wire.Error
			switch {
			case err == nil && len(resp.GetEvents()) > 0:
				served++
			case errors.Is(err, wire.ErrThrottled) && errors.As(err, &e) && e.Metadata[wire.MetadataWhat] == limitFetchBytes:
				refused++
			case err == nil:
				others = append(others, errors.New("a fetch from offset 0 answered no event"))
			default:
				others = append(others, err)
			}
		}()
	}
	wg.Wait()
	peak := procStatusBytes(t, pid, "VmHWM")
	t.Logf("%d fetches of %d MiB, budget %d MiB: %d served, %d refused fetch_bytes; peak RSS %d MiB before, %d MiB after (growth %d MiB, bound %d MiB)",
		fetches, fetchBytes>>20, budget>>20, served, refused, before>>20, peak>>20, (peak-before)>>20, growthMax>>20)
	if len(others) > 0 {
		t.Fatalf("fetches failed otherwise than fetch_bytes: %v", others)
	}
	if served == 0 || refused == 0 {
		t.Fatalf("%d served and %d refused: want some of each at a budget of two fetches", served, refused)
	}
	if growth := peak - before; growth > growthMax {
		t.Fatalf("the node's peak RSS grew by %d MiB under the flood, above the bound of %d MiB", growth>>20, growthMax>>20)
	}
}

// Data of the flood tests: 24 events of 900 KiB (21 MiB), so that every
// read from offset 0 fills 16 MiB.
const (
	floodEvents       = 24
	floodPayloadBytes = 900 << 10
)

// floodNode is one `herald serve` process holding the flood data.
type floodNode struct {
	hc       heraldpb.HeraldClient
	pid      int
	httpAddr string
	grpcAddr string
}

// startFloodNode starts one node with a fetch budget of budget bytes,
// creates topic "flood" (one partition) and tenant acme, and produces the
// flood data.
func startFloodNode(t *testing.T, ctx context.Context, budget int) *floodNode {
	t.Helper()
	nodes, err := proccluster.Layout(t.TempDir(), 1)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := proccluster.New(proccluster.Config{Binary: proccluster.TestBinary(t), Nodes: nodes,
		ServeArgs: []string{"--limit-fetch-bytes=" + strconv.Itoa(budget)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	if err := pc.StartAll(); err != nil {
		t.Fatal(err)
	}
	if err := pc.AwaitReady(ctx, 0); err != nil {
		t.Fatal(err)
	}
	hc := floodClient(t, nodes[0].GRPCAddr)
	createTopic(t, hc, "flood", 1, 1)
	createTenant(t, hc, "acme")
	body := make([]byte, floodPayloadBytes)
	for i := range floodEvents {
		body[0] = byte(i)
		produceRetry(t, hc, "flood", &heraldpb.Event{TenantId: "acme", Payload: body})
	}
	return &floodNode{hc: hc, pid: pc.Process(0).Pid(), httpAddr: nodes[0].HTTPAddr, grpcAddr: nodes[0].GRPCAddr}
}

// floodClient is a client connection of its own to addr, taking answers
// of up to 64 MiB.
func floodClient(t *testing.T, addr string) heraldpb.HeraldClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return heraldpb.NewHeraldClient(conn)
}

// nodeMetric reads one sample (name with its labels, as /metrics spells
// it) from a node; -1 when it cannot be read.
func nodeMetric(t *testing.T, httpAddr, sample string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return 0
}

// TestProcessesStreamFloodBoundedByNodeLimit: 40 Subscribe streams from
// offset 0 with a gigabyte of credit each, whose client never reads,
// against a node whose fetch budget is 32 MiB: each stream's page and the
// batch gRPC holds for the client count against the budget, so the
// streams that find it full wait, and the node's peak RSS grows by less
// than the same bound as the fetch flood (12 × the budget). Without the
// budget every stream holds two 4 MiB pages and their copies.
func TestProcessesStreamFloodBoundedByNodeLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real process")
	}
	const (
		budget    = 32 << 20
		streams   = 40
		growthMax = 12 * budget
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	node := startFloodNode(t, ctx, budget)
	before := procStatusBytes(t, node.pid, "VmHWM")
	// One connection that never reads: its streams stall once gRPC's
	// windows are full.
	slow := floodClient(t, node.grpcAddr)
	for i := range streams {
		s, err := slow.Subscribe(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&heraldpb.SubscribeRequest{Msg: &heraldpb.SubscribeRequest_Start{Start: &heraldpb.SubscribeStart{
			Topic: "flood", Start: &heraldpb.SubscribeStart_Offset{Offset: 0}, CreditEvents: 1 << 20, CreditBytes: 1 << 30}}}); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	// Every stream admitted, and the budget taken: the streams that have
	// it are blocked on the client, the rest wait for it.
	eventually(t, time.Minute, func() error {
		open := nodeMetric(t, node.httpAddr, `herald_node_limit_inflight{what="streams"}`)
		held := nodeMetric(t, node.httpAddr, `herald_node_limit_inflight{what="fetch_bytes"}`)
		if open != streams || held < budget-(4<<20) {
			return fmt.Errorf("%v streams open, %v bytes of fetch_bytes held; want %d and the budget", open, held, streams)
		}
		return nil
	})
	// The streams that wait are not refused: a fetch is (the budget is full).
	_, err := node.hc.Fetch(ctx, &heraldpb.FetchRequest{Topic: "flood", Start: &heraldpb.FetchRequest_Offset{Offset: 0}, MaxBytes: 1 << 20})
	var e *wire.Error
	if err = wire.FromStatus(err); !errors.Is(err, wire.ErrThrottled) || !errors.As(err, &e) || e.Metadata[wire.MetadataWhat] != limitFetchBytes {
		t.Fatalf("a fetch while the streams hold the budget: %v; want THROTTLED fetch_bytes", err)
	}
	peak := procStatusBytes(t, node.pid, "VmHWM")
	t.Logf("%d stalled streams, budget %d MiB: peak RSS %d MiB before, %d MiB after (growth %d MiB, bound %d MiB)",
		streams, budget>>20, before>>20, peak>>20, (peak-before)>>20, growthMax>>20)
	if growth := peak - before; growth > growthMax {
		t.Fatalf("the node's peak RSS grew by %d MiB under the stream flood, above the bound of %d MiB", growth>>20, growthMax>>20)
	}
}
