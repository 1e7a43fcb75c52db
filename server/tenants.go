package server

import (
	"context"
	"errors"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// autoTenantQueueMax bounds tenants waiting to be registered by the
// auto-tenant worker; when full, registration is retried on the tenant's
// next event.
const autoTenantQueueMax = 1024

// lookupTenant returns nil when the tenant is registered, TENANT_NOT_FOUND
// when it is not, and NO_LEADER while this node cannot tell yet. A miss is
// answered only after this node's registry has caught up with the
// controller leader's (syncRegistry), so a tenant whose creation was
// acknowledged is never reported missing.
func (n *Node) lookupTenant(ctx context.Context, id string) error {
	if _, ok := n.controllerFSM.Tenant(id); ok {
		return nil
	}
	if err := n.syncRegistry(ctx); err != nil {
		return err
	}
	if _, ok := n.controllerFSM.Tenant(id); ok {
		return nil
	}
	return wire.TenantNotFound(id)
}

// autoCreateTenant queues an unregistered tenant of an auto-tenants topic
// for registration; it never blocks the produce path.
func (n *Node) autoCreateTenant(id string) {
	if _, ok := n.controllerFSM.Tenant(id); ok {
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
		if _, ok := n.controllerFSM.Tenant(id); ok {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := (&heraldService{node: n}).CreateTenant(ctx, &heraldpb.CreateTenantRequest{Tenant: &heraldpb.Tenant{Id: id, DisplayName: id}})
		cancel()
		if err != nil && !errors.Is(err, wire.ErrTenantExists) {
			n.logger.Debug("auto-registering tenant failed; retried on its next event", "tenant", id, "err", err)
		}
	}
}
