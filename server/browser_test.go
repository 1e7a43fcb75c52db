package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/server/proccluster"
)

// browserPath finds headless Chromium: $HERALD_CHROMIUM, else chromium or
// google-chrome on PATH. .ci/run installs Debian's chromium and sets
// HERALD_BROWSER_TEST=require, under which a missing browser fails the
// test instead of skipping it.
func browserPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("HERALD_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("HERALD_BROWSER_TEST") == "require" {
		t.Fatal("no chromium found and HERALD_BROWSER_TEST=require (install Debian's chromium, or set HERALD_CHROMIUM)")
	}
	t.Skip("no chromium on PATH (set HERALD_CHROMIUM, or HERALD_BROWSER_TEST=require to fail instead)")
	return ""
}

// A page in headless Chromium subscribes over WebSocket and shows the
// events the SDK produces, in order, with no gap or repeat, also after the
// node it was connected to is killed: it reconnects to another node and
// resumes from its last position (testdata/browser/index.html).
func TestBrowserSubscriberSurvivesNodeKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three herald processes and a browser")
	}
	chromium := browserPath(t)

	// The page's own origin, allowed by the nodes.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	page := &http.Server{Handler: http.FileServer(http.Dir(filepath.Join("testdata", "browser"))), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = page.Serve(ln) }()
	t.Cleanup(func() { _ = page.Close() })
	origin := "http://" + ln.Addr().String()

	nodes, err := proccluster.Layout(t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	c, err := proccluster.New(proccluster.Config{Binary: proccluster.TestBinary(t), Nodes: nodes,
		ServeArgs: []string{"--ws-allowed-origins", origin}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = c.Close()
		if t.Failed() {
			for i := range nodes {
				t.Logf("--- %s\n%s", nodes[i].ID, c.LogTail(i))
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	if err := c.AwaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	var seeds, sockets []string
	for _, n := range nodes {
		seeds = append(seeds, n.GRPCAddr)
		sockets = append(sockets, "ws://"+n.HTTPAddr+"/v1/ws")
	}
	cl, err := client.New(ctx, client.Config{Servers: seeds})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.CreateTopic(ctx, &heraldpb.TopicConfig{Name: "live", Partitions: 1, ReplicationFactor: 3,
		DedupeWindowMs: int64(10 * time.Minute / time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CreateTenant(ctx, &heraldpb.Tenant{Id: "acme"}); err != nil {
		t.Fatal(err)
	}
	var produced []string
	produce := func(n int) {
		t.Helper()
		for range n {
			// A call cut by the kill has an unknown outcome: resend it
			// with the same event id, which the topic's dedupe window
			// makes safe.
			text := fmt.Sprintf("event %d ✓", len(produced))
			ev := &heraldpb.Event{TenantId: "acme", EventId: fmt.Sprintf("browser-%d", len(produced)), Payload: []byte(text)}
			var err error
			for attempt := 0; attempt < 50; attempt++ {
				if _, err = cl.Produce(ctx, "live", ev); err == nil {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if err != nil {
				t.Fatalf("produce %q: %v", text, err)
			}
			produced = append(produced, text)
		}
	}

	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU)...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	defer cancelBrowser()
	q := url.Values{"nodes": {strings.Join(sockets, ",")}, "topic": {"live"}, "partition": {"0"}}
	if _, err := chromedp.Run(browser, chromedp.Navigate(origin+"/index.html?"+q.Encode())); err != nil {
		t.Fatal(err)
	}

	type pageState struct {
		Node     int      `json:"node"`
		Connects int      `json:"connects"`
		Shown    [][2]any `json:"shown"`
		Errors   []any    `json:"errors"`
		Problems []string `json:"problems"`
		DOM      []string `json:"dom"`
	}
	read := func() pageState {
		t.Helper()
		js := `({node: herald.node, connects: herald.connects, shown: herald.shown, errors: herald.errors,
			problems: herald.problems, dom: [...document.querySelectorAll("#events li")].map(li => li.textContent)})`
		s, err := chromedp.Run(browser, chromedp.Evaluate[pageState](js))
		if err != nil {
			t.Fatalf("read the page: %v", err)
		}
		return s
	}
	// await waits until the page shows n events.
	await := func(n int) pageState {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			s := read()
			if len(s.DOM) >= n || time.Now().After(deadline) {
				return s
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	check := func(s pageState, n int) {
		t.Helper()
		if len(s.Problems) > 0 || len(s.Errors) > 0 {
			t.Fatalf("the page saw problems %v and errors %v", s.Problems, s.Errors)
		}
		if len(s.DOM) != n {
			t.Fatalf("the page shows %d events, want %d (connections %d, errors %v)", len(s.DOM), n, s.Connects, s.Errors)
		}
		for i, text := range s.DOM {
			if text != produced[i] {
				t.Fatalf("event %d on the page is %q, want %q", i, text, produced[i])
			}
			if off := s.Shown[i][0].(float64); int(off) != i {
				t.Fatalf("event %d on the page came from offset %v", i, off)
			}
		}
	}

	produce(50)
	before := await(50)
	check(before, 50)

	// Kill the node the page is connected to; produce while it is down.
	victim := before.Node
	t.Logf("killing %s, the page's node", nodes[victim].ID)
	if err := c.Kill(victim); err != nil {
		t.Fatal(err)
	}
	produce(50)
	after := await(100)
	check(after, 100)
	if after.Connects < 2 || after.Node == victim {
		t.Fatalf("the page did not move: %d connections, on node %d (killed %d)", after.Connects, after.Node, victim)
	}

	// The killed node comes back; the page keeps its connection and order.
	if err := c.Start(victim); err != nil {
		t.Fatal(err)
	}
	if err := c.AwaitReady(ctx, victim); err != nil {
		t.Fatal(err)
	}
	produce(20)
	check(await(120), 120)
}
