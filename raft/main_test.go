package raft

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine (gRPC, Raft, pipelines,
// handlers) outlives the tests.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
