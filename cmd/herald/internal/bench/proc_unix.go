//go:build unix

package bench

import (
	"syscall"
	"time"
)

// selfCPUSeconds returns the user+system CPU this process has used, or -1.
func selfCPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return (time.Duration(ru.Utime.Nano()) + time.Duration(ru.Stime.Nano())).Seconds()
}
