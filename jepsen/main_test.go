package jepsen

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/heraldlog/herald/server/proccluster"
)

func TestMain(m *testing.M) {
	// The cleanup removes the herald binary a test built, if one did.
	goleak.VerifyTestMain(m, goleak.Cleanup(proccluster.RemoveBuiltAndExit))
}
