//go:build unix

package proccluster

import (
	"os"
	"syscall"
	"time"
)

// terminate asks a node to stop cleanly, resuming it first if paused.
func terminate(p *os.Process) error {
	_ = p.Signal(syscall.SIGCONT)
	return p.Signal(syscall.SIGTERM)
}

// pause stops a node's execution (SIGSTOP) and returns once the kernel
// reports it stopped: the signal is delivered asynchronously, and a caller
// that probes the node right after Pause (a test, a nemesis recording when
// the fault began) must not find it still answering.
func pause(p *os.Process) error {
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		return err
	}
	return awaitStopped(p.Pid, 5*time.Second)
}

// resume continues a paused node (SIGCONT).
func resume(p *os.Process) error { return p.Signal(syscall.SIGCONT) }
