package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldlog/herald/client"
)

// Bounds of `herald top`.
const (
	topIntervalDefault = time.Second
	topIntervalMin     = 100 * time.Millisecond
	topIntervalMax     = time.Hour
	topLimitDefault    = 10
	topLimitMax        = 1000
	// topMetricsBytesMax bounds one /metrics body.
	topMetricsBytesMax = 16 << 20
	// clearScreen moves the cursor home and clears the terminal (ANSI).
	clearScreen = "\x1b[H\x1b[2J"
)

// topOptions are `herald top`'s own flags.
type topOptions struct {
	interval time.Duration
	once     bool
	limit    int
	// admin, when set, are the admin listeners to scrape instead of the
	// nodes' HTTP addresses (--admin).
	admin []string
}

// newTopCommand is `herald top`: a live view of the busiest tenants and
// partitions from every node's admission metrics.
func newTopCommand(env environment) *cobra.Command {
	var (
		conn  clientOptions
		o     = topOptions{interval: topIntervalDefault, limit: topLimitDefault}
		admin string
	)
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Live view of the busiest tenants and partitions (admission metrics of every node)",
		Long: `Show the busiest tenants (admitted events/s and bytes/s; produce calls
throttled and refused per second, by limit) and the busiest partitions (admitted events/s,
bytes waiting in the admission queue), summed over every node of the
cluster and refreshed every --interval.

The nodes' HTTP addresses come from the cluster status (asked of --server
every frame); each node's /metrics is read and the herald_admission_*
series are compared with the previous read. The first frame therefore
appears after one interval. A cluster that requires credentials hides the
tenant series on the nodes' HTTP port: --admin names the nodes' admin
listeners (--admin-addr), read instead. --once prints one frame without clearing the
screen and exits; otherwise the screen is cleared (ANSI) before each frame
until Ctrl-C.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.interval < topIntervalMin || o.interval > topIntervalMax {
				return usagef("--interval %s: want %s to %s", o.interval, topIntervalMin, topIntervalMax)
			}
			if o.limit < 1 || o.limit > topLimitMax {
				return usagef("--limit %d: want 1 to %d", o.limit, topLimitMax)
			}
			var err error
			if o.admin, err = conn.adminAddrs(admin); err != nil {
				return err
			}
			c, err := conn.connect(cmd.Context(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer c.Close()
			resolved, err := conn.resolve()
			if err != nil {
				return err
			}
			t := &topView{client: c, http: resolved.httpClient(conn.timeout), scheme: resolved.httpScheme(), opts: o}
			return t.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	conn.register(cmd.Flags(), env)
	cmd.Flags().DurationVar(&o.interval, "interval", o.interval, "time between frames (and the window of each frame's rates)")
	cmd.Flags().BoolVar(&o.once, "once", false, "print one frame (after one interval) and exit")
	cmd.Flags().IntVar(&o.limit, "limit", o.limit, "rows per table")
	cmd.Flags().StringVar(&admin, "admin", "", adminFlagUsage)
	return cmd
}

// topView is one running `herald top`; its methods are called by the
// command's goroutine only.
type topView struct {
	client *client.Client
	http   *http.Client
	// scheme is the public HTTP ports' (https with TLS); the admin
	// listeners are plaintext.
	scheme string
	opts   topOptions
}

// topNodes is what one frame learned of the cluster: the samples by node
// id, the nodes that could not be read (with why), and the partitions'
// names and leaders by Raft group id.
type topNodes struct {
	at         time.Time
	samples    map[string]topSample
	failed     []string
	total      int
	partitions map[string]partitionRow
}

// run prints frames until ctx ends (then it returns nil) or, with --once,
// after the first.
func (t *topView) run(ctx context.Context, out io.Writer) error {
	prev, err := t.read(ctx)
	if err != nil {
		return err
	}
	tick := time.NewTicker(t.opts.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		cur, err := t.read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		frame := computeFrame(prev.samples, cur.samples, cur.at.Sub(prev.at).Seconds())
		var b strings.Builder
		if !t.opts.once {
			b.WriteString(clearScreen)
		}
		renderTop(&b, frame, cur, t.opts.limit)
		if _, err := io.WriteString(out, b.String()); err != nil {
			return err
		}
		if t.opts.once {
			return nil
		}
		prev = cur
	}
}

// read asks the cluster status for the nodes and partitions, and scrapes
// every node with an HTTP address (or, with --admin, every admin
// listener, named by its address), concurrently (one goroutine per node,
// done before read returns). A node that cannot be read is listed in
// failed, not an error.
func (t *topView) read(ctx context.Context) (topNodes, error) {
	st, err := t.client.ClusterStatus(ctx)
	if err != nil {
		return topNodes{}, err
	}
	nodes := topNodes{samples: map[string]topSample{}, total: len(st.GetNodes()), partitions: map[string]partitionRow{}}
	for _, p := range st.GetPartitions() {
		id := strconv.FormatUint(p.GetGroupId(), 10)
		nodes.partitions[id] = partitionRow{Partition: id, Name: fmt.Sprintf("%s/%d", p.GetTopic(), p.GetIndex()), Leader: p.GetLeaderId()}
	}
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	targets := map[string]string{} // name -> host:port
	if len(t.opts.admin) > 0 {
		nodes.total = len(t.opts.admin)
		for _, a := range t.opts.admin {
			targets[a] = a
		}
	} else {
		for _, n := range st.GetNodes() {
			if n.GetHttpAddr() == "" {
				nodes.failed = append(nodes.failed, n.GetId()+" (no HTTP address: unreachable)")
				continue
			}
			targets[n.GetId()] = n.GetHttpAddr()
		}
	}
	for name, addr := range targets {
		wg.Go(func() {
			s, err := t.scrape(ctx, t.metricsURL(addr))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				nodes.failed = append(nodes.failed, fmt.Sprintf("%s (%v)", name, err))
				return
			}
			nodes.samples[name] = s
		})
	}
	wg.Wait()
	nodes.at = time.Now()
	slices.Sort(nodes.failed)
	return nodes, nil
}

// metricsURL is the /metrics URL of addr: an admin listener (plaintext)
// with --admin, else a node's public HTTP port.
func (t *topView) metricsURL(addr string) string {
	scheme := t.scheme
	if len(t.opts.admin) > 0 || scheme == "" {
		scheme = "http"
	}
	return scheme + "://" + addr + "/metrics"
}

// scrape reads one node's admission metrics.
func (t *topView) scrape(ctx context.Context, url string) (topSample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return topSample{}, err
	}
	resp, err := t.http.Do(req)
	if err != nil {
		return topSample{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return topSample{}, errors.New(resp.Status)
	}
	return parseTopSample(io.LimitReader(resp.Body, topMetricsBytesMax))
}

// renderTop writes one frame: a header, the tenant table and the
// partition table, each at most limit rows.
func renderTop(w io.Writer, f topFrame, nodes topNodes, limit int) {
	fmt.Fprintf(w, "herald top  %s  %d of %d nodes read, rates over %.1fs\n",
		nodes.at.UTC().Format("15:04:05 UTC"), len(nodes.samples), nodes.total, f.Seconds)
	for _, n := range nodes.failed {
		fmt.Fprintf(w, "  not read: %s\n", n)
	}
	anySeries, hidden := false, false
	for _, s := range nodes.samples {
		anySeries = anySeries || !s.empty()
		hidden = hidden || s.tenantsHidden
	}
	if hidden {
		fmt.Fprintf(w, "  %s\n", tenantSeriesHiddenHint)
	}
	if len(nodes.samples) > 0 && !anySeries {
		fmt.Fprintln(w, "  no herald_admission_* metrics on any node read (a version without admission control?)")
	}
	fmt.Fprintln(w)
	tw := newTable(w)
	fmt.Fprintln(tw, "TENANT\tEVENTS/S\tBYTES/S\tTHROTTLED CALLS/S\tREFUSED CALLS/S\tBY LIMIT")
	for _, t := range f.Tenants[:min(limit, len(f.Tenants))] {
		var why []string
		if s := byLimit(t.Refused); s != "" {
			why = append(why, "refused: "+s)
		}
		if s := byLimit(t.Throttled); s != "" {
			why = append(why, "throttled: "+s)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.Tenant, formatTopRate(t.EventsPerSec), formatBytes(t.BytesPerSec)+"/s",
			formatTopRate(t.ThrottledPerSec), formatTopRate(t.RefusedPerSec), orDash(strings.Join(why, "; ")))
	}
	if len(f.Tenants) == 0 {
		fmt.Fprintln(tw, "-\t\t\t\t\t")
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	tw = newTable(w)
	fmt.Fprintln(tw, "PARTITION\tGROUP\tLEADER\tEVENTS/S\tQUEUE BYTES")
	for _, p := range f.Partitions[:min(limit, len(f.Partitions))] {
		known := nodes.partitions[p.Partition]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", orDash(known.Name), p.Partition, orDash(known.Leader), formatTopRate(p.EventsPerSec), formatBytes(p.QueueBytes))
	}
	if len(f.Partitions) == 0 {
		fmt.Fprintln(tw, "-\t\t\t\t")
	}
	_ = tw.Flush()
}

// formatTopRate renders a per-second rate: whole numbers with thousands
// separators, one decimal under 10.
func formatTopRate(v float64) string {
	if v < 10 {
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	s := strconv.FormatInt(int64(v+0.5), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// formatBytes renders a byte count in B, KiB, MiB or GiB.
func formatBytes(v float64) string {
	switch {
	case v < 1024:
		return fmt.Sprintf("%.0f B", v)
	case v < 1<<20:
		return fmt.Sprintf("%.1f KiB", v/(1<<10))
	case v < 1<<30:
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	default:
		return fmt.Sprintf("%.1f GiB", v/(1<<30))
	}
}
