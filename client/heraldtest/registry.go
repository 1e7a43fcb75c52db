package heraldtest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// topicInUseWindow is how recent a produce keeps a topic from being
// deleted without force, as on the real server.
const topicInUseWindow = time.Minute

func (s *service) AlterTopic(_ context.Context, req *heraldpb.AlterTopicRequest) (*heraldpb.AlterTopicResponse, error) {
	c := s.node.cluster
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.mu.topics[req.GetConfig().GetName()]
	if !ok {
		return nil, wire.TopicNotFound(req.GetConfig().GetName())
	}
	if len(req.GetFields()) == 0 {
		return nil, wire.InvalidArgument("fields", "name at least one field")
	}
	cfg := proto.CloneOf(t.config)
	if err := wire.AlterTopicConfig(cfg, req.GetConfig(), req.GetFields()); err != nil {
		return nil, err
	}
	t.config = cfg
	return &heraldpb.AlterTopicResponse{Topic: c.infoLocked(t)}, nil
}

func (s *service) DeleteTopic(_ context.Context, req *heraldpb.DeleteTopicRequest) (*heraldpb.DeleteTopicResponse, error) {
	c := s.node.cluster
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.mu.topics[req.GetName()]
	if !ok {
		return nil, wire.TopicNotFound(req.GetName())
	}
	if !req.GetForce() && t.lastProduce > 0 && time.Since(time.Unix(0, t.lastProduce)) < topicInUseWindow {
		return nil, wire.TopicInUse(req.GetName(), t.lastProduce)
	}
	delete(c.mu.topics, req.GetName())
	return &heraldpb.DeleteTopicResponse{}, nil
}

func (s *service) CreateTenant(_ context.Context, req *heraldpb.CreateTenantRequest) (*heraldpb.CreateTenantResponse, error) {
	c := s.node.cluster
	c.mu.Lock()
	defer c.mu.Unlock()
	id := req.GetTenant().GetId()
	if id == "" {
		return nil, wire.InvalidArgument("id", "a tenant needs an id")
	}
	if _, ok := c.mu.tenants[id]; ok {
		return nil, wire.TenantExists(id)
	}
	tenant := proto.CloneOf(req.GetTenant())
	if tenant.Quota == nil {
		tenant.Quota = &heraldpb.TenantQuota{}
	}
	tenant.CreatedAtUnixNano = time.Now().UnixNano()
	c.mu.tenants[id] = tenant
	return &heraldpb.CreateTenantResponse{Tenant: proto.CloneOf(tenant)}, nil
}

func (s *service) ListTenants(context.Context, *heraldpb.ListTenantsRequest) (*heraldpb.ListTenantsResponse, error) {
	c := s.node.cluster
	c.mu.Lock()
	defer c.mu.Unlock()
	resp := &heraldpb.ListTenantsResponse{}
	for _, t := range c.mu.tenants {
		resp.Tenants = append(resp.Tenants, proto.CloneOf(t))
	}
	slices.SortFunc(resp.Tenants, func(a, b *heraldpb.Tenant) int { return strings.Compare(a.GetId(), b.GetId()) })
	return resp, nil
}

func (s *service) DescribeTenant(_ context.Context, req *heraldpb.DescribeTenantRequest) (*heraldpb.DescribeTenantResponse, error) {
	c := s.node.cluster
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.mu.tenants[req.GetId()]
	if !ok {
		return nil, wire.TenantNotFound(req.GetId())
	}
	return &heraldpb.DescribeTenantResponse{Tenant: proto.CloneOf(t)}, nil
}

func (s *service) SetTenantQuota(_ context.Context, req *heraldpb.SetTenantQuotaRequest) (*heraldpb.SetTenantQuotaResponse, error) {
	c := s.node.cluster
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.mu.tenants[req.GetId()]
	if !ok {
		return nil, wire.TenantNotFound(req.GetId())
	}
	t.Quota = proto.CloneOf(req.GetQuota())
	if t.Quota == nil {
		t.Quota = &heraldpb.TenantQuota{}
	}
	return &heraldpb.SetTenantQuotaResponse{Tenant: proto.CloneOf(t)}, nil
}

func (s *service) InitProducer(_ context.Context, req *heraldpb.InitProducerRequest) (*heraldpb.InitProducerResponse, error) {
	c := s.node.cluster
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.lastProducer++
	id := req.GetProducerId()
	if id == "" {
		id = fmt.Sprintf("producer-%d", c.mu.lastProducer)
	} else {
		// A new epoch for id: its sequences restart at 1 (the fake does
		// not fence older epochs).
		for _, t := range c.mu.topics {
			for k := range t.lastSeqs {
				if k.producer == id {
					delete(t.lastSeqs, k)
				}
			}
		}
	}
	c.mu.producers[id] = true
	return &heraldpb.InitProducerResponse{ProducerId: id, ProducerEpoch: uint64(c.mu.lastProducer)}, nil
}
