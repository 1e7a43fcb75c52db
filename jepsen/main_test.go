package jepsen

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/heraldlog/herald/server/proccluster"
)

func TestMain(m *testing.M) {
	// The cleanup removes the herald binary TestRunUnderFaults built, if
	// it did, and replaces VerifyTestMain's own os.Exit.
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		_ = proccluster.RemoveBuilt()
		os.Exit(code)
	}))
}
