package server

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// TestTenantQuotaBadInput: quota commands with bad input get clear errors
// from any node (the checks run before the request is forwarded to the
// controller leader), and nothing is changed by them.
func TestTenantQuotaBadInput(t *testing.T) {
	c := startCluster(t, 3)
	c.waitControllerLeader()
	createTenant(t, c.rawClient(0), "acme")

	cases := []struct {
		name    string
		quota   *heraldpb.TenantQuota
		field   string // the field the error's metadata names
		message string // in the message
	}{
		{"burst without a rate", &heraldpb.TenantQuota{Burst: 50, BytesPerSec: 1024}, "burst", "burst 50 is set but events_per_sec is 0 (unlimited)"},
		{"events per second above the maximum", &heraldpb.TenantQuota{EventsPerSec: quotaEventsPerSecMax + 1}, "events_per_sec", "events_per_sec 1000000001 is above the maximum 1000000000 events/s"},
		{"bytes per second above the maximum", &heraldpb.TenantQuota{BytesPerSec: 1 << 62}, "bytes_per_sec", "above the maximum 1000000000000 bytes/s"},
		{"burst above the maximum", &heraldpb.TenantQuota{EventsPerSec: 10, Burst: quotaBurstMax + 1}, "burst", "burst 1000000001 is above the maximum"},
		{"in-flight bytes above the maximum", &heraldpb.TenantQuota{MaxInflightBytes: ^uint64(0)}, "max_inflight_bytes", "max_inflight_bytes 18446744073709551615 is above the maximum"},
		{"every problem at once", &heraldpb.TenantQuota{EventsPerSec: ^uint64(0), BytesPerSec: ^uint64(0)}, "events_per_sec", "bytes_per_sec 18446744073709551615 is above"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hc := c.rawClient(i % 3)
			_, err := hc.SetTenantQuota(ctxTimeout(t, 10*time.Second), &heraldpb.SetTenantQuotaRequest{Id: "acme", Quota: tc.quota})
			requireInvalidField(t, err, tc.field, tc.message)
			// The same quota is refused for a tenant being created, which
			// is then not created.
			_, err = hc.CreateTenant(ctxTimeout(t, 10*time.Second), &heraldpb.CreateTenantRequest{Tenant: &heraldpb.Tenant{Id: "bad-quota", Quota: tc.quota}})
			requireInvalidField(t, err, tc.field, tc.message)
		})
	}
	_, err := c.rawClient(0).DescribeTenant(ctxTimeout(t, 10*time.Second), &heraldpb.DescribeTenantRequest{Id: "bad-quota"})
	require.ErrorIs(t, wire.FromStatus(err), wire.ErrTenantNotFound)

	// A SetTenantQuota without a quota or without an id.
	_, err = c.rawClient(1).SetTenantQuota(ctxTimeout(t, 10*time.Second), &heraldpb.SetTenantQuotaRequest{Id: "acme"})
	requireInvalidField(t, err, "quota", "a quota is required")
	_, err = c.rawClient(1).SetTenantQuota(ctxTimeout(t, 10*time.Second), &heraldpb.SetTenantQuotaRequest{Quota: &heraldpb.TenantQuota{EventsPerSec: 5}})
	requireInvalidField(t, err, "id", "a tenant needs an id")

	// An unknown tenant: TENANT_NOT_FOUND, from a follower and from the
	// leader alike (the controller's state machine decides it).
	for i := range 3 {
		_, err = c.rawClient(i).SetTenantQuota(ctxTimeout(t, 10*time.Second), &heraldpb.SetTenantQuotaRequest{Id: "initech", Quota: &heraldpb.TenantQuota{EventsPerSec: 5}})
		require.ErrorIs(t, wire.FromStatus(err), wire.ErrTenantNotFound, "node %d", i)
		assert.Contains(t, err.Error(), `tenant "initech" not found`)
	}

	// Valid quotas at the edges are taken: the maxima themselves, a burst
	// with a rate, and all zeros (unlimited).
	for _, q := range []*heraldpb.TenantQuota{
		{EventsPerSec: quotaEventsPerSecMax, BytesPerSec: quotaBytesPerSecMax, Burst: quotaBurstMax, MaxInflightBytes: quotaMaxInflightBytesMax},
		{EventsPerSec: 1, Burst: 1},
		{},
	} {
		resp, err := c.rawClient(2).SetTenantQuota(ctxTimeout(t, 10*time.Second), &heraldpb.SetTenantQuotaRequest{Id: "acme", Quota: q})
		require.NoError(t, err)
		assert.Equal(t, q.GetEventsPerSec(), resp.GetTenant().GetQuota().GetEventsPerSec())
		assert.Equal(t, q.GetBurst(), resp.GetTenant().GetQuota().GetBurst())
	}
}

// requireInvalidField asserts err is INVALID_ARGUMENT naming field, with
// message in its text.
func requireInvalidField(t *testing.T, err error, field, message string) {
	t.Helper()
	err = wire.FromStatus(err)
	require.ErrorIs(t, err, wire.ErrInvalidArgument)
	var we *wire.Error
	require.True(t, errors.As(err, &we), "%T %v", err, err)
	assert.Equal(t, field, we.Metadata[wire.MetadataField], "%v", err)
	assert.Contains(t, err.Error(), message)
}
