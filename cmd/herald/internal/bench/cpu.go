package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
)

// clockTicksPerSecond is Linux's USER_HZ, the unit of utime and stime in
// /proc/<pid>/stat. It is 100 on every architecture Go supports on Linux
// (sysconf(_SC_CLK_TCK) would need cgo to ask).
const clockTicksPerSecond = 100

// metricsBytesMax bounds one /metrics body read.
const metricsBytesMax = 8 << 20

// cpuMeter reads the CPU seconds a set of node processes have used so
// far; a run reads it before and after its timed phase. Implementations
// are safe for concurrent use.
type cpuMeter interface {
	cpuSeconds(ctx context.Context) (float64, error)
}

// procCPU reads utime+stime of processes from /proc (Linux): every thread
// of each process, children not included.
type procCPU struct{ pids []int }

var _ cpuMeter = procCPU{}

func (m procCPU) cpuSeconds(context.Context) (float64, error) {
	var total float64
	for _, pid := range m.pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, fmt.Errorf("bench: cpu of pid %d: %w", pid, err)
		}
		ticks, err := parseProcStatTicks(string(b))
		if err != nil {
			return 0, fmt.Errorf("bench: cpu of pid %d: %w", pid, err)
		}
		total += float64(ticks) / clockTicksPerSecond
	}
	return total, nil
}

// parseProcStatTicks returns utime+stime (fields 14 and 15) of a
// /proc/<pid>/stat line. The command name (field 2) is in parentheses
// and may hold spaces and parentheses, so fields are counted from the
// last ')'.
func parseProcStatTicks(stat string) (uint64, error) {
	end := strings.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, errors.New("malformed /proc stat: no ')'")
	}
	fields := strings.Fields(stat[end+1:])
	// fields[0] is field 3 (state), so field n is fields[n-3].
	const utimeField, stimeField = 14, 15
	if len(fields) < stimeField-2 {
		return 0, fmt.Errorf("malformed /proc stat: %d fields after the name", len(fields))
	}
	utime, err := strconv.ParseUint(fields[utimeField-3], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("malformed /proc stat utime: %w", err)
	}
	stime, err := strconv.ParseUint(fields[stimeField-3], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("malformed /proc stat stime: %w", err)
	}
	return utime + stime, nil
}

// metricsCPU sums process_cpu_seconds_total from each node's /metrics.
type metricsCPU struct {
	httpAddrs []string
	client    *http.Client
}

var _ cpuMeter = metricsCPU{}

func (m metricsCPU) cpuSeconds(ctx context.Context) (float64, error) {
	var total float64
	for _, addr := range m.httpAddrs {
		v, err := m.scrape(ctx, addr)
		if err != nil {
			return 0, err
		}
		total += v
	}
	return total, nil
}

func (m metricsCPU) scrape(ctx context.Context, addr string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return 0, fmt.Errorf("bench: metrics of %s: %w", addr, err)
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("bench: metrics of %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("bench: metrics of %s: %s", addr, resp.Status)
	}
	v, err := parseProcessCPU(io.LimitReader(resp.Body, metricsBytesMax))
	if err != nil {
		return 0, fmt.Errorf("bench: metrics of %s: %w", addr, err)
	}
	return v, nil
}

// parseProcessCPU finds process_cpu_seconds_total in a Prometheus text
// exposition.
func parseProcessCPU(r io.Reader) (float64, error) {
	return parseMetricValue(r, "process_cpu_seconds_total")
}

// parseMetricValue returns the value of the first sample of metric name
// in a Prometheus text exposition.
func parseMetricValue(r io.Reader, name string) (float64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		if i := strings.LastIndexByte(rest, '}'); i >= 0 {
			rest = rest[i+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return 0, fmt.Errorf("%s has no value", name)
		}
		return strconv.ParseFloat(fields[0], 64)
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s in /metrics", name)
}

// cpuWindow measures a meter across a phase: begin before, end after.
type cpuWindow struct {
	meter  cpuMeter
	note   string // why the node CPU is unknown, when meter is nil
	before float64
	self   float64 // this process's CPU at begin; negative when unknown
	err    error
}

// begin samples the meter and this process.
func (w *cpuWindow) begin(ctx context.Context) {
	w.self = selfCPUSeconds()
	if w.meter == nil {
		return
	}
	w.before, w.err = w.meter.cpuSeconds(ctx)
}

// end returns the node CPU seconds used since begin (negative when
// unknown, with the reason) and this process's.
func (w *cpuWindow) end(ctx context.Context) (nodeSeconds float64, note string, selfSeconds float64) {
	selfSeconds = -1
	if w.self >= 0 {
		if now := selfCPUSeconds(); now >= 0 {
			selfSeconds = now - w.self
		}
	}
	if w.meter == nil {
		return cpuUnknown, w.note, selfSeconds
	}
	if w.err != nil {
		return cpuUnknown, w.err.Error(), selfSeconds
	}
	after, err := w.meter.cpuSeconds(ctx)
	if err != nil {
		return cpuUnknown, err.Error(), selfSeconds
	}
	return after - w.before, "", selfSeconds
}
