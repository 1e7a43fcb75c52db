package main

import (
	"os"
	"os/signal"
	"syscall"
	"testing"

	"go.uber.org/goleak"

	"github.com/heraldlog/herald/server/proccluster"
)

// childModeEnv makes the test binary act as a dev node (see devChildMain).
const childModeEnv = "HERALD_TEST_DEV_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childModeEnv); mode != "" {
		devChildMain(mode)
		return
	}
	// The cleanup removes the herald binary a test built, if one did.
	goleak.VerifyTestMain(m, goleak.Cleanup(proccluster.RemoveBuiltAndExit))
}

// devChildMain stands in for `herald serve` in supervisor tests: "serve"
// runs until SIGTERM, "crash" exits with status 3 at once.
func devChildMain(mode string) {
	switch mode {
	case "crash":
		os.Exit(3)
	default:
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		<-sig
		os.Exit(0)
	}
}
