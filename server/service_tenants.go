package server

import (
	"context"
	"errors"
	"regexp"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	"github.com/heraldlog/herald/server/controller"
)

// tenantIDPattern: tenant ids appear in keys, metrics and logs.
var tenantIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@-]{0,254}$`)

// Maxima of a tenant's quota, far above what one cluster serves: a value
// above one is a typo or a unit mistake, refused with INVALID_ARGUMENT
// rather than stored as a limit that never applies. 0 stays the wire's
// "unlimited" (burst: one second's worth).
const (
	quotaEventsPerSecMax     = 1_000_000_000     // 10^9 events/s
	quotaBytesPerSecMax      = 1_000_000_000_000 // 10^12 bytes/s
	quotaBurstMax            = 1_000_000_000     // 10^9 events
	quotaMaxInflightBytesMax = 1_000_000_000_000 // 10^12 bytes
)

// validateQuota checks a tenant quota from the wire, its fields against
// their maxima and against each other, and reports every problem at once:
// the error's field metadata names the first, its message lists them all.
// A nil quota is valid (unlimited) for CreateTenant; SetTenantQuota needs
// one (required).
func validateQuota(q *heraldpb.TenantQuota, required bool) error {
	if q == nil {
		if required {
			return wire.InvalidArgument("quota", "a quota is required (0 in a field means unlimited)")
		}
		return nil
	}
	var errs []error
	for _, f := range []struct {
		name   string
		v, max uint64
		what   string
	}{
		{"events_per_sec", q.GetEventsPerSec(), quotaEventsPerSecMax, "events/s"},
		{"bytes_per_sec", q.GetBytesPerSec(), quotaBytesPerSecMax, "bytes/s"},
		{"burst", q.GetBurst(), quotaBurstMax, "events"},
		{"max_inflight_bytes", q.GetMaxInflightBytes(), quotaMaxInflightBytesMax, "bytes"},
	} {
		if f.v > f.max {
			errs = append(errs, wire.InvalidArgument(f.name, "%s %d is above the maximum %d %s (0 means unlimited)", f.name, f.v, f.max, f.what))
		}
	}
	if q.GetBurst() != 0 && q.GetEventsPerSec() == 0 {
		errs = append(errs, wire.InvalidArgument("burst", "burst %d is set but events_per_sec is 0 (unlimited): a burst bounds the events above a rate; set events_per_sec, or leave burst 0", q.GetBurst()))
	}
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	default:
		return wire.InvalidArgument(fieldOf(errs[0]), "%v", errors.Join(errs...))
	}
}

// CreateTenant registers a tenant (INVALID_ARGUMENT for a bad id or quota,
// TENANT_EXISTS when the id is taken).
func (s *heraldService) CreateTenant(ctx context.Context, req *heraldpb.CreateTenantRequest) (*heraldpb.CreateTenantResponse, error) {
	n := s.node
	t := req.GetTenant()
	if !tenantIDPattern.MatchString(t.GetId()) {
		return nil, wire.InvalidArgument("id", "invalid tenant id %q: 1-255 characters of letters, digits, '.', '_', ':', '@' or '-', starting with a letter or digit", t.GetId())
	}
	if err := validateQuota(t.GetQuota(), false); err != nil {
		return nil, err
	}
	return controllerCall(ctx, n, "CreateTenant", func() (*heraldpb.CreateTenantResponse, error) {
		res, err := n.proposeController(&controller.CreateTenant{Tenant: controller.Tenant{
			ID:                t.GetId(),
			DisplayName:       t.GetDisplayName(),
			Quota:             quotaFromWire(t.GetQuota()),
			CreatedAtUnixNano: time.Now().UnixNano(),
		}})
		if err != nil {
			return nil, err
		}
		n.logger.Info("tenant created", "tenant", t.GetId())
		return &heraldpb.CreateTenantResponse{Tenant: tenantInfo(res.(*controller.Tenant))}, nil
	}, func(ctx context.Context, hc heraldpb.HeraldClient) (*heraldpb.CreateTenantResponse, error) {
		return hc.CreateTenant(ctx, req)
	})
}

// SetTenantQuota replaces a tenant's whole quota (INVALID_ARGUMENT for no
// id or a bad quota; TENANT_NOT_FOUND, decided by the controller's state
// machine, for a tenant that is not registered).
func (s *heraldService) SetTenantQuota(ctx context.Context, req *heraldpb.SetTenantQuotaRequest) (*heraldpb.SetTenantQuotaResponse, error) {
	n := s.node
	if req.GetId() == "" {
		return nil, wire.InvalidArgument("id", "a tenant needs an id")
	}
	if err := validateQuota(req.GetQuota(), true); err != nil {
		return nil, err
	}
	return controllerCall(ctx, n, "SetTenantQuota", func() (*heraldpb.SetTenantQuotaResponse, error) {
		res, err := n.proposeController(&controller.SetTenantQuota{ID: req.GetId(), Quota: quotaFromWire(req.GetQuota())})
		if err != nil {
			return nil, err
		}
		n.logger.Info("tenant quota set", "tenant", req.GetId())
		return &heraldpb.SetTenantQuotaResponse{Tenant: tenantInfo(res.(*controller.Tenant))}, nil
	}, func(ctx context.Context, hc heraldpb.HeraldClient) (*heraldpb.SetTenantQuotaResponse, error) {
		return hc.SetTenantQuota(ctx, req)
	})
}

func (s *heraldService) ListTenants(ctx context.Context, req *heraldpb.ListTenantsRequest) (*heraldpb.ListTenantsResponse, error) {
	if err := s.node.registryRead(ctx, req.GetStale()); err != nil {
		return nil, err
	}
	resp := &heraldpb.ListTenantsResponse{}
	for _, t := range s.node.controllerFSM.Tenants() {
		resp.Tenants = append(resp.Tenants, tenantInfo(t))
	}
	return resp, nil
}

func (s *heraldService) DescribeTenant(ctx context.Context, req *heraldpb.DescribeTenantRequest) (*heraldpb.DescribeTenantResponse, error) {
	if req.GetId() == "" {
		return nil, wire.InvalidArgument("id", "a tenant needs an id")
	}
	if err := s.node.registryRead(ctx, req.GetStale()); err != nil {
		return nil, err
	}
	if t, ok := s.node.controllerFSM.Tenant(req.GetId()); ok {
		return &heraldpb.DescribeTenantResponse{Tenant: tenantInfo(t)}, nil
	}
	if req.GetStale() {
		// "Not found" is never stale: it could hide an acknowledged create.
		if err := s.node.lookupTenant(ctx, req.GetId()); err != nil {
			return nil, err
		}
		if t, ok := s.node.controllerFSM.Tenant(req.GetId()); ok {
			return &heraldpb.DescribeTenantResponse{Tenant: tenantInfo(t)}, nil
		}
	}
	return nil, wire.TenantNotFound(req.GetId())
}
