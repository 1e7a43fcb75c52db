//go:build !unix

package bench

import (
	"os"
	"syscall"
)

// childSysProcAttr: nothing to set off unix.
func childSysProcAttr() *syscall.SysProcAttr { return nil }

// terminate stops a node process; without SIGTERM it is killed.
func terminate(p *os.Process) error { return p.Kill() }

// selfCPUSeconds is unknown off unix.
func selfCPUSeconds() float64 { return -1 }
