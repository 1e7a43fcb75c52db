package partition

import "sync"

// notifier wakes every waiter when the partition's log grows. Waiters take
// the current channel and block on it; notify closes it and installs a new
// one, so a wake-up is never missed between checking the high watermark and
// waiting (take the channel first, then check).
type notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

func newNotifier() *notifier { return &notifier{ch: make(chan struct{})} }

func (n *notifier) wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ch
}

func (n *notifier) notify() {
	n.mu.Lock()
	defer n.mu.Unlock()
	close(n.ch)
	n.ch = make(chan struct{})
}
