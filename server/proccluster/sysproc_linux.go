package proccluster

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// sysProcAttr puts a node in its own process group, so that a terminal's
// Ctrl-C reaches only its parent (which then stops the nodes in order),
// and has the kernel kill it if the parent dies without stopping it. (Pdeathsig follows the thread that started the
// node; Go ends a thread only under LockOSThread, which the callers do not
// use around Start.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// awaitStopped waits until /proc reports process pid stopped (state T), or
// gone, for at most limit.
func awaitStopped(pid int, limit time.Duration) error {
	path := "/proc/" + strconv.Itoa(pid) + "/stat"
	deadline := time.Now().Add(limit)
	for {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil // exited: it answers nothing either
		}
		// The state follows the command name, which is in parentheses and
		// may itself hold spaces or parentheses: read after the last ')'.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
			if st := b[i+2]; st == 'T' || st == 't' || st == 'Z' || st == 'X' {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d not stopped %v after SIGSTOP", pid, limit)
		}
		time.Sleep(time.Millisecond)
	}
}
