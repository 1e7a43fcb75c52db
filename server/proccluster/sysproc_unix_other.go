//go:build unix && !linux

package proccluster

import (
	"syscall"
	"time"
)

// sysProcAttr puts a node in its own process group, so that a terminal's
// Ctrl-C reaches only its parent, which then stops the nodes in order.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// awaitStopped cannot observe the stop here; SIGSTOP takes effect promptly.
func awaitStopped(int, time.Duration) error { return nil }
