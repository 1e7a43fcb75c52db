package jepsen

import (
	"context"
	"errors"
	"testing"

	"github.com/heraldlog/herald/client"
)

// TestResendErrorTypeRefusesOnlyAnswers: a resend counts as refused only
// when the server answered it with a refusal; an unknown outcome, a node
// without a leader and a transport failure are inconclusive. The 10-minute
// runs of seeds 1-3 reported "refused" resends that were unknown outcomes
// ("leadership lost while committing log") and NOT_LEADER answers.
func TestResendErrorTypeRefusesOnlyAnswers(t *testing.T) {
	wire := func(err error) error { return client.Status(err).Err() }
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"unknown outcome", wire(client.UnknownOutcome("partition: outcome unknown: leadership lost while committing log")), TypeInfo},
		{"not leader", wire(client.NotLeader("n1", "127.0.0.1:1")), TypeInfo},
		{"no leader", wire(client.NoLeader("partition 0 of jepsen")), TypeInfo},
		{"unavailable", wire(client.ErrUnavailable), TypeInfo},
		{"deadline", wire(context.DeadlineExceeded), TypeInfo},
		{"out of order sequence", wire(client.OutOfOrderSequence("p-1", 10, 12)), TypeFail},
		{"invalid argument", wire(client.InvalidArgument("events", "empty")), TypeFail},
		{"not a status", errors.New("3 results for 2500 events"), TypeFail},
	}
	for _, c := range cases {
		if got := resendErrorType(c.err); got != c.want {
			t.Errorf("%s (%v): got %s, want %s", c.name, c.err, got, c.want)
		}
	}
}
