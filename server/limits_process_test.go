package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
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
		payload    = 900 << 10
		events     = 24 // 21 MiB: every fetch reads its full 16 MiB
		growthMax  = 12 * budget
	)
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
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := pc.AwaitReady(ctx, 0); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(nodes[0].GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := heraldpb.NewHeraldClient(conn)
	createTopic(t, hc, "flood", 1, 1)
	createTenant(t, hc, "acme")
	body := make([]byte, payload)
	for i := range events {
		body[0] = byte(i)
		produceRetry(t, hc, "flood", &heraldpb.Event{TenantId: "acme", Payload: body})
	}
	pid := pc.Process(0).Pid()
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
				MaxEvents: events, MaxBytes: fetchBytes})
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
