package jepsen

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// CheckPaths is the verdict on which rare code paths a run took.
const CheckPaths = "rare-paths-taken"

// Path counters scraped from the nodes' /metrics.
const (
	PathSnapshots        = "snapshots"
	PathSnapshotInstalls = "snapshot-installs"
	PathRestores         = "snapshot-restores"
	PathRetentionTrims   = "retention-trims"
	PathRejoins          = "rejoins"
	PathCompactions      = "pebble-compactions"
	PathLogRebuilds      = "log-rebuilds"
)

// pathMetric names a counter of a node's /metrics (summed over its label
// sets, or the one whose labels contain label).
type pathMetric struct {
	path, metric, label string
}

// pathMetrics are the counters a run reports. Installs are counted where
// they are received: one per InstallSnapshot RPC a follower took.
var pathMetrics = []pathMetric{
	{PathSnapshots, "herald_partition_snapshots_total", ""},
	{PathSnapshotInstalls, "herald_raft_rpcs_received_total", `type="install_snapshot"`},
	{PathRestores, "herald_partition_snapshot_restores_total", ""},
	{PathRetentionTrims, "herald_retention_trims_total", ""},
	{PathRejoins, "herald_raft_rejoins_total", `stage="promoted"`},
	{PathCompactions, "herald_pebble_compactions_total", ""},
	{PathLogRebuilds, "herald_log_rebuilds_total", ""},
}

// pathsRequired must each be taken at least once for CheckPaths to pass in
// volume mode (the others depend on the nemeses chosen); a run with the
// retained topic must also have trimmed (PathRetentionTrims).
var pathsRequired = []string{PathSnapshots, PathSnapshotInstalls, PathRestores}

// pathScrapeInterval is how often the scraper reads every node's
// counters. A node's counters restart at zero with its process, so a kill
// loses what it counted since the last scrape: the totals are lower bounds.
const pathScrapeInterval = 2 * time.Second

// PathCounts are the totals per path, summed over the nodes and over
// their processes (restarts included).
type PathCounts map[string]float64

// pathScraper accumulates the path counters of every node across process
// restarts. Its state is owned by the goroutine of run; Counts is read
// after run returns.
type pathScraper struct {
	nodes  []Node
	client *http.Client
	// scheme is "https" with TLS, else "http".
	scheme string
	mu     struct {
		sync.Mutex
		// banked[node][path] is what earlier processes of node counted;
		// last[node][path] what the current one had at the last scrape.
		banked, last []map[string]float64
	}
}

func newPathScraper(nodes []Node, conf *tls.Config) *pathScraper {
	s := &pathScraper{nodes: nodes, client: &http.Client{Timeout: time.Second}, scheme: "http"}
	if conf != nil {
		s.client.Transport = &http.Transport{TLSClientConfig: conf.Clone()}
		s.scheme = "https"
	}
	for range nodes {
		s.mu.banked = append(s.mu.banked, map[string]float64{})
		s.mu.last = append(s.mu.last, map[string]float64{})
	}
	return s
}

// run scrapes every pathScrapeInterval until ctx ends, then once more.
func (s *pathScraper) run(ctx context.Context) {
	tick := time.NewTicker(pathScrapeInterval)
	defer tick.Stop()
	for {
		s.scrapeAll()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// scrapeAll reads every node once; a node that does not answer (down,
// paused) keeps its last values.
func (s *pathScraper) scrapeAll() {
	for i, n := range s.nodes {
		vals, err := s.scrape(n.HTTPAddr)
		if err != nil {
			continue
		}
		s.mu.Lock()
		for path, v := range vals {
			if last := s.mu.last[i][path]; v < last { // a new process
				s.mu.banked[i][path] += last
			}
			s.mu.last[i][path] = v
		}
		s.mu.Unlock()
	}
}

// scrape reads one node's path counters.
func (s *pathScraper) scrape(addr string) (map[string]float64, error) {
	resp, err := s.client.Get(s.scheme + "://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jepsen: %s/metrics: %s", addr, resp.Status)
	}
	return parsePathCounters(resp.Body)
}

// parsePathCounters reads the Prometheus text format and sums the
// pathMetrics.
func parsePathCounters(r io.Reader) (map[string]float64, error) {
	out := make(map[string]float64, len(pathMetrics))
	for _, m := range pathMetrics {
		out[m.path] = 0
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		series, value := line[:sp], line[sp+1:]
		name, labels, _ := strings.Cut(series, "{")
		for _, m := range pathMetrics {
			if name != m.metric || !strings.Contains(labels, m.label) {
				continue
			}
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				return nil, fmt.Errorf("jepsen: metrics line %q: %w", line, err)
			}
			out[m.path] += v
		}
	}
	return out, sc.Err()
}

// Counts returns the totals over every node and process.
func (s *pathScraper) Counts() PathCounts {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := PathCounts{}
	for _, m := range pathMetrics {
		out[m.path] = 0
	}
	for i := range s.nodes {
		for path, v := range s.mu.banked[i] {
			out[path] += v
		}
		for path, v := range s.mu.last[i] {
			out[path] += v
		}
	}
	return out
}

// String lists the counts in pathMetrics order.
func (c PathCounts) String() string {
	var parts []string
	for _, m := range pathMetrics {
		parts = append(parts, fmt.Sprintf("%s=%.0f", m.path, c[m.path]))
	}
	return strings.Join(parts, " ")
}

// checkPaths is the CheckPaths verdict: pass when every path of
// pathsRequired was taken, and with retained (the run wrote the retained
// topic) at least one retention trim; unknown (the run did not test what
// it is for) when one was not.
func checkPaths(c PathCounts, retained bool) Verdict {
	v := Verdict{Name: CheckPaths, Note: c.String()}
	required := pathsRequired
	if retained {
		required = append(slices.Clip(required), PathRetentionTrims)
	}
	var missing []string
	for _, p := range required {
		if c[p] == 0 {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		v.Status = StatusUnknown
		v.Note = "took none of: " + strings.Join(missing, ", ") + "; " + v.Note
	}
	return v.settle()
}
