package jepsen

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Summary is the one-line outcome of a run.
type Summary struct {
	Operations   int      `json:"operations"`   // produced events and read ops completed
	Acknowledged int      `json:"acknowledged"` // events acknowledged
	Failed       int      `json:"failed"`       // events definitely not written
	Unknown      int      `json:"unknown"`      // events with an unknown outcome
	Reads        int      `json:"reads"`        // read ops (ok or failed), final reads included
	Faults       int      `json:"faults"`       // faults injected
	Violations   int      `json:"violations"`   // summed over the checkers
	Failing      []string `json:"failing,omitempty"`
	// SubscribedEvents counts the events delivered to subscribers,
	// SubscribeReconnects the streams they opened after their first.
	SubscribedEvents    int `json:"subscribed_events,omitempty"`
	SubscribeReconnects int `json:"subscribe_reconnects,omitempty"`
}

// Summarize counts h and the verdicts.
func Summarize(h History, verdicts []Verdict) Summary {
	var s Summary
	for _, op := range h {
		switch {
		case isProduce(op) && op.Type == TypeOK:
			s.Acknowledged += op.events()
		case isProduce(op) && op.Type == TypeFail:
			s.Failed += op.events()
		case isProduce(op) && op.Type == TypeInfo:
			s.Unknown += op.events()
		case op.F == FRead || op.F == FFinalRead:
			s.Reads++
		case op.F == FFault && op.Error == "":
			s.Faults++
		case op.F == FSubscribe:
			s.SubscribedEvents += len(op.Events)
		case op.F == FSubscribeOpen && op.Conn > 1:
			s.SubscribeReconnects++
		}
	}
	s.Operations = s.Acknowledged + s.Failed + s.Unknown + s.Reads
	for _, v := range verdicts {
		s.Violations += v.Violations
		if !v.OK() {
			s.Failing = append(s.Failing, v.Name)
		}
	}
	return s
}

// isProduce reports whether op is a produce or a produce batch completion.
func isProduce(op Op) bool { return op.F == FProduce || op.F == FProduceBatch }

// String is the summary line the CLI prints last.
func (s Summary) String() string {
	verdict := "PASS"
	if len(s.Failing) > 0 {
		verdict = "FAIL (" + strings.Join(s.Failing, ", ") + ")"
	}
	subscribed := ""
	if s.SubscribedEvents > 0 || s.SubscribeReconnects > 0 {
		subscribed = fmt.Sprintf(", %d events to subscribers (%d reconnects)", s.SubscribedEvents, s.SubscribeReconnects)
	}
	return fmt.Sprintf("jepsen: %s: %d operations, %d acknowledged events (%d failed, %d unknown), %d reads%s, %d faults injected, %d violations",
		verdict, s.Operations, s.Acknowledged, s.Failed, s.Unknown, s.Reads, subscribed, s.Faults, s.Violations)
}

// WriteVerdicts prints one line per checker and its counterexamples.
func WriteVerdicts(w io.Writer, verdicts []Verdict) {
	for _, v := range verdicts {
		line := fmt.Sprintf("%-24s %-7s violations=%d", v.Name, v.Status, v.Violations)
		if v.Note != "" {
			line += "  (" + v.Note + ")"
		}
		fmt.Fprintln(w, line)
		for _, c := range v.Counterexamples {
			fmt.Fprintln(w, "    "+c)
		}
		if v.Violations > len(v.Counterexamples) {
			fmt.Fprintf(w, "    ... and %d more\n", v.Violations-len(v.Counterexamples))
		}
	}
}

// Report is the content of verdict.json and the input of WriteReport.
// Version note: fields are only ever added.
type Report struct {
	Seed     uint64    `json:"seed"`
	Nodes    int       `json:"nodes"`
	Duration string    `json:"duration"`
	Nemeses  []string  `json:"nemeses"`
	Summary  Summary   `json:"summary"`
	Verdicts []Verdict `json:"verdicts"`
	// Mode is the workload mode; Paths the rare code paths the nodes took.
	Mode  string     `json:"mode,omitempty"`
	Paths PathCounts `json:"paths,omitempty"`
}

// writeOutputs writes verdict.json and report.html into dir.
func writeOutputs(dir string, opts Options, h History, verdicts []Verdict, sum Summary, paths PathCounts) error {
	vf := Report{Seed: opts.Seed, Nodes: opts.Nodes, Duration: opts.Duration.String(), Nemeses: opts.Nemeses, Summary: sum, Verdicts: verdicts, Mode: opts.Mode, Paths: paths}
	b, err := json.MarshalIndent(vf, "", "  ")
	if err != nil {
		return fmt.Errorf("jepsen: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "verdict.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("jepsen: %w", err)
	}
	f, err := os.Create(filepath.Join(dir, "report.html"))
	if err != nil {
		return fmt.Errorf("jepsen: %w", err)
	}
	if err := WriteReport(f, vf, h); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// Plot geometry of the report (pixels).
const (
	plotWidth, plotHeight = 960, 200
	plotMarginLeft        = 60
	plotMarginBottom      = 24
)

// WriteReport writes a self-contained HTML page: the summary, the
// verdicts, and timelines (acknowledged produces per second; produce
// latency, mean and max per second; with subscribers, events delivered
// to them and their reconnects per second) with the fault windows
// shaded, as inline SVG.
func WriteReport(w io.Writer, vf Report, h History) error {
	var end int64
	for _, op := range h {
		end = max(end, op.Time, op.End)
	}
	seconds := int(end/int64(time.Second)) + 1
	acks := make([]float64, seconds)
	latSum := make([]float64, seconds)
	latMax := make([]float64, seconds)
	infos := make([]float64, seconds)
	sends := make([]float64, seconds) // acknowledged Sends (a batch is one)
	delivered := make([]float64, seconds)
	reconnects := make([]float64, seconds)
	var faults []Op
	for _, op := range h {
		sec := int(op.Time / int64(time.Second))
		switch {
		case isProduce(op) && op.Type == TypeOK:
			acks[sec] += float64(op.events())
			ms := float64(op.LatencyNs) / 1e6
			latSum[sec] += ms
			latMax[sec] = max(latMax[sec], ms)
			sends[sec]++
		case isProduce(op) && (op.Type == TypeInfo || op.Type == TypeFail):
			infos[sec] += float64(op.events())
		case op.F == FFault:
			faults = append(faults, op)
		case op.F == FSubscribe:
			delivered[sec] += float64(len(op.Events))
		case op.F == FSubscribeOpen && op.Conn > 1:
			reconnects[sec]++
		}
	}
	latMean := make([]float64, seconds)
	for i := range latMean {
		if sends[i] > 0 {
			latMean[i] = latSum[i] / sends[i]
		}
	}
	var b strings.Builder
	b.WriteString("<!doctype html><html><head><meta charset=\"utf-8\"><title>Herald jepsen report</title>")
	b.WriteString("<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:left}.pass{color:#080}.fail{color:#c00}.unknown{color:#a60}.skipped{color:#888}pre{white-space:pre-wrap}</style></head><body>")
	fmt.Fprintf(&b, "<h1>Herald jepsen report</h1><p>seed %d, %d nodes, duration %s, nemeses %s</p>", vf.Seed, vf.Nodes, html.EscapeString(vf.Duration), html.EscapeString(strings.Join(vf.Nemeses, ",")))
	fmt.Fprintf(&b, "<p><b>%s</b></p>", html.EscapeString(vf.Summary.String()))
	if vf.Mode != "" {
		fmt.Fprintf(&b, "<p>%s mode; paths taken: %s</p>", html.EscapeString(vf.Mode), html.EscapeString(vf.Paths.String()))
	}
	b.WriteString("<h2>Verdicts</h2><table><tr><th>checker</th><th>status</th><th>violations</th><th>note / counterexamples</th></tr>")
	for _, v := range vf.Verdicts {
		fmt.Fprintf(&b, "<tr><td>%s</td><td class=%q>%s</td><td>%d</td><td>%s<pre>%s</pre></td></tr>", v.Name, v.Status, v.Status, v.Violations,
			html.EscapeString(v.Note), html.EscapeString(strings.Join(v.Counterexamples, "\n")))
	}
	b.WriteString("</table><h2>Timeline</h2><p>Shaded: fault windows (hover for the fault). Time in seconds from the start.</p>")
	b.WriteString("<h3>Acknowledged produces per second (blue), failed or unknown (red)</h3>")
	writePlot(&b, seconds, faults, []series{{acks, "#2563eb"}, {infos, "#dc2626"}})
	b.WriteString("<h3>Produce latency per second, ms: mean (blue), max (orange)</h3>")
	writePlot(&b, seconds, faults, []series{{latMean, "#2563eb"}, {latMax, "#ea580c"}})
	if vf.Summary.SubscribedEvents > 0 {
		b.WriteString("<h3>Events delivered to subscribers per second</h3>")
		writePlot(&b, seconds, faults, []series{{delivered, "#16a34a"}})
		b.WriteString("<h3>Subscriber reconnects per second</h3>")
		writePlot(&b, seconds, faults, []series{{reconnects, "#dc2626"}})
	}
	b.WriteString("<h2>Faults</h2><table><tr><th>start s</th><th>end s</th><th>fault</th><th>targets</th><th>error</th></tr>")
	for _, f := range faults {
		fmt.Fprintf(&b, "<tr><td>%.1f</td><td>%.1f</td><td>%s</td><td>%s</td><td>%s</td></tr>", float64(f.Time)/1e9, float64(f.End)/1e9,
			html.EscapeString(f.Fault), html.EscapeString(f.Targets), html.EscapeString(f.Error))
	}
	b.WriteString("</table></body></html>\n")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("jepsen: report: %w", err)
	}
	return nil
}

// series is one polyline of a plot.
type series struct {
	values []float64
	color  string
}

// writePlot draws the series over seconds with the fault windows shaded.
func writePlot(b *strings.Builder, seconds int, faults []Op, lines []series) {
	top := 1.0
	for _, s := range lines {
		if len(s.values) > 0 {
			top = max(top, slices.Max(s.values))
		}
	}
	inner := float64(plotWidth - plotMarginLeft)
	x := func(t float64) float64 { return plotMarginLeft + t/float64(max(seconds, 1))*inner }
	y := func(v float64) float64 { return float64(plotHeight-plotMarginBottom) * (1 - v/top) }
	fmt.Fprintf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" style=\"border:1px solid #ccc\">", plotWidth, plotHeight)
	for _, f := range faults {
		x0, x1 := x(float64(f.Time)/1e9), x(float64(f.End)/1e9)
		fmt.Fprintf(b, "<rect x=\"%.1f\" y=\"0\" width=\"%.1f\" height=\"%d\" fill=\"#f59e0b\" fill-opacity=\"0.25\"><title>%s %s</title></rect>",
			x0, max(x1-x0, 1), plotHeight-plotMarginBottom, html.EscapeString(f.Fault), html.EscapeString(f.Targets))
	}
	fmt.Fprintf(b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#000\"/>", plotMarginLeft, plotHeight-plotMarginBottom, plotWidth, plotHeight-plotMarginBottom)
	fmt.Fprintf(b, "<text x=\"4\" y=\"12\" font-size=\"11\">%.0f</text><text x=\"4\" y=\"%d\" font-size=\"11\">0</text>", top, plotHeight-plotMarginBottom)
	step := max(seconds/10, 1)
	for s := 0; s <= seconds; s += step {
		fmt.Fprintf(b, "<text x=\"%.1f\" y=\"%d\" font-size=\"11\">%d</text>", x(float64(s)), plotHeight-6, s)
	}
	for _, s := range lines {
		var pts []string
		for i, v := range s.values {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(float64(i)+0.5), y(v)))
		}
		fmt.Fprintf(b, "<polyline fill=\"none\" stroke=%q stroke-width=\"1.5\" points=\"%s\"/>", s.color, strings.Join(pts, " "))
	}
	b.WriteString("</svg>")
}
