//go:build unix && !linux

package proccluster

import "syscall"

// sysProcAttr puts a node in its own process group, so that a terminal's
// Ctrl-C reaches only its parent, which then stops the nodes in order.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
