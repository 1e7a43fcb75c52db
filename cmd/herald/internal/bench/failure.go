package bench

import (
	"context"
	"sync"
)

// firstFailure keeps the first error of a group of goroutines and cancels
// their context when it is set. Safe for concurrent use.
type firstFailure struct {
	cancel context.CancelFunc

	mu struct {
		sync.Mutex
		err error
	}
}

// set records err if it is the first, and cancels the group.
func (f *firstFailure) set(err error) {
	f.mu.Lock()
	first := f.mu.err == nil
	if first {
		f.mu.err = err
	}
	f.mu.Unlock()
	if first {
		f.cancel()
	}
}

// err returns the first error set, or nil.
func (f *firstFailure) err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.err
}
