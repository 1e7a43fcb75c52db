package client_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test must leave no goroutine behind: the SDK's calls, the fake
// cluster's servers and gRPC's connections all end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
