package bench

import (
	"bytes"
	"fmt"
	"html"
	"math"
	"os"
	"strings"
)

// The plot's geometry, in SVG user units (pixels).
const (
	svgWidth       = 960
	svgHeight      = 680
	svgLeft        = 80 // room for the y labels
	svgRight       = 30
	svgTopPanelY   = 110
	svgPanelHeight = 210
	svgPanelGap    = 90
)

// writeNoisySVG writes the run's plot to path: on top, B..E's p99 (and
// p50) acknowledgement latency per second on a log scale; below, A's
// admitted events per second against its quota; both over the two phases,
// split by a line where A starts flooding.
func writeNoisySVG(path string, res *NoisyResult) error {
	if err := os.WriteFile(path, renderNoisySVG(res), 0o644); err != nil {
		return fmt.Errorf("bench: writing the plot: %w", err)
	}
	return nil
}

// svgPanel maps x from 0 to xMax (seconds of the noisy-tenant run,
// replicas per node in the scale plot) and a value range onto one panel.
type svgPanel struct {
	top, height float64
	xMax        int
	lo, hi      float64 // value range (log10 of it when log)
	log         bool
}

func (p svgPanel) x(v float64) float64 {
	return svgLeft + v/float64(max(p.xMax, 1))*(svgWidth-svgLeft-svgRight)
}

func (p svgPanel) y(v float64) float64 {
	if p.log {
		v = math.Log10(max(v, 1e-9))
	}
	f := (v - p.lo) / (p.hi - p.lo)
	f = min(max(f, 0), 1)
	return p.top + p.height*(1-f)
}

// renderNoisySVG draws the plot.
func renderNoisySVG(res *NoisyResult) []byte {
	var b bytes.Buffer
	n := len(res.Seconds)
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		svgWidth, svgHeight, svgWidth, svgHeight)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", svgWidth, svgHeight)
	text := func(x, y float64, anchor, style, s string) {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="%s" %s>%s</text>`+"\n", x, y, anchor, style, html.EscapeString(s))
	}
	title := "herald bench noisy-tenant"
	if res.Cluster != "" {
		title += fmt.Sprintf(" (%s cluster, topic of %d partitions x%d, ordering none)", res.Cluster, res.Partitions, res.Replication)
	}
	text(svgLeft, 24, "start", `font-size="16" font-weight="bold"`, title)
	if len(res.Phases) == noisyPhases {
		off, on := res.Phases[phaseAOff].Steady.Latency, res.Phases[phaseAFlooding].Steady.Latency
		line := fmt.Sprintf("B..E (%g events/s each): p99 %s with A off, %s with A flooding (x%.2f)", res.SteadyRate, formatMs(off.P99), formatMs(on.P99), res.P99Ratio)
		if f := res.Phases[phaseAFlooding].Flood; f != nil {
			line += fmt.Sprintf("; A admitted %.0f events/s against a quota of %d (x%.2f)", f.AdmittedPerSec, f.QuotaEventsPerSec, f.AdmittedOverQuota)
		}
		text(svgLeft, 48, "start", `fill="#333"`, line)
	}

	// Top panel: latency, log scale over whole decades.
	loMs, hiMs := math.Inf(1), 0.0
	for _, s := range res.Seconds {
		if s.SteadyAck > 0 {
			loMs, hiMs = min(loMs, s.SteadyP50, s.SteadyP99), max(hiMs, s.SteadyP99)
		}
	}
	if hiMs == 0 {
		loMs, hiMs = 1, 10
	}
	lat := svgPanel{top: svgTopPanelY, height: svgPanelHeight, xMax: n, log: true,
		lo: math.Floor(math.Log10(max(loMs, 0.001))), hi: math.Ceil(math.Log10(max(hiMs, 0.001)))}
	if lat.hi <= lat.lo {
		lat.hi = lat.lo + 1
	}
	frame(&b, lat, "B..E acknowledgement latency per second (ms, log scale; by scheduled send time)")
	for d := lat.lo; d <= lat.hi; d++ {
		v := math.Pow(10, d)
		y := lat.y(v)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", svgLeft, y, svgWidth-svgRight, y)
		text(svgLeft-6, y+4, "end", "", strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.3f", v), "0"), "."))
	}
	polyline(&b, lat, res.Seconds, func(s NoisySecond) (float64, bool) { return s.SteadyP50, s.SteadyAck > 0 }, "#9ecae1", "")
	polyline(&b, lat, res.Seconds, func(s NoisySecond) (float64, bool) { return s.SteadyP99, s.SteadyAck > 0 }, "#08519c", "")
	legend(&b, svgWidth-svgRight-250, svgTopPanelY+14, "#08519c", "", "p99")
	legend(&b, svgWidth-svgRight-170, svgTopPanelY+14, "#9ecae1", "", "p50")

	// Bottom panel: A's admitted rate against its quota, linear.
	var quota float64
	if len(res.Phases) == noisyPhases && res.Phases[phaseAFlooding].Flood != nil {
		quota = float64(res.Phases[phaseAFlooding].Flood.QuotaEventsPerSec)
	}
	peak := quota
	for _, s := range res.Seconds {
		peak = max(peak, float64(s.AAdmitted))
	}
	rate := svgPanel{top: svgTopPanelY + svgPanelHeight + svgPanelGap, height: svgPanelHeight, xMax: n, lo: 0, hi: niceCeil(peak * 1.15)}
	frame(&b, rate, "A: admitted events per second (attempted: see the JSON), and its quota")
	for i := 0; i <= 4; i++ {
		v := rate.hi * float64(i) / 4
		y := rate.y(v)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", svgLeft, y, svgWidth-svgRight, y)
		text(svgLeft-6, y+4, "end", "", formatCount(int64(v)))
	}
	if quota > 0 {
		y := rate.y(quota)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#d62728" stroke-dasharray="6 4"/>`+"\n", svgLeft, y, svgWidth-svgRight, y)
	}
	polyline(&b, rate, res.Seconds, func(s NoisySecond) (float64, bool) { return float64(s.AAdmitted), true }, "#ff7f0e", "")
	legend(&b, svgWidth-svgRight-250, rate.top+14, "#ff7f0e", "", "A admitted/s")
	legend(&b, svgWidth-svgRight-130, rate.top+14, "#d62728", `stroke-dasharray="6 4"`, "A's quota")

	// The phases, across both panels, and the time axis.
	if n > 0 {
		split := lat.x(float64(n) / 2)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%.1f" stroke="#555" stroke-dasharray="2 3"/>`+"\n", split, svgTopPanelY, split, rate.top+rate.height)
		text((svgLeft+split)/2, svgTopPanelY-8, "middle", `font-weight="bold"`, "A off")
		text((split+svgWidth-svgRight)/2, svgTopPanelY-8, "middle", `font-weight="bold"`, "A flooding")
	}
	step := max(1, n/10)
	for s := 0; s <= n; s += step {
		x := rate.x(float64(s))
		text(x, rate.top+rate.height+16, "middle", "", fmt.Sprintf("%ds", s))
	}
	text(float64(svgLeft+svgWidth-svgRight)/2, rate.top+rate.height+36, "middle", `fill="#333"`, "seconds since the start of the run")
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// frame draws a panel's box and title.
func frame(b *bytes.Buffer, p svgPanel, title string) {
	fmt.Fprintf(b, `<rect x="%d" y="%.1f" width="%d" height="%.1f" fill="none" stroke="#999"/>`+"\n", svgLeft, p.top, svgWidth-svgLeft-svgRight, p.height)
	fmt.Fprintf(b, `<text x="%d" y="%.1f">%s</text>`+"\n", svgLeft, p.top-28, html.EscapeString(title))
}

// polyline draws value per second at the middle of each second; a second
// without a value breaks the line.
func polyline(b *bytes.Buffer, p svgPanel, seconds []NoisySecond, value func(NoisySecond) (float64, bool), colour, style string) {
	var pts []string
	flush := func() {
		if len(pts) > 0 {
			fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="2" %s points="%s"/>`+"\n", colour, style, strings.Join(pts, " "))
		}
		pts = pts[:0]
	}
	for _, s := range seconds {
		v, ok := value(s)
		if !ok {
			flush()
			continue
		}
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", p.x(float64(s.Second)+0.5), p.y(v)))
	}
	flush()
}

// legend draws one legend entry: a short line and its label.
func legend(b *bytes.Buffer, x, y float64, colour, style, label string) {
	fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2" %s/>`+"\n", x, y-4, x+24, y-4, colour, style)
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", x+30, y, html.EscapeString(label))
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (at least 1).
func niceCeil(v float64) float64 {
	if v <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}
