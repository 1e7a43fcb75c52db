//go:build !unix

package bench

// selfCPUSeconds is unknown off unix.
func selfCPUSeconds() float64 { return -1 }
