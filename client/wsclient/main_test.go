package wsclient_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/heraldlog/herald/server/proccluster"
)

// Every test must leave no goroutine behind: subscriptions, the publish
// connection's reader, the SDK's gRPC connections.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(proccluster.RemoveBuiltAndExit))
}
