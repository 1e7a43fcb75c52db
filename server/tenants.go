package server

import (
	"context"
	"errors"
	"time"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldpb"
)

// autoTenantQueueMax bounds tenants waiting to be registered by the
// auto-tenant worker; when full, registration is retried on the tenant's
// next event.
const autoTenantQueueMax = 1024

// lookupTenant returns nil when the tenant is registered, TENANT_NOT_FOUND
// when it is not, and NO_LEADER while this node cannot tell yet.
func (n *Node) lookupTenant(ctx context.Context, id string) error {
	if _, ok := n.controllerFSM.tenant(id); ok {
		return nil
	}
	_, err := controllerCall(lookupContext(ctx), n, "DescribeTenant", func() (*heraldpb.DescribeTenantResponse, error) {
		if err := n.leaderRegistryCaughtUp(); err != nil {
			return nil, err
		}
		if t, ok := n.controllerFSM.tenant(id); ok {
			return &heraldpb.DescribeTenantResponse{Tenant: t.info()}, nil
		}
		return nil, client.TenantNotFound(id)
	}, func(ctx context.Context, hc heraldpb.HeraldClient) (*heraldpb.DescribeTenantResponse, error) {
		return hc.DescribeTenant(ctx, &heraldpb.DescribeTenantRequest{Id: id})
	})
	var nl *client.NotLeaderError
	if errors.As(err, &nl) || errors.Is(err, client.ErrUnavailable) {
		// Whom we took for the controller leader is not: retry later.
		return client.NoLeader("controller")
	}
	return err
}

// autoCreateTenant queues an unregistered tenant of an auto-tenants topic
// for registration; it never blocks the produce path.
func (n *Node) autoCreateTenant(id string) {
	if _, ok := n.controllerFSM.tenant(id); ok {
		return
	}
	select {
	case n.autoTenants <- id:
	default:
	}
}

// autoTenantLoop registers queued tenants through the controller. It is
// owned by the Node and exits when the node stops.
func (n *Node) autoTenantLoop() {
	defer n.wg.Done()
	for {
		var id string
		select {
		case <-n.stop:
			return
		case id = <-n.autoTenants:
		}
		if _, ok := n.controllerFSM.tenant(id); ok {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := (&heraldService{node: n}).CreateTenant(ctx, &heraldpb.CreateTenantRequest{Tenant: &heraldpb.Tenant{Id: id, DisplayName: id}})
		cancel()
		if err != nil && !errors.Is(err, client.ErrTenantExists) {
			n.logger.Debug("auto-registering tenant failed; retried on its next event", "tenant", id, "err", err)
		}
	}
}
