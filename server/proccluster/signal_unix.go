//go:build unix

package proccluster

import (
	"os"
	"syscall"
)

// terminate asks a node to stop cleanly, resuming it first if paused.
func terminate(p *os.Process) error {
	_ = p.Signal(syscall.SIGCONT)
	return p.Signal(syscall.SIGTERM)
}

// pause stops a node's execution (SIGSTOP); resume continues it.
func pause(p *os.Process) error  { return p.Signal(syscall.SIGSTOP) }
func resume(p *os.Process) error { return p.Signal(syscall.SIGCONT) }
