//go:build !unix

package main

import (
	"os"
	"syscall"
)

// childSysProcAttr has nothing to set on this platform.
func childSysProcAttr() *syscall.SysProcAttr { return nil }

// terminate stops a dev node; without SIGTERM this is a kill.
func terminate(p *os.Process) error { return p.Kill() }
