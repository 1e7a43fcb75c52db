package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/heraldlog/herald/client"
)

// What `tenant describe` reads of each node's /metrics: the admission
// controller's per-tenant series (names fixed by issue 13; see
// docs/operations.md). Summed over the nodes, a tenant's usage is the
// cluster's: each event is admitted by one partition leader.
const (
	metricAdmittedEvents = "herald_admission_admitted_events_total"
	metricAdmittedBytes  = "herald_admission_admitted_bytes_total"
	metricThrottled      = "herald_admission_throttled_total"
	metricRefused        = "herald_admission_refused_total"
	metricTokens         = "herald_admission_tokens"
)

// Bounds of the usage scrape.
const (
	// DefaultUsageWindow is the time between the two scrapes whose
	// difference gives the rates.
	defaultUsageWindow = time.Second
	// usageWindowMax bounds --usage-window.
	usageWindowMax = time.Minute
	// usageScrapeTimeout bounds one GET of a node's /metrics.
	usageScrapeTimeout = 3 * time.Second
	// usageMetricsBytesMax bounds the /metrics body read from one node.
	usageMetricsBytesMax = 32 << 20
)

// tenantSample is one tenant's admission series on one node at one time;
// throttled and refused by limit.
type tenantSample struct {
	admittedEvents, admittedBytes float64
	throttled, refused            map[string]float64
	tokens                        map[string]float64 // by kind: events, bytes
	// seen reports whether the node had any admission series of the tenant.
	seen bool
	// hidden reports that the node's /metrics hides every tenant series
	// (its public port, with credentials required).
	hidden bool
}

// parseTenantSample reads a Prometheus text exposition (with the parser
// `herald top` uses) and keeps tenant's admission series.
func parseTenantSample(r io.Reader, tenant string) (tenantSample, error) {
	s := tenantSample{throttled: map[string]float64{}, refused: map[string]float64{}, tokens: map[string]float64{}}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return s, fmt.Errorf("parsing /metrics: %w", err)
	}
	s.hidden = tenantSeriesHidden(families)
	for _, name := range []string{metricAdmittedEvents, metricAdmittedBytes, metricThrottled, metricRefused, metricTokens} {
		for _, m := range families[name].GetMetric() {
			if label(m, "tenant") != tenant {
				continue
			}
			v := sampleValue(m)
			switch name {
			case metricAdmittedEvents:
				s.admittedEvents += v
			case metricAdmittedBytes:
				s.admittedBytes += v
			case metricThrottled:
				s.throttled[label(m, "limit")] += v
			case metricRefused:
				s.refused[label(m, "limit")] += v
			case metricTokens:
				s.tokens[label(m, "kind")] += v
			}
			s.seen = true
		}
	}
	return s, nil
}

// sampleValue is a counter's, gauge's or untyped metric's value.
func sampleValue(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	default:
		return m.GetUntyped().GetValue()
	}
}

// limitCount is a throttled or refused count of one limit: since the
// nodes started, and within the usage window.
type limitCount struct {
	Total    uint64 `json:"total"`
	InWindow uint64 `json:"in_window"`
}

// usageView is a tenant's usage against its quota as `tenant describe`
// prints it, summed over the nodes that answered.
type usageView struct {
	WindowMs int64 `json:"window_ms"`
	// Recorded is false when no node had any admission series of the
	// tenant (no usage recorded: nothing produced since the nodes
	// started, or nodes without admission control).
	Recorded bool `json:"recorded"`
	// TenantSeriesHidden is true when a node read hides its tenant series
	// (the public port of a cluster that requires credentials: read the
	// admin listeners instead, --admin).
	TenantSeriesHidden   bool                  `json:"tenant_series_hidden,omitempty"`
	Nodes                int                   `json:"nodes"`
	NodesFailed          []string              `json:"nodes_failed,omitempty"`
	AdmittedEventsPerSec float64               `json:"admitted_events_per_sec"`
	AdmittedBytesPerSec  float64               `json:"admitted_bytes_per_sec"`
	AdmittedEventsTotal  uint64                `json:"admitted_events_total"`
	AdmittedBytesTotal   uint64                `json:"admitted_bytes_total"`
	Throttled            map[string]limitCount `json:"throttled"`
	Refused              map[string]limitCount `json:"refused"`
	// Tokens are the tokens left in the tenant's buckets, by kind (events,
	// bytes), summed over the nodes' buckets, at the second scrape.
	Tokens map[string]float64 `json:"tokens,omitempty"`
}

// nodeMetricsURLs returns the /metrics URL of every reachable node (id
// -> URL), from the HTTP addresses the nodes report in the cluster
// status (a node listening on every interface is reached at the host of
// its gRPC address), and the ids of the nodes it cannot reach.
func nodeMetricsURLs(st *client.ClusterStatusResponse, scheme string) (urls map[string]string, unreachable []string) {
	urls = map[string]string{}
	for _, n := range st.GetNodes() {
		host, port, err := net.SplitHostPort(n.GetHttpAddr())
		if !n.GetReachable() || err != nil {
			unreachable = append(unreachable, n.GetId())
			continue
		}
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			if gh, _, err := net.SplitHostPort(n.GetGrpcAddr()); err == nil {
				host = gh
			}
		}
		urls[n.GetId()] = scheme + "://" + net.JoinHostPort(host, port) + "/metrics"
	}
	return urls, unreachable
}

// scrapeTenant GETs every URL at once and returns each node's sample of
// tenant; a node that fails is left out, its error returned by node id.
func scrapeTenant(ctx context.Context, hc *http.Client, urls map[string]string, tenant string) (map[string]tenantSample, map[string]error) {
	var (
		mu      sync.Mutex
		wg      sync.WaitGroup
		samples = map[string]tenantSample{}
		errs    = map[string]error{}
	)
	for id, url := range urls {
		wg.Add(1)
		go func() { // owned by scrapeTenant: ends with the GET (usageScrapeTimeout)
			defer wg.Done()
			s, err := scrapeOne(ctx, hc, url, tenant)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs[id] = err
				return
			}
			samples[id] = s
		}()
	}
	wg.Wait()
	return samples, errs
}

func scrapeOne(ctx context.Context, hc *http.Client, url, tenant string) (tenantSample, error) {
	ctx, cancel := context.WithTimeout(ctx, usageScrapeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return tenantSample{}, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return tenantSample{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return tenantSample{}, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return parseTenantSample(io.LimitReader(resp.Body, usageMetricsBytesMax), tenant)
}

// adminMetricsURLs returns the /metrics URL of each admin listener, keyed
// by its address.
func adminMetricsURLs(admin []string) map[string]string {
	urls := make(map[string]string, len(admin))
	for _, a := range admin {
		urls[a] = "http://" + a + "/metrics"
	}
	return urls
}

// measureUsage scrapes every node twice, window apart, and sums the
// tenant's usage over the nodes that answered both times. The nodes are
// read at their HTTP addresses from the cluster status or, when admin is
// given, at those admin listeners (named by address).
func measureUsage(ctx context.Context, st *client.ClusterStatusResponse, tenant string, window time.Duration, admin []string, conn connection) (usageView, error) {
	urls, unreachable := nodeMetricsURLs(st, conn.httpScheme())
	total := len(st.GetNodes())
	if len(admin) > 0 {
		urls, unreachable, total = adminMetricsURLs(admin), nil, len(admin)
	}
	if len(urls) == 0 {
		// No node reports an HTTP address (nodes older than this version,
		// or none reachable): nothing to read.
		return usageOf(nil, nil, 0, unreachable), nil
	}
	hc := conn.httpClient(0) // each GET is bounded by usageScrapeTimeout
	// The window runs from the start of the first reads to the start of
	// the second: each node is read at about the same point of both.
	start := time.Now()
	first, errs1 := scrapeTenant(ctx, hc, urls, tenant)
	select {
	case <-ctx.Done():
		return usageView{}, ctx.Err()
	case <-time.After(time.Until(start.Add(window))):
	}
	elapsed := time.Since(start)
	second, errs2 := scrapeTenant(ctx, hc, urls, tenant)
	failed := slices.Clone(unreachable)
	for id := range urls {
		if errs1[id] != nil || errs2[id] != nil {
			failed = append(failed, id)
		}
	}
	slices.Sort(failed)
	if len(failed) == total {
		return usageView{}, fmt.Errorf("usage: no node's /metrics answered: %w", errors.Join(joinErrs(errs1), joinErrs(errs2)))
	}
	var before, after []tenantSample
	for id, s := range second {
		if b, ok := first[id]; ok {
			before, after = append(before, b), append(after, s)
		}
	}
	return usageOf(before, after, elapsed, failed), nil
}

func joinErrs(errs map[string]error) error {
	var out []error
	for id, err := range errs {
		out = append(out, fmt.Errorf("%s: %w", id, err))
	}
	return errors.Join(out...)
}

// usageOf sums the per-node samples (before[i] and after[i] are one
// node's) into the usage over elapsed. A counter that went down (the node
// restarted between the scrapes) counts from zero.
func usageOf(before, after []tenantSample, elapsed time.Duration, failed []string) usageView {
	u := usageView{WindowMs: elapsed.Milliseconds(), Nodes: len(after), NodesFailed: failed,
		Throttled: map[string]limitCount{}, Refused: map[string]limitCount{}}
	delta := func(b, a float64) float64 {
		if a < b {
			return a
		}
		return a - b
	}
	var events, bytes float64
	for i, a := range after {
		b := before[i]
		u.Recorded = u.Recorded || a.seen
		u.TenantSeriesHidden = u.TenantSeriesHidden || a.hidden
		events += delta(b.admittedEvents, a.admittedEvents)
		bytes += delta(b.admittedBytes, a.admittedBytes)
		u.AdmittedEventsTotal += uint64(a.admittedEvents)
		u.AdmittedBytesTotal += uint64(a.admittedBytes)
		for _, m := range []struct {
			into          map[string]limitCount
			before, after map[string]float64
		}{{u.Throttled, b.throttled, a.throttled}, {u.Refused, b.refused, a.refused}} {
			for limit, v := range m.after {
				c := m.into[limit]
				c.Total += uint64(v)
				c.InWindow += uint64(delta(m.before[limit], v))
				m.into[limit] = c
			}
		}
		for kind, v := range a.tokens {
			if u.Tokens == nil {
				u.Tokens = map[string]float64{}
			}
			u.Tokens[kind] += v
		}
	}
	if secs := elapsed.Seconds(); secs > 0 {
		u.AdmittedEventsPerSec, u.AdmittedBytesPerSec = events/secs, bytes/secs
	}
	return u
}

// printUsage prints usage against quota q as text.
func printUsage(w io.Writer, u usageView, q quotaView) error {
	window := (time.Duration(u.WindowMs) * time.Millisecond).Round(10 * time.Millisecond)
	nodes := fmt.Sprintf("%d node(s)", u.Nodes)
	if len(u.NodesFailed) > 0 {
		nodes += fmt.Sprintf("; not read: %s", strings.Join(u.NodesFailed, ", "))
	}
	if !u.Recorded {
		why := "no usage recorded"
		if u.TenantSeriesHidden {
			why = tenantSeriesHiddenHint
		}
		_, err := fmt.Fprintf(w, "usage over %s (%s): %s\n", window, nodes, why)
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "usage over %s (%s): admitted %s events/s%s, %s bytes/s%s; since the nodes started %d events, %d bytes\n",
		window, nodes, formatRate(u.AdmittedEventsPerSec), ofQuota(u.AdmittedEventsPerSec, q.EventsPerSec),
		formatRate(u.AdmittedBytesPerSec), ofQuota(u.AdmittedBytesPerSec, q.BytesPerSec), u.AdmittedEventsTotal, u.AdmittedBytesTotal)
	fmt.Fprintf(&b, "throttled: %s\n", formatLimits(u.Throttled))
	fmt.Fprintf(&b, "refused: %s\n", formatLimits(u.Refused))
	// Tokens of an unlimited kind mean nothing: shown for limited kinds only.
	var tokens []string
	if _, ok := u.Tokens["events"]; ok && q.EventsPerSec > 0 {
		tokens = append(tokens, "events "+formatRate(u.Tokens["events"]))
	}
	if _, ok := u.Tokens["bytes"]; ok && q.BytesPerSec > 0 {
		tokens = append(tokens, "bytes "+formatRate(u.Tokens["bytes"]))
	}
	if len(tokens) > 0 {
		fmt.Fprintf(&b, "tokens left: %s\n", strings.Join(tokens, ", "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// ofQuota is " of N (P%)" for a limited rate, "" for an unlimited one.
func ofQuota(rate float64, quota uint64) string {
	if quota == 0 {
		return " (unlimited)"
	}
	return fmt.Sprintf(" of %d (%.0f%%)", quota, 100*rate/float64(quota))
}

func formatRate(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// formatLimits is "limit total (+in window), ..." in limit order, or "none".
func formatLimits(m map[string]limitCount) string {
	limits := make([]string, 0, len(m))
	for l, c := range m {
		if c.Total > 0 {
			limits = append(limits, l)
		}
	}
	if len(limits) == 0 {
		return "none"
	}
	slices.Sort(limits)
	parts := make([]string, len(limits))
	for i, l := range limits {
		parts[i] = fmt.Sprintf("%s %d (+%d in the window)", l, m[l].Total, m[l].InWindow)
	}
	return strings.Join(parts, ", ")
}
