package client_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/heraldlog/herald/server/proccluster"
)

// Every test must leave no goroutine behind: the SDK's calls, the fake
// cluster's servers and gRPC's connections all end. The herald binary
// that the process tests built (if they did) is removed at the end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(proccluster.RemoveBuiltAndExit))
}
