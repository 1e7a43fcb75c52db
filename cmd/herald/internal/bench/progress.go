package bench

import (
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// progressInterval is how often the progress line is printed.
const progressInterval = time.Second

// progress prints "label: done/total events (pct), rate ev/s" to w about
// once a second while a phase runs. Workers add to done concurrently;
// start and stop are called by the phase's owner, stop once, after start.
// Its one goroutine is owned by the progress and ends in stop.
type progress struct {
	done  atomic.Int64
	label string
	total int64
	w     io.Writer

	quit chan struct{}
	exit chan struct{}
}

// startProgress starts printing; w nil prints nothing.
func startProgress(w io.Writer, label string, total int64) *progress {
	p := &progress{label: label, total: total, w: w, quit: make(chan struct{}), exit: make(chan struct{})}
	if w == nil {
		close(p.exit)
		return p
	}
	go p.loop()
	return p
}

// add counts n more events done; safe for concurrent use.
func (p *progress) add(n int64) { p.done.Add(n) }

// stop ends the printing goroutine and waits for it.
func (p *progress) stop() {
	close(p.quit)
	<-p.exit
}

func (p *progress) loop() {
	defer close(p.exit)
	tick := time.NewTicker(progressInterval)
	defer tick.Stop()
	last, lastAt := int64(0), time.Now()
	for {
		select {
		case <-p.quit:
			return
		case now := <-tick.C:
			done := p.done.Load()
			rate := float64(done-last) / now.Sub(lastAt).Seconds()
			last, lastAt = done, now
			fmt.Fprintln(p.w, progressLine(p.label, done, p.total, rate))
		}
	}
}

// progressLine renders one progress line.
func progressLine(label string, done, total int64, rate float64) string {
	pct := 0.0
	if total > 0 {
		pct = 100 * float64(done) / float64(total)
	}
	return fmt.Sprintf("%s: %s/%s events (%.0f%%), %.0f events/s", label, formatCount(done), formatCount(total), pct, rate)
}
