//go:build unix

package main

import (
	"os"
	"syscall"
)

// childSysProcAttr puts a dev node in its own process group, so that a
// terminal's Ctrl-C reaches only `herald dev`, which then stops the nodes
// in order.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// terminate asks a dev node to stop.
func terminate(p *os.Process) error {
	return p.Signal(syscall.SIGTERM)
}
