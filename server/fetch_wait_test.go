package server

import (
	"context"
	"testing"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
)

// TestFetchLongPoll: a fetch at the end of the log with max_wait_ms waits
// for the next event and returns it; with nothing produced it answers empty
// once the wait is over, never with an error; a tenant read waits too.
func TestFetchLongPoll(t *testing.T) {
	c := startCluster(t, 1)
	hc := c.rawClient(0)
	createTopic(t, hc, "waits", 1, 1)
	createTenant(t, hc, "acme")
	produceRetry(t, hc, "waits", &heraldpb.Event{TenantId: "acme", Payload: []byte("first")})

	type answer struct {
		resp *heraldpb.FetchResponse
		err  error
	}
	fetch := func(req *heraldpb.FetchRequest) <-chan answer {
		ch := make(chan answer, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			resp, err := hc.Fetch(ctx, req)
			ch <- answer{resp, err}
		}()
		return ch
	}

	// Expiry: nothing new within the wait gives an empty answer.
	start := time.Now()
	a := <-fetch(&heraldpb.FetchRequest{Topic: "waits", Start: &heraldpb.FetchRequest_Offset{Offset: 1}, MaxWaitMs: 300})
	if a.err != nil {
		t.Fatalf("expired long poll: %v", a.err)
	}
	if len(a.resp.Events) != 0 || a.resp.NextOffset != 1 {
		t.Fatalf("expired long poll: %d events, next offset %d; want 0 and 1", len(a.resp.Events), a.resp.NextOffset)
	}
	if waited := time.Since(start); waited < 250*time.Millisecond {
		t.Fatalf("answered after %s, before the 300ms wait was over", waited)
	}

	// Data already there is answered at once, whatever the wait.
	a = <-fetch(&heraldpb.FetchRequest{Topic: "waits", Start: &heraldpb.FetchRequest_Offset{Offset: 0}, MaxWaitMs: 20_000})
	if a.err != nil || len(a.resp.Events) != 1 || string(a.resp.Events[0].Payload) != "first" {
		t.Fatalf("fetch of existing data: %v %v", a.resp, a.err)
	}

	// Wake-up: the waiting fetches (by offset and by tenant sequence)
	// return the event produced while they wait, well before 20s.
	byOffset := fetch(&heraldpb.FetchRequest{Topic: "waits", Start: &heraldpb.FetchRequest_Offset{Offset: 1}, MaxWaitMs: 20_000})
	bySeq := fetch(&heraldpb.FetchRequest{Topic: "waits", TenantId: "acme", Start: &heraldpb.FetchRequest_Sequence{Sequence: 2}, MaxWaitMs: 20_000})
	time.Sleep(100 * time.Millisecond) // let them reach the wait; the result does not depend on it
	produceRetry(t, hc, "waits", &heraldpb.Event{TenantId: "acme", Payload: []byte("second")})
	for name, ch := range map[string]<-chan answer{"offset": byOffset, "sequence": bySeq} {
		a := <-ch
		if a.err != nil {
			t.Fatalf("%s long poll: %v", name, a.err)
		}
		if len(a.resp.Events) != 1 || string(a.resp.Events[0].Payload) != "second" || a.resp.Events[0].Offset != 1 {
			t.Fatalf("%s long poll: got %v, want the second event at offset 1", name, a.resp.Events)
		}
	}
}
