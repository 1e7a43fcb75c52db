package server

import (
	"errors"
	"testing"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	"github.com/heraldlog/herald/server/auth"
)

// The policies decide from the claims and the request alone (the table
// of docs/protocol.md, "Credentials").
func TestMethodPolicies(t *testing.T) {
	acme := &auth.Claims{Tenant: "acme", Actions: []string{auth.ActionProduce, auth.ActionConsume}}
	acmeOrders := &auth.Claims{Tenant: "acme", Actions: []string{auth.ActionProduce, auth.ActionConsume}, Topics: []string{"orders.*"}}
	service := &auth.Claims{Tenant: auth.AllTenants, Actions: []string{auth.ActionGroups, auth.ActionConsume}}
	admin := &auth.Claims{Tenant: "ops", Actions: []string{auth.ActionAdmin}}
	produce := func(tenants ...string) *heraldpb.ProduceRequest {
		r := &heraldpb.ProduceRequest{Topic: "orders.eu"}
		for _, tn := range tenants {
			r.Events = append(r.Events, &heraldpb.Event{TenantId: tn})
		}
		return r
	}
	for _, tc := range []struct {
		name   string
		method string
		c      *auth.Claims
		req    any
		denied bool
	}{
		{"produce own tenant", "Produce", acme, produce("acme", "acme"), false},
		{"produce other tenant", "Produce", acme, produce("acme", "globex"), true},
		{"produce no tenant", "Produce", acme, produce(""), true},
		{"produce any tenant as service with produce", "Produce", &auth.Claims{Tenant: "*", Actions: []string{auth.ActionProduce}}, produce("a", "b"), false},
		{"produce without the action", "Produce", service, produce("acme"), true},
		{"produce topic by prefix", "Produce", acmeOrders, produce("acme"), false},
		{"produce other topic", "Produce", acmeOrders, &heraldpb.ProduceRequest{Topic: "payments", Events: []*heraldpb.Event{{TenantId: "acme"}}}, true},
		{"init producer", "InitProducer", acme, &heraldpb.InitProducerRequest{}, false},
		{"fetch own filter", "Fetch", acme, &heraldpb.FetchRequest{Topic: "t", TenantId: "acme"}, false},
		{"fetch other filter", "Fetch", acme, &heraldpb.FetchRequest{Topic: "t", TenantId: "globex"}, true},
		{"fetch any tenant as service", "Fetch", service, &heraldpb.FetchRequest{Topic: "t"}, false},
		{"subscribe credit", "Subscribe", acme, &heraldpb.SubscribeRequest{Msg: &heraldpb.SubscribeRequest_Credit{Credit: &heraldpb.SubscribeCredit{}}}, false},
		{"subscribe other tenant", "Subscribe", acme, &heraldpb.SubscribeRequest{Msg: &heraldpb.SubscribeRequest_Start{Start: &heraldpb.SubscribeStart{Topic: "t", TenantId: "globex"}}}, true},
		{"join group as tenant", "JoinGroup", acme, &heraldpb.JoinGroupRequest{Topic: "t"}, true},
		{"join group as service", "JoinGroup", service, &heraldpb.JoinGroupRequest{Topic: "t"}, false},
		{"group consume ack", "GroupConsume", service, &heraldpb.GroupConsumeRequest{Msg: &heraldpb.GroupConsumeRequest_Ack{Ack: &heraldpb.GroupConsumeAck{}}}, false},
		{"group consume start as tenant", "GroupConsume", acme, &heraldpb.GroupConsumeRequest{Msg: &heraldpb.GroupConsumeRequest_Start{Start: &heraldpb.GroupConsumeStart{Topic: "t"}}}, true},
		{"list groups of every topic, topic-bound token", "ListGroups", &auth.Claims{Tenant: "*", Actions: []string{auth.ActionGroups}, Topics: []string{"t"}}, &heraldpb.ListGroupsRequest{}, true},
		{"create group as service", "CreateGroup", service, &heraldpb.CreateGroupRequest{Topic: "t"}, false},
		{"create topic as tenant", "CreateTopic", acme, &heraldpb.CreateTopicRequest{}, true},
		{"create topic as service", "CreateTopic", service, &heraldpb.CreateTopicRequest{}, true},
		{"create topic as admin", "CreateTopic", admin, &heraldpb.CreateTopicRequest{}, false},
		{"admin produces for anyone", "Produce", admin, produce("x", "y"), false},
		{"describe own tenant", "DescribeTenant", acme, &heraldpb.DescribeTenantRequest{Id: "acme"}, false},
		{"describe other tenant", "DescribeTenant", acme, &heraldpb.DescribeTenantRequest{Id: "globex"}, true},
		{"metadata", "Metadata", acme, &heraldpb.MetadataRequest{}, false},
		{"cluster status", "ClusterStatus", acme, &heraldpb.ClusterStatusRequest{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := methodPolicies[heraldMethodPrefix+tc.method](tc.c, tc.req)
			if tc.denied != (err != nil) {
				t.Fatalf("got %v, want denied=%v", err, tc.denied)
			}
			if err != nil && !errors.Is(err, wire.ErrPermissionDenied) {
				t.Fatalf("refusal %v is not PERMISSION_DENIED", err)
			}
		})
	}
	// A tenant token's empty filter becomes its tenant.
	f := &heraldpb.FetchRequest{Topic: "t"}
	if err := fetchAllowed(acme, f); err != nil || f.GetTenantId() != "acme" {
		t.Fatalf("fetch without a filter: %v, filter %q, want acme", err, f.GetTenantId())
	}
	s := &heraldpb.SubscribeStart{Topic: "t"}
	if err := subscribeStartAllowed(acme, s); err != nil || s.GetTenantId() != "acme" {
		t.Fatalf("subscribe without a filter: %v, filter %q, want acme", err, s.GetTenantId())
	}
}
