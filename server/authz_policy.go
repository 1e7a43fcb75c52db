package server

import (
	"fmt"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	"github.com/heraldlog/herald/server/auth"
)

// methodPolicy decides whether the claims c allow a call (or stream
// message) req of its method; it may narrow req (tenant filters). It
// returns nil or a PERMISSION_DENIED wire error. It runs before the
// handler: a refused call has done nothing.
type methodPolicy func(c *auth.Claims, req any) error

// methodPolicies is the one table from each method of the Herald service
// to its policy (docs/protocol.md, "Credentials"). A method missing here
// is refused (TestEveryHeraldMethodHasAPolicy keeps it complete).
var methodPolicies = map[string]methodPolicy{
	// Writes: the action, the topic, and every event's tenant.
	heraldMethodPrefix + "Produce":      produceAllowed,
	heraldMethodPrefix + "InitProducer": func(c *auth.Claims, _ any) error { return actionAllowed(c, auth.ActionProduce, "") },
	// Reads: the action, the topic, and a tenant token reads only its
	// tenant (an empty filter becomes the token's tenant).
	heraldMethodPrefix + "Fetch":     fetchAllowed,
	heraldMethodPrefix + "Subscribe": subscribeAllowed,
	// Consumer groups read every tenant's events of a topic.
	heraldMethodPrefix + "JoinGroup":      groupAllowed,
	heraldMethodPrefix + "GroupHeartbeat": groupAllowed,
	heraldMethodPrefix + "LeaveGroup":     groupAllowed,
	heraldMethodPrefix + "GroupConsume":   groupConsumeAllowed,
	heraldMethodPrefix + "ListGroups":     groupAllowed,
	heraldMethodPrefix + "DescribeGroup":  groupAllowed,
	heraldMethodPrefix + "CreateGroup":    groupAllowed,
	heraldMethodPrefix + "ResetGroup":     groupAllowed,
	heraldMethodPrefix + "DeleteGroup":    groupAllowed,
	// The registry's writes and the list of tenants: admin.
	heraldMethodPrefix + "CreateTopic":    adminOnly,
	heraldMethodPrefix + "AlterTopic":     adminOnly,
	heraldMethodPrefix + "DeleteTopic":    adminOnly,
	heraldMethodPrefix + "CreateTenant":   adminOnly,
	heraldMethodPrefix + "SetTenantQuota": adminOnly,
	heraldMethodPrefix + "ListTenants":    adminOnly,
	heraldMethodPrefix + "DescribeTenant": describeTenantAllowed,
	// What every client needs to find its way: any valid token.
	heraldMethodPrefix + "Metadata":      anyToken,
	heraldMethodPrefix + "ListTopics":    anyToken,
	heraldMethodPrefix + "DescribeTopic": anyToken,
	heraldMethodPrefix + "ClusterStatus": anyToken,
}

func anyToken(*auth.Claims, any) error { return nil }

func adminOnly(c *auth.Claims, _ any) error {
	if c.IsAdmin() {
		return nil
	}
	return wire.PermissionDenied(auth.ActionAdmin, "", "", "this call needs an admin token")
}

// actionAllowed checks the action, and the topic when one is named.
func actionAllowed(c *auth.Claims, action, topic string) error {
	if !c.Allows(action) {
		return wire.PermissionDenied(action, "", topic, fmt.Sprintf("the token does not allow %s", action))
	}
	if topic != "" && !c.AllowsTopic(topic) {
		return wire.PermissionDenied(action, "", topic, fmt.Sprintf("the token does not allow topic %q", topic))
	}
	return nil
}

// tenantScoped checks the tenant a read asks for, narrowing an empty
// filter to a tenant token's tenant.
func tenantScoped(c *auth.Claims, action, topic string, tenant *string) error {
	if c.AllTenants() {
		return nil
	}
	if *tenant == "" {
		*tenant = c.Tenant
		return nil
	}
	if *tenant != c.Tenant {
		return wire.PermissionDenied(action, *tenant, topic,
			fmt.Sprintf("the token acts for tenant %q only", c.Tenant))
	}
	return nil
}

func produceAllowed(c *auth.Claims, req any) error {
	r, ok := req.(*heraldpb.ProduceRequest)
	if !ok {
		return wire.PermissionDenied(auth.ActionProduce, "", "", fmt.Sprintf("unexpected request %T", req))
	}
	if err := actionAllowed(c, auth.ActionProduce, r.GetTopic()); err != nil {
		return err
	}
	if c.AllTenants() {
		return nil
	}
	for i, e := range r.GetEvents() {
		if e.GetTenantId() != c.Tenant {
			return wire.PermissionDenied(auth.ActionProduce, e.GetTenantId(), r.GetTopic(),
				fmt.Sprintf("event %d is for tenant %q; the token acts for tenant %q only", i, e.GetTenantId(), c.Tenant))
		}
	}
	return nil
}

func fetchAllowed(c *auth.Claims, req any) error {
	r, ok := req.(*heraldpb.FetchRequest)
	if !ok {
		return wire.PermissionDenied(auth.ActionConsume, "", "", fmt.Sprintf("unexpected request %T", req))
	}
	if err := actionAllowed(c, auth.ActionConsume, r.GetTopic()); err != nil {
		return err
	}
	return tenantScoped(c, auth.ActionConsume, r.GetTopic(), &r.TenantId)
}

// subscribeAllowed checks each message of a Subscribe stream: a start
// like a fetch; credits start nothing.
func subscribeAllowed(c *auth.Claims, req any) error {
	r, ok := req.(*heraldpb.SubscribeRequest)
	if !ok {
		return wire.PermissionDenied(auth.ActionConsume, "", "", fmt.Sprintf("unexpected request %T", req))
	}
	start := r.GetStart()
	if start == nil {
		return nil
	}
	return subscribeStartAllowed(c, start)
}

// subscribeStartAllowed checks (and narrows) a subscription's start, for
// Subscribe and the WebSocket subscribe.
func subscribeStartAllowed(c *auth.Claims, start *heraldpb.SubscribeStart) error {
	if err := actionAllowed(c, auth.ActionConsume, start.GetTopic()); err != nil {
		return err
	}
	return tenantScoped(c, auth.ActionConsume, start.GetTopic(), &start.TenantId)
}

// topicOf returns the topic a group call names ("" for none, or for a
// GroupConsume message that is not a start).
func topicOf(req any) string {
	switch r := req.(type) {
	case *heraldpb.GroupConsumeRequest:
		return r.GetStart().GetTopic()
	case interface{ GetTopic() string }:
		return r.GetTopic()
	}
	return ""
}

// groupAllowed checks a consumer group call: a group reads every
// tenant's events of its topic, so it needs the groups action and a token
// for every tenant (tenant "*", or admin).
func groupAllowed(c *auth.Claims, req any) error {
	topic := topicOf(req)
	if err := actionAllowed(c, auth.ActionGroups, topic); err != nil {
		return err
	}
	if !c.AllTenants() {
		return wire.PermissionDenied(auth.ActionGroups, c.Tenant, topic,
			fmt.Sprintf("a consumer group reads every tenant's events of its topic: it needs a token for tenant %q, and this one acts for tenant %q only (tenant-filtered groups are not supported yet)", auth.AllTenants, c.Tenant))
	}
	if !c.AllowsTopic(topic) {
		return wire.PermissionDenied(auth.ActionGroups, "", topic, fmt.Sprintf("the token does not allow topic %q", topic))
	}
	return nil
}

// groupConsumeAllowed checks each message of a GroupConsume stream: a
// start like the other group calls; acks and nacks start nothing.
func groupConsumeAllowed(c *auth.Claims, req any) error {
	r, ok := req.(*heraldpb.GroupConsumeRequest)
	if !ok {
		return wire.PermissionDenied(auth.ActionGroups, "", "", fmt.Sprintf("unexpected request %T", req))
	}
	if r.GetStart() == nil {
		return nil
	}
	return groupAllowed(c, r)
}

func describeTenantAllowed(c *auth.Claims, req any) error {
	r, ok := req.(*heraldpb.DescribeTenantRequest)
	if !ok {
		return wire.PermissionDenied(auth.ActionAdmin, "", "", fmt.Sprintf("unexpected request %T", req))
	}
	if c.AllowsTenant(r.GetId()) {
		return nil
	}
	return wire.PermissionDenied(auth.ActionAdmin, r.GetId(), "", fmt.Sprintf("the token acts for tenant %q only", c.Tenant))
}
