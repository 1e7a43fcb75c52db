package server

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// tenantIDPattern: tenant ids appear in keys, metrics and logs.
var tenantIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@-]{0,254}$`)

// topicInUseWindow: a topic that received an event this recently is in use,
// and DeleteTopic refuses it unless forced.
const topicInUseWindow = time.Minute

// controllerCall runs local on the controller leader, or forwards the call
// there with fwd; a forwarded call is never forwarded again.
func controllerCall[T any](ctx context.Context, n *Node, method string, local func() (T, error), fwd func(context.Context, heraldpb.HeraldClient) (T, error)) (T, error) {
	var zero T
	leaderID, leaderAddr := n.controllerLeader()
	if leaderID == n.cfg.NodeID {
		return local()
	}
	if leaderAddr == "" {
		return zero, wire.NoLeader("controller")
	}
	if isForwarded(ctx) {
		return zero, wire.NotLeader(leaderID, leaderAddr)
	}
	n.metrics.forwarded.WithLabelValues(method).Inc()
	hc, err := n.peers.herald(leaderAddr)
	if err != nil {
		return zero, err
	}
	out, err := fwd(forwardContext(ctx), hc)
	if err != nil {
		return zero, wire.FromStatus(err)
	}
	return out, nil
}

// proposeController applies a command on the controller (this node must
// lead it) and returns the state machine's result, or its error.
func (n *Node) proposeController(cmd controllerCommand) (interface{}, error) {
	cmd.Version = controllerFormatVersion
	data, err := json.Marshal(&cmd)
	if err != nil {
		return nil, err
	}
	future := n.controller.Raft().Apply(encodeControllerEntry(data), 5*time.Second)
	if err := future.Error(); err != nil {
		return nil, classifyRaftError(err, "controller")
	}
	if err, ok := future.Response().(error); ok {
		return nil, err
	}
	return future.Response(), nil
}

func (s *heraldService) CreateTenant(ctx context.Context, req *heraldpb.CreateTenantRequest) (*heraldpb.CreateTenantResponse, error) {
	n := s.node
	return controllerCall(ctx, n, "CreateTenant", func() (*heraldpb.CreateTenantResponse, error) {
		t := req.GetTenant()
		if !tenantIDPattern.MatchString(t.GetId()) {
			return nil, wire.InvalidArgument("id", "invalid tenant id %q: 1-255 characters of letters, digits, '.', '_', ':', '@' or '-', starting with a letter or digit", t.GetId())
		}
		res, err := n.proposeController(controllerCommand{Op: opCreateTenant, CreateTenant: &tenantRecord{
			ID:                t.GetId(),
			DisplayName:       t.GetDisplayName(),
			Quota:             quotaFromWire(t.GetQuota()),
			CreatedAtUnixNano: time.Now().UnixNano(),
		}})
		if err != nil {
			return nil, err
		}
		n.logger.Info("tenant created", "tenant", t.GetId())
		return &heraldpb.CreateTenantResponse{Tenant: res.(*tenantRecord).info()}, nil
	}, func(ctx context.Context, hc heraldpb.HeraldClient) (*heraldpb.CreateTenantResponse, error) {
		return hc.CreateTenant(ctx, req)
	})
}

func (s *heraldService) SetTenantQuota(ctx context.Context, req *heraldpb.SetTenantQuotaRequest) (*heraldpb.SetTenantQuotaResponse, error) {
	n := s.node
	return controllerCall(ctx, n, "SetTenantQuota", func() (*heraldpb.SetTenantQuotaResponse, error) {
		res, err := n.proposeController(controllerCommand{Op: opSetTenantQuota, SetTenantQuota: &tenantRecord{
			ID: req.GetId(), Quota: quotaFromWire(req.GetQuota()),
		}})
		if err != nil {
			return nil, err
		}
		n.logger.Info("tenant quota set", "tenant", req.GetId())
		return &heraldpb.SetTenantQuotaResponse{Tenant: res.(*tenantRecord).info()}, nil
	}, func(ctx context.Context, hc heraldpb.HeraldClient) (*heraldpb.SetTenantQuotaResponse, error) {
		return hc.SetTenantQuota(ctx, req)
	})
}

func (s *heraldService) ListTenants(ctx context.Context, req *heraldpb.ListTenantsRequest) (*heraldpb.ListTenantsResponse, error) {
	if err := s.node.registryRead(ctx, req.GetStale()); err != nil {
		return nil, err
	}
	resp := &heraldpb.ListTenantsResponse{}
	for _, t := range s.node.controllerFSM.tenants() {
		resp.Tenants = append(resp.Tenants, t.info())
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
	if t, ok := s.node.controllerFSM.tenant(req.GetId()); ok {
		return &heraldpb.DescribeTenantResponse{Tenant: t.info()}, nil
	}
	if req.GetStale() {
		// "Not found" is never stale: it could hide an acknowledged create.
		if err := s.node.lookupTenant(ctx, req.GetId()); err != nil {
			return nil, err
		}
		if t, ok := s.node.controllerFSM.tenant(req.GetId()); ok {
			return &heraldpb.DescribeTenantResponse{Tenant: t.info()}, nil
		}
	}
	return nil, wire.TenantNotFound(req.GetId())
}

func (s *heraldService) InitProducer(ctx context.Context, req *heraldpb.InitProducerRequest) (*heraldpb.InitProducerResponse, error) {
	n := s.node
	return controllerCall(ctx, n, "InitProducer", func() (*heraldpb.InitProducerResponse, error) {
		return n.initProducer(ctx, req.GetProducerId())
	}, func(ctx context.Context, hc heraldpb.HeraldClient) (*heraldpb.InitProducerResponse, error) {
		return hc.InitProducer(ctx, req)
	})
}

func (s *heraldService) AlterTopic(ctx context.Context, req *heraldpb.AlterTopicRequest) (*heraldpb.AlterTopicResponse, error) {
	n := s.node
	return controllerCall(ctx, n, "AlterTopic", func() (*heraldpb.AlterTopicResponse, error) {
		cfg := req.GetConfig()
		cur, ok := n.controllerFSM.topic(cfg.GetName())
		if !ok {
			return nil, wire.TopicNotFound(cfg.GetName())
		}
		if len(req.GetFields()) == 0 {
			return nil, wire.InvalidArgument("fields", "name at least one field to alter")
		}
		// Validate the altered topic as a whole, as create would.
		merged := contractFromConfig(cfg)
		next := cur.topicContract
		if err := next.alter(merged, req.GetFields()); err != nil {
			return nil, err
		}
		altered := *cur
		altered.topicContract = next
		if err := validateContract(altered.info().GetConfig()); err != nil {
			return nil, err
		}
		res, err := n.proposeController(controllerCommand{Op: opAlterTopic, AlterTopic: &alterTopicCommand{
			Name: cfg.GetName(), Fields: req.GetFields(), Contract: merged,
		}})
		if err != nil {
			return nil, err
		}
		done := res.(*topicRecord)
		// Acknowledged only once every partition refuses calls checked
		// against the previous contract (contract_fence.go).
		if err := n.fenceContract(ctx, done); err != nil {
			n.logger.Warn("topic altered, contract not yet fenced on every partition", "topic", done.Name, "version", done.ContractVersion, "err", err)
			return nil, wire.UnknownOutcome("topic %s altered in the registry (contract version %d), but not every partition refuses the old contract yet (%v); the nodes keep fencing it, and altering again is harmless", done.Name, done.ContractVersion, err)
		}
		n.logger.Info("topic altered", "topic", cfg.GetName(), "fields", req.GetFields(), "contract_version", done.ContractVersion)
		return &heraldpb.AlterTopicResponse{Topic: n.topicInfoWithLeaders(ctx, done)}, nil
	}, func(ctx context.Context, hc heraldpb.HeraldClient) (*heraldpb.AlterTopicResponse, error) {
		return hc.AlterTopic(ctx, req)
	})
}

func (s *heraldService) DeleteTopic(ctx context.Context, req *heraldpb.DeleteTopicRequest) (*heraldpb.DeleteTopicResponse, error) {
	n := s.node
	return controllerCall(ctx, n, "DeleteTopic", func() (*heraldpb.DeleteTopicResponse, error) {
		t, ok := n.controllerFSM.topic(req.GetName())
		if !ok {
			return nil, wire.TopicNotFound(req.GetName())
		}
		if !req.GetForce() {
			if last := n.lastAppend(ctx, t); last > 0 && time.Since(time.Unix(0, last)) < topicInUseWindow {
				return nil, wire.TopicInUse(t.Name, last)
			}
		}
		if _, err := n.proposeController(controllerCommand{Op: opDeleteTopic, DeleteTopic: t.Name}); err != nil {
			return nil, err
		}
		n.logger.Info("topic deleted", "topic", t.Name, "forced", req.GetForce())
		return &heraldpb.DeleteTopicResponse{}, nil
	}, func(ctx context.Context, hc heraldpb.HeraldClient) (*heraldpb.DeleteTopicResponse, error) {
		return hc.DeleteTopic(ctx, req)
	})
}

// lastAppend returns the newest produce time over the topic's partitions
// as their replicas report it (0 when nothing answers or nothing was produced).
func (n *Node) lastAppend(ctx context.Context, t *topicRecord) int64 {
	groups := make(map[uint64]bool)
	for _, p := range t.Partitions {
		groups[p.GroupID] = true
	}
	var last int64
	for _, st := range n.gatherStatus(ctx) {
		for _, g := range st.GetGroups() {
			if groups[g.GetGroupId()] && g.GetLastAppendUnixNano() > last {
				last = g.GetLastAppendUnixNano()
			}
		}
	}
	return last
}

// validateContract checks the contract fields of a topic config.
func validateContract(c *heraldpb.TopicConfig) error {
	var errs []error
	if _, ok := heraldpb.Ordering_name[int32(c.Ordering)]; !ok {
		errs = append(errs, wire.InvalidArgument("ordering", "unknown ordering %d", c.Ordering))
	}
	for name, v := range map[string]int64{"retention_age_ms": c.RetentionAgeMs, "default_ttl_ms": c.DefaultTtlMs, "max_ttl_ms": c.MaxTtlMs, "dedupe_window_ms": c.DedupeWindowMs} {
		if v < 0 {
			errs = append(errs, wire.InvalidArgument(name, "%s must not be negative", name))
		}
	}
	if c.MaxTtlMs > 0 && c.DefaultTtlMs > c.MaxTtlMs {
		errs = append(errs, wire.InvalidArgument("default_ttl_ms", "default TTL %v is above the maximum TTL %v", time.Duration(c.DefaultTtlMs)*time.Millisecond, time.Duration(c.MaxTtlMs)*time.Millisecond))
	}
	for _, f := range c.RequiredFields {
		if !wire.IsEnvelopeField(f) {
			errs = append(errs, wire.InvalidArgument("required_fields", "%q cannot be required (one of %s)", f, strings.Join(wire.EnvelopeFields(), ", ")))
		}
	}
	if len(c.SchemaVersions) > 0 && c.Schema == "" {
		errs = append(errs, wire.InvalidArgument("schema_versions", "schema versions need a schema name"))
	}
	if len(errs) > 0 {
		// The first names the field for the error's metadata; the message
		// lists every problem.
		return wire.InvalidArgument(fieldOf(errs[0]), "%v", errors.Join(errs...))
	}
	return nil
}

func fieldOf(err error) string {
	var e *wire.Error
	if errors.As(err, &e) {
		return e.Metadata[wire.MetadataField]
	}
	return ""
}
