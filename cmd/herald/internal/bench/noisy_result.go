package bench

import (
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
)

// WriteJSON writes r as one JSON object on one line.
func (r *NoisyResult) WriteJSON(w io.Writer) error { return writeJSONLine(w, r) }

// formatCores renders a CPU figure in cores, "unknown" when negative.
func formatCores(v float64) string {
	if v < 0 {
		return "unknown"
	}
	return fmt.Sprintf("%.2f", v)
}

// WriteSummary writes r for people: the shape of the run, a table of
// B..E per phase, A's rates against its quota and the nodes' memory.
func (r *NoisyResult) WriteSummary(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "herald bench noisy-tenant: topic %s, %d partitions x%d, ordering none (%s cluster), %d B events\n",
		r.Topic, r.Partitions, r.Replication, r.Cluster, r.Size)
	fmt.Fprintf(&b, "  B..E: %g events/s each, one event per request, latency from the scheduled send time to the ack\n", r.SteadyRate)
	fmt.Fprintf(&b, "  A:    %d senders x %d events per request, no pacing, no SDK retries, %gs pause after a refusal\n\n", r.Flooders, r.FloodBatch, r.FloodPauseS)
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PHASE\tTENANT\tSENT\tACKED\tERRORS\tEVENTS/S\tP50\tP99\tP99.9\tMAX")
	for _, ph := range r.Phases {
		rows := append([]NoisyTenant{ph.Steady}, ph.Tenants...)
		for _, t := range rows {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%.1f\t%s\t%s\t%s\t%s\n", ph.Name, t.Name, t.Sent, t.Acked, t.Errors, t.EventsPerSec,
				formatMs(t.Latency.P50), formatMs(t.Latency.P99), formatMs(t.Latency.P999), formatMs(t.Latency.Max))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, ph := range r.Phases {
		fmt.Fprintf(&b, "\n  %s: node CPU %s cores, bench CPU %s cores (this machine has %d)", ph.Name, formatCores(ph.NodeCPUCores), formatCores(ph.BenchCPUCores), runtime.NumCPU())
	}
	fmt.Fprintf(&b, "\n  B..E p99 flooding / A off: x%.2f (goal: at most x2)\n", r.P99Ratio)
	if len(r.Phases) == noisyPhases {
		if f := r.Phases[phaseAFlooding].Flood; f != nil {
			fmt.Fprintf(&b, "  A (quota %d events/s): attempted %.0f/s, admitted %.0f/s (x%.3f of quota; goal within 10%%), refused %.0f/s; failed %d, cut at the end %d\n",
				f.QuotaEventsPerSec, f.AttemptedPerSec, f.AdmittedPerSec, f.AdmittedOverQuota, f.RefusedPerSec, f.Failed, f.Cut)
			for _, limit := range slices.Sorted(maps.Keys(f.RefusedByLimit)) {
				fmt.Fprintf(&b, "    refused by %s: %d events\n", limit, f.RefusedByLimit[limit])
			}
			if f.FirstError != "" {
				fmt.Fprintf(&b, "    first failure: %s\n", f.FirstError)
			}
		}
	}
	for _, n := range r.Nodes {
		hwm := "-"
		if n.HWMKiB >= 0 {
			hwm = fmt.Sprintf("%.0f MiB", float64(n.HWMKiB)/1024)
		}
		fmt.Fprintf(&b, "  node %s: RSS %.0f MiB at the start, peak %.0f MiB (sampled every %s), VmHWM %s\n",
			n.Node, float64(n.RSSStartKiB)/1024, float64(n.RSSPeakKiB)/1024, rssSampleInterval, hwm)
	}
	if r.SVG != "" {
		fmt.Fprintf(&b, "  plot: %s\n", r.SVG)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "  note: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
