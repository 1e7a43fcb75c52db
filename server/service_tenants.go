package server

import (
	"context"
	"regexp"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	"github.com/heraldlog/herald/server/controller"
)

// tenantIDPattern: tenant ids appear in keys, metrics and logs.
var tenantIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@-]{0,254}$`)

func (s *heraldService) CreateTenant(ctx context.Context, req *heraldpb.CreateTenantRequest) (*heraldpb.CreateTenantResponse, error) {
	n := s.node
	return controllerCall(ctx, n, "CreateTenant", func() (*heraldpb.CreateTenantResponse, error) {
		t := req.GetTenant()
		if !tenantIDPattern.MatchString(t.GetId()) {
			return nil, wire.InvalidArgument("id", "invalid tenant id %q: 1-255 characters of letters, digits, '.', '_', ':', '@' or '-', starting with a letter or digit", t.GetId())
		}
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

func (s *heraldService) SetTenantQuota(ctx context.Context, req *heraldpb.SetTenantQuotaRequest) (*heraldpb.SetTenantQuotaResponse, error) {
	n := s.node
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
