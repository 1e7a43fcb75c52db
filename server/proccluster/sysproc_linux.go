package proccluster

import "syscall"

// sysProcAttr puts a node in its own process group, so that a terminal's
// Ctrl-C reaches only its parent (which then stops the nodes in order),
// and has the kernel kill it if the parent dies without stopping it. (Pdeathsig follows the thread that started the
// node; Go ends a thread only under LockOSThread, which the callers do not
// use around Start.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
