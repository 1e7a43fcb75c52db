package bench

import (
	"bytes"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestProgressLine(t *testing.T) {
	assert.Equal(t, "produce: 12,000/20,000 events (60%), 9800 events/s", progressLine("produce", 12_000, 20_000, 9800.4))
	assert.Equal(t, "e2e: 0/0 events (0%), 0 events/s", progressLine("e2e", 0, 0, 0))
}

// lockedBuffer is a bytes.Buffer safe for the progress goroutine and the
// test to use together.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestProgressCountsAndStops(t *testing.T) {
	var out lockedBuffer
	p := startProgress(&out, "x", 10)
	p.add(4)
	p.add(6)
	p.stop() // goleak (TestMain) checks its goroutine is gone
	assert.Equal(t, int64(10), p.done.Load())

	quiet := startProgress(nil, "x", 1)
	quiet.add(1)
	quiet.stop()
	assert.Equal(t, int64(1), quiet.done.Load())
}
