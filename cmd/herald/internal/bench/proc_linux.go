package bench

import "syscall"

// childSysProcAttr puts a node in its own process group, so that a
// terminal's Ctrl-C reaches only bench (which then stops the nodes in
// order), and has the kernel kill it if bench dies without stopping it.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
