package server

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// A tenant over its quota is first admitted with throttle hints, then
// refused (THROTTLED, limit tenant_quota, with a retry hint) while another
// tenant on the same partition is acknowledged without a hint; nothing of
// a refused request is in the log, everything acknowledged is, once.
func TestTenantOverQuotaIsThrottledThenRefused(t *testing.T) {
	c := startCluster(t, 3)
	hc := c.rawClient(0)
	createTopic(t, hc, "quota", 1, 3)
	createTenant(t, hc, "noisy")
	createTenant(t, hc, "calm")
	if _, err := hc.SetTenantQuota(ctxTimeout(t, 10*time.Second), &heraldpb.SetTenantQuotaRequest{
		Id: "noisy", Quota: &heraldpb.TenantQuota{EventsPerSec: 100, Burst: 100}}); err != nil {
		t.Fatal(err)
	}

	const perCall = 20
	var (
		acked, refused []string // event ids
		throttled      int
		calmAcked      int
	)
	deadline := time.Now().Add(20 * time.Second)
	for call := 0; len(refused) == 0 || throttled == 0; call++ {
		if time.Now().After(deadline) {
			t.Fatalf("after %d calls: %d throttled replies, %d refused events; want both", call, throttled, len(refused))
		}
		events := make([]*heraldpb.Event, perCall)
		ids := make([]string, perCall)
		for i := range events {
			ids[i] = fmt.Sprintf("noisy-%d-%d", call, i)
			events[i] = &heraldpb.Event{TenantId: "noisy", EventId: ids[i], Payload: []byte("x")}
		}
		resp, err := hc.Produce(ctxTimeout(t, 10*time.Second), &heraldpb.ProduceRequest{Topic: "quota", Events: events})
		switch err := wire.FromStatus(err); {
		case err == nil:
			acked = append(acked, ids...)
			if resp.GetThrottleMs() > 0 {
				throttled++
			}
		case errors.Is(err, wire.ErrThrottled):
			d, limit, ok := wire.RetryAfter(err)
			if !ok || d <= 0 || limit != wire.LimitTenantQuota {
				t.Fatalf("refusal without its hint: %v (retry after %v, limit %q)", err, d, limit)
			}
			refused = append(refused, ids...)
		default:
			t.Fatalf("call %d: %v", call, err)
		}
		// The calm tenant shares the partition and is never held back.
		resp, err = hc.Produce(ctxTimeout(t, 10*time.Second), &heraldpb.ProduceRequest{Topic: "quota",
			Events: []*heraldpb.Event{{TenantId: "calm", EventId: fmt.Sprintf("calm-%d", call), Payload: []byte("y")}}})
		if err != nil {
			t.Fatalf("calm tenant refused while noisy floods: %v", err)
		}
		if resp.GetThrottleMs() != 0 {
			t.Fatalf("calm tenant got a throttle hint of %d ms", resp.GetThrottleMs())
		}
		calmAcked++
	}
	if len(acked) < 100 {
		t.Fatalf("only %d events admitted before refusals; the burst is 100", len(acked))
	}
	// A request that mixes the refused tenant (more than its remaining
	// debt allowance) with the calm one is refused whole: the calm
	// tenant's event is not written either.
	mixed := []*heraldpb.Event{{TenantId: "calm", EventId: "mixed-calm", Payload: []byte("z")}}
	for i := range 60 {
		mixed = append(mixed, &heraldpb.Event{TenantId: "noisy", EventId: fmt.Sprintf("mixed-noisy-%d", i), Payload: []byte("z")})
	}
	_, err := hc.Produce(ctxTimeout(t, 10*time.Second), &heraldpb.ProduceRequest{Topic: "quota", Events: mixed})
	if err := wire.FromStatus(err); !errors.Is(err, wire.ErrThrottled) {
		t.Fatalf("mixed request while noisy is refused: %v, want THROTTLED", err)
	}
	for _, ev := range mixed {
		refused = append(refused, ev.EventId)
	}

	// Every acknowledged event is in the log once; no refused one is.
	want := len(acked) + calmAcked
	var got map[string]int
	eventually(t, 10*time.Second, func() error {
		resp, err := fetchAll(t, hc, "quota", 0)
		if err != nil {
			return err
		}
		got = map[string]int{}
		for _, ev := range resp.GetEvents() {
			got[ev.GetEventId()]++
		}
		if len(resp.GetEvents()) < want {
			return fmt.Errorf("%d events in the log, want %d", len(resp.GetEvents()), want)
		}
		return nil
	})
	for _, id := range acked {
		if got[id] != 1 {
			t.Fatalf("acknowledged event %s is in the log %d times", id, got[id])
		}
	}
	for _, id := range refused {
		if got[id] != 0 {
			t.Fatalf("refused event %s is in the log", id)
		}
	}
}
