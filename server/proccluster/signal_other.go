//go:build !unix

package proccluster

import (
	"errors"
	"os"
	"syscall"
)

// sysProcAttr has nothing to set off unix.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// terminate stops a node; without SIGTERM this is a kill.
func terminate(p *os.Process) error { return p.Kill() }

// pause and resume need SIGSTOP and SIGCONT.
func pause(*os.Process) error  { return errors.ErrUnsupported }
func resume(*os.Process) error { return errors.ErrUnsupported }
