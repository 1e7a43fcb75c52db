package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// rssSampleInterval is how often the nodes' RSS is sampled during a run.
const rssSampleInterval = 200 * time.Millisecond

// memMeter reads the resident memory of a cluster's nodes. Implementations
// are called from one goroutine at a time.
type memMeter interface {
	// nodes names the nodes, in the order of rssKiB's values.
	nodes() []string
	// rssKiB returns each node's resident set now (-1: unknown).
	rssKiB(ctx context.Context) []int64
	// hwmKiB returns each node's peak resident set since it started
	// (-1: unknown).
	hwmKiB() []int64
}

// procMem reads VmRSS and VmHWM of local processes from /proc (Linux).
type procMem struct{ pids []int }

var _ memMeter = procMem{}

func (m procMem) nodes() []string {
	names := make([]string, len(m.pids))
	for i, pid := range m.pids {
		names[i] = fmt.Sprintf("n%d (pid %d)", i+1, pid)
	}
	return names
}

func (m procMem) rssKiB(context.Context) []int64 { return m.read("VmRSS") }
func (m procMem) hwmKiB() []int64                { return m.read("VmHWM") }

func (m procMem) read(field string) []int64 {
	out := make([]int64, len(m.pids))
	for i, pid := range m.pids {
		out[i] = procStatusKiB(pid, field)
	}
	return out
}

// procStatusKiB reads one "Field: N kB" line of /proc/<pid>/status (-1
// when unknown).
func procStatusKiB(pid int, field string) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1
	}
	return parseStatusKiB(string(b), field)
}

// parseStatusKiB finds "field: N kB" in a /proc status text (-1: absent).
func parseStatusKiB(status, field string) int64 {
	for _, line := range strings.Split(status, "\n") {
		v, ok := strings.CutPrefix(line, field+":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			return -1
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return -1
		}
		return n
	}
	return -1
}

// metricsMem reads process_resident_memory_bytes from each node's /metrics.
type metricsMem struct {
	httpAddrs []string
	client    *http.Client
}

var _ memMeter = metricsMem{}

func (m metricsMem) nodes() []string { return m.httpAddrs }

func (m metricsMem) rssKiB(ctx context.Context) []int64 {
	out := make([]int64, len(m.httpAddrs))
	for i, addr := range m.httpAddrs {
		out[i] = -1
		body, err := scrapeMetrics(ctx, m.client, addr)
		if err != nil {
			continue
		}
		if v, err := parseMetricValue(strings.NewReader(body), "process_resident_memory_bytes"); err == nil {
			out[i] = int64(v / 1024)
		}
	}
	return out
}

func (m metricsMem) hwmKiB() []int64 {
	out := make([]int64, len(m.httpAddrs))
	for i := range out {
		out[i] = -1
	}
	return out
}

// scrapeMetrics returns a node's /metrics body (at most metricsBytesMax).
func scrapeMetrics(ctx context.Context, hc *http.Client, addr string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("metrics of %s: %s", addr, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, metricsBytesMax))
	return string(b), err
}

// memSampler samples a memMeter every rssSampleInterval in a goroutine it
// owns, from startMemSampler until stop.
type memSampler struct {
	meter memMeter
	quit  chan struct{}
	done  chan struct{}
	// first and peak are written by the goroutine, read after done.
	first, peak []int64
}

// startMemSampler starts sampling m; nil m samples nothing.
func startMemSampler(m memMeter) *memSampler {
	s := &memSampler{meter: m, quit: make(chan struct{}), done: make(chan struct{})}
	if m == nil {
		close(s.done)
		return s
	}
	go s.loop()
	return s
}

func (s *memSampler) loop() {
	defer close(s.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tick := time.NewTicker(rssSampleInterval)
	defer tick.Stop()
	for {
		now := s.meter.rssKiB(ctx)
		if s.first == nil {
			s.first, s.peak = now, append([]int64(nil), now...)
		}
		for i, v := range now {
			s.peak[i] = max(s.peak[i], v)
		}
		select {
		case <-s.quit:
			return
		case <-tick.C:
		}
	}
}

// stop ends the sampling and returns each node's figures (none when there
// was no meter). It is called once.
func (s *memSampler) stop() []NoisyNode {
	close(s.quit)
	<-s.done
	if s.meter == nil || s.first == nil {
		return nil
	}
	hwm := s.meter.hwmKiB()
	var out []NoisyNode
	for i, name := range s.meter.nodes() {
		out = append(out, NoisyNode{Node: name, RSSStartKiB: s.first[i], RSSPeakKiB: s.peak[i], HWMKiB: hwm[i]})
	}
	return out
}
