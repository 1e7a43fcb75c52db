package server

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// errWSSlowConsumer: the send queue stayed full, the writer taking
// nothing, for the slow-consumer timeout.
var errWSSlowConsumer = errors.New("server: websocket client too slow: its send queue stayed full")

// errWSQueueClosed: the connection is closing.
var errWSQueueClosed = errors.New("server: websocket connection closing")

// errWSQueueFull: a frame put without waiting found no room.
var errWSQueueFull = errors.New("server: websocket send queue full")

// wsFrame is one text message waiting to be written, with its type for
// the metrics.
type wsFrame struct {
	typ  string
	data []byte
}

// wsSendQueue is one connection's bounded send queue: many producers (the
// connection's subscriptions, publishes and reader put frames), one
// consumer (its writer takes them). It holds at most framesMax frames and
// bytesMax bytes, except that an empty queue takes one frame of any size.
// Safe for concurrent use.
type wsSendQueue struct {
	framesMax int
	bytesMax  int
	// bytesGauge follows the bytes queued (summed over connections).
	bytesGauge prometheus.Gauge

	mu struct {
		sync.Mutex
		frames []wsFrame
		bytes  int
		closed bool
		// writing is set while a writer runs: put starts one when it
		// queues a frame and none runs; take clears it when it finds the
		// queue empty (both under mu, so no frame is left unwritten).
		writing bool
		// room is closed (and replaced) whenever the writer takes a frame.
		room chan struct{}
	}
}

func newWSSendQueue(framesMax, bytesMax int, bytesGauge prometheus.Gauge) *wsSendQueue {
	q := &wsSendQueue{framesMax: framesMax, bytesMax: bytesMax, bytesGauge: bytesGauge}
	q.mu.room = make(chan struct{})
	return q
}

// put queues f and, when no writer runs, calls startWriter (which must
// start one, without blocking or touching the queue). Without room it returns errWSQueueFull when wait is zero;
// otherwise it waits until the writer makes room, returning
// errWSSlowConsumer if the writer takes nothing for wait, or ctx's cause.
func (q *wsSendQueue) put(ctx context.Context, f wsFrame, wait time.Duration, startWriter func()) error {
	var timer *time.Timer
	for {
		q.mu.Lock()
		if q.mu.closed {
			q.mu.Unlock()
			return errWSQueueClosed
		}
		n := len(q.mu.frames)
		if n == 0 || (n < q.framesMax && q.mu.bytes+len(f.data) <= q.bytesMax) {
			q.mu.frames = append(q.mu.frames, f)
			q.mu.bytes += len(f.data)
			if !q.mu.writing {
				// Under mu: once close has returned, no writer starts.
				q.mu.writing = true
				startWriter()
			}
			q.mu.Unlock()
			q.bytesGauge.Add(float64(len(f.data)))
			return nil
		}
		room := q.mu.room
		q.mu.Unlock()
		if wait == 0 {
			return errWSQueueFull
		}
		if timer == nil {
			timer = time.NewTimer(wait)
			defer timer.Stop()
		}
		select {
		case <-room:
			// The writer moved: the client is reading; wait afresh.
			timer.Reset(wait)
		case <-timer.C:
			return errWSSlowConsumer
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// take removes the oldest frame; ok is false when the queue is empty, and
// then the writer must end (the next put starts another). Only the writer
// calls it.
func (q *wsSendQueue) take() (f wsFrame, ok bool) {
	q.mu.Lock()
	if len(q.mu.frames) == 0 {
		q.mu.writing = false
		q.mu.Unlock()
		return wsFrame{}, false
	}
	f = q.mu.frames[0]
	q.mu.frames[0] = wsFrame{}
	q.mu.frames = q.mu.frames[1:]
	if len(q.mu.frames) == 0 {
		q.mu.frames = nil // an idle connection keeps no backing array
	}
	q.mu.bytes -= len(f.data)
	close(q.mu.room)
	q.mu.room = make(chan struct{})
	q.mu.Unlock()
	q.bytesGauge.Sub(float64(len(f.data)))
	return f, true
}

// close empties the queue and refuses further frames; it returns how many
// frames it dropped.
func (q *wsSendQueue) close() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.mu.closed {
		return 0
	}
	q.mu.closed = true
	dropped := len(q.mu.frames)
	q.bytesGauge.Sub(float64(q.mu.bytes))
	q.mu.frames, q.mu.bytes = nil, 0
	close(q.mu.room)
	return dropped
}
