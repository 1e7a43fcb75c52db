package bench

import (
	"bytes"
	"fmt"
	"html"
	"os"
	"strings"
)

// The scale plot's goals (issue 15, at 1,000 replicas per node), drawn as
// dashed lines.
const (
	scaleGoalClusterCPUPercent = 10
	scaleGoalRSSPerReplicaKiB  = 256
)

// writeScaleSVG writes the run's plot to path: on top the idle cluster's
// CPU (% of one core) against replicas per node, below the memory per
// replica; each with the goal.
func writeScaleSVG(path string, res *ScaleResult) error {
	if err := os.WriteFile(path, renderScaleSVG(res), 0o644); err != nil {
		return fmt.Errorf("bench: writing the plot: %w", err)
	}
	return nil
}

// scalePoint is one step on the plot.
type scalePoint struct {
	replicas int
	value    float64
	label    string
	reached  bool
}

// renderScaleSVG draws the plot (the geometry and helpers of
// noisy_svg.go).
func renderScaleSVG(res *ScaleResult) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		svgWidth, svgHeight, svgWidth, svgHeight)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", svgWidth, svgHeight)
	text := func(x, y float64, anchor, style, s string) {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="%s" %s>%s</text>`+"\n", x, y, anchor, style, html.EscapeString(s))
	}
	text(svgLeft, 24, "start", `font-size="16" font-weight="bold"`,
		fmt.Sprintf("herald bench scale (%s cluster of 3 nodes, topics of at most %d partitions x%d)", res.Cluster, res.TopicPartitions, res.Replication))
	line := fmt.Sprintf("idle window %gs after %gs of settling per step", res.IdleS, res.SettleS)
	if x := res.Restart; x != nil {
		line += fmt.Sprintf("; restart of %s with %d replicas: /readyz %s, caught up %s", x.Node, x.Replicas, formatSeconds(x.ReadyzS), formatSeconds(x.CaughtUpS))
	}
	text(svgLeft, 48, "start", `fill="#333"`, line)

	xMax := 1
	cpu := []scalePoint{{replicas: 0, value: res.Baseline.ClusterCPUPercent, label: "baseline", reached: true}}
	var rss []scalePoint
	for _, s := range res.Steps {
		xMax = max(xMax, s.ReplicasPerNode)
		cpu = append(cpu, scalePoint{replicas: s.ReplicasPerNode, value: s.ClusterCPUPercent,
			label: fmt.Sprintf("%.2f ms/s per replica", s.CPUPerReplicaMsPerS), reached: s.Reached})
		rss = append(rss, scalePoint{replicas: s.ReplicasPerNode, value: s.RSSPerReplicaKiB,
			label: fmt.Sprintf("%.0f KiB", s.RSSPerReplicaKiB), reached: s.Reached})
	}
	xMax = int(niceCeil(float64(xMax)))

	peak := func(points []scalePoint, goal float64) float64 {
		hi := goal
		for _, p := range points {
			hi = max(hi, p.value)
		}
		return niceCeil(hi * 1.15)
	}
	top := svgPanel{top: svgTopPanelY, height: svgPanelHeight, xMax: xMax, hi: peak(cpu, scaleGoalClusterCPUPercent)}
	frame(&b, top, "Idle CPU of the cluster (% of one core, three nodes together); labels: above the baseline, per replica")
	bottom := svgPanel{top: svgTopPanelY + svgPanelHeight + svgPanelGap, height: svgPanelHeight, xMax: xMax, hi: peak(rss, scaleGoalRSSPerReplicaKiB)}
	frame(&b, bottom, "Resident memory per replica (KiB: each node's RSS above the empty cluster over its replicas, mean of the nodes)")
	for _, p := range []struct {
		panel svgPanel
		unit  string
		goal  float64
		pts   []scalePoint
		color string
	}{
		{top, "%", scaleGoalClusterCPUPercent, cpu, "#08519c"},
		{bottom, " KiB", scaleGoalRSSPerReplicaKiB, rss, "#ff7f0e"},
	} {
		for i := 0; i <= 4; i++ {
			v := p.panel.hi * float64(i) / 4
			y := p.panel.y(v)
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", svgLeft, y, svgWidth-svgRight, y)
			text(svgLeft-6, y+4, "end", "", strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")+p.unit)
		}
		gy := p.panel.y(p.goal)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#d62728" stroke-dasharray="6 4"/>`+"\n", svgLeft, gy, svgWidth-svgRight, gy)
		var pts []string
		for _, pt := range p.pts {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", p.panel.x(float64(pt.replicas)), p.panel.y(pt.value)))
		}
		if len(pts) > 0 {
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", p.color, strings.Join(pts, " "))
		}
		for _, pt := range p.pts {
			x, y := p.panel.x(float64(pt.replicas)), p.panel.y(pt.value)
			fill := p.color
			if !pt.reached {
				fill = "white" // hollow: the step was not reached
			}
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="4" fill="%s" stroke="%s" stroke-width="2"/>`+"\n", x, y, fill, p.color)
			if x > svgWidth-svgRight-200 { // near the right edge: the label goes left of the point
				text(x-6, y-8, "end", `fill="#333" font-size="11"`, pt.label)
			} else {
				text(x+6, y-8, "start", `fill="#333" font-size="11"`, pt.label)
			}
		}
		legend(&b, svgWidth-svgRight-170, p.panel.top+14, "#d62728", `stroke-dasharray="6 4"`, "goal at 1,000/node")
		for i := 0; i <= 4; i++ {
			v := float64(xMax) * float64(i) / 4
			text(p.panel.x(v), p.panel.top+p.panel.height+16, "middle", "", formatCount(int64(v)))
		}
	}
	text(float64(svgLeft+svgWidth-svgRight)/2, bottom.top+bottom.height+36, "middle", `fill="#333"`,
		"partition replicas per node (hollow: step not reached within --step-timeout)")
	b.WriteString("</svg>\n")
	return b.Bytes()
}
