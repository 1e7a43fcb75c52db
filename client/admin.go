package client

import (
	"context"
	"errors"
	"fmt"

	"github.com/heraldlog/herald/client/heraldpb"
)

// CreateTopic declares a topic and returns it as created. Any node accepts
// it (and forwards to the controller leader). Like Produce it is not
// resent once it may have reached a server: an ambiguous failure wraps
// ErrUnknownOutcome (DescribeTopic tells what happened); a topic of that
// name that exists already gives ErrTopicExists.
func (c *Client) CreateTopic(ctx context.Context, cfg *TopicConfig) (*TopicInfo, error) {
	if cfg.GetName() == "" {
		return nil, InvalidArgument("name", "a topic needs a name")
	}
	req := &heraldpb.CreateTopicRequest{Config: cfg}
	resp, err := invoke(ctx, c, call{op: "create topic " + cfg.GetName(), mutating: true}, heraldpb.HeraldClient.CreateTopic, req)
	if err != nil {
		return nil, err
	}
	c.meta.updateTopic(resp.GetTopic())
	return resp.GetTopic(), nil
}

// ReadOption changes how a registry read (ListTopics, DescribeTopic,
// ListTenants, DescribeTenant) is served.
type ReadOption func(*readOptions)

type readOptions struct{ stale bool }

func readOpts(opts []ReadOption) readOptions {
	var o readOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// Stale lets the answering node serve a registry read from its own copy of
// the registry, which may trail the controller leader's, saving the read
// index round trip. Without it a registry read is linearizable: it
// reflects every registry change acknowledged before it began. A "not
// found" is always checked against the leader.
func Stale() ReadOption { return func(o *readOptions) { o.stale = true } }

// ListTopics returns every topic. It retries transient failures.
func (c *Client) ListTopics(ctx context.Context, opts ...ReadOption) ([]*TopicInfo, error) {
	resp, err := invoke(ctx, c, call{op: "list topics"}, heraldpb.HeraldClient.ListTopics, &heraldpb.ListTopicsRequest{Stale: readOpts(opts).stale})
	if err != nil {
		return nil, err
	}
	return resp.GetTopics(), nil
}

// DescribeTopic returns one topic, or an error matching ErrTopicNotFound.
// It refreshes the topic's routes in the cache and retries transient
// failures.
func (c *Client) DescribeTopic(ctx context.Context, name string, opts ...ReadOption) (*TopicInfo, error) {
	if name == "" {
		return nil, InvalidArgument("name", "a topic needs a name")
	}
	resp, err := invoke(ctx, c, call{op: "describe topic " + name}, heraldpb.HeraldClient.DescribeTopic, &heraldpb.DescribeTopicRequest{Name: name, Stale: readOpts(opts).stale})
	if err != nil {
		return nil, err
	}
	c.meta.updateTopic(resp.GetTopic())
	return resp.GetTopic(), nil
}

// ClusterStatus returns the nodes and every partition's replication state
// as seen by the answering node. It retries transient failures.
func (c *Client) ClusterStatus(ctx context.Context) (*ClusterStatusResponse, error) {
	resp, err := invoke(ctx, c, call{op: "cluster status"}, heraldpb.HeraldClient.ClusterStatus, &heraldpb.ClusterStatusRequest{})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// AlterTopic changes the fields of cfg.Name's configuration named by fields
// (TopicConfig field names, listed by wire.AlterableFields:
// "retention_age_ms", "retention_bytes", "retention_events",
// "default_ttl_ms", "max_ttl_ms", "dedupe_window_ms", "schema_versions",
// "auto_tenants", "dead_letter_topic", "protected_groups") to their values
// in cfg, and returns the topic as altered. Other fields of cfg are
// ignored; the server refuses fields it cannot change with
// ErrInvalidArgument. Like CreateTopic
// it is not resent after an ambiguous failure (ErrUnknownOutcome).
func (c *Client) AlterTopic(ctx context.Context, cfg *TopicConfig, fields ...string) (*TopicInfo, error) {
	switch {
	case cfg.GetName() == "":
		return nil, InvalidArgument("name", "a topic needs a name")
	case len(fields) == 0:
		return nil, InvalidArgument("fields", "name at least one field to alter")
	}
	req := &heraldpb.AlterTopicRequest{Config: cfg, Fields: fields}
	resp, err := invoke(ctx, c, call{op: "alter topic " + cfg.GetName(), mutating: true}, heraldpb.HeraldClient.AlterTopic, req)
	if err != nil {
		return nil, err
	}
	c.meta.updateTopic(resp.GetTopic())
	return resp.GetTopic(), nil
}

// DeleteTopic deletes a topic and its events, and drops it from the
// metadata cache. Without force the cluster refuses (ErrTopicInUse) a
// topic that had events produced within the last minute. It is not resent
// after an ambiguous failure (ErrUnknownOutcome; DescribeTopic tells what
// happened).
func (c *Client) DeleteTopic(ctx context.Context, name string, force bool) error {
	if name == "" {
		return InvalidArgument("name", "a topic needs a name")
	}
	req := &heraldpb.DeleteTopicRequest{Name: name, Force: force}
	err := c.run(ctx, call{op: "delete topic " + name, mutating: true, do: func(ctx context.Context, hc heraldpb.HeraldClient) error {
		_, err := hc.DeleteTopic(ctx, req)
		return err
	}})
	if err == nil || errors.Is(err, ErrTopicNotFound) || errors.Is(err, ErrUnknownOutcome) {
		c.meta.forgetTopic(name)
	}
	return err
}

// CreateTenant registers a tenant (ID required; DisplayName and Quota
// optional) and returns it as created. It is not resent after an
// ambiguous failure (ErrUnknownOutcome); an existing id gives
// ErrTenantExists.
func (c *Client) CreateTenant(ctx context.Context, tenant *Tenant) (*Tenant, error) {
	if tenant.GetId() == "" {
		return nil, InvalidArgument("id", "a tenant needs an id")
	}
	req := &heraldpb.CreateTenantRequest{Tenant: tenant}
	resp, err := invoke(ctx, c, call{op: "create tenant " + tenant.GetId(), mutating: true}, heraldpb.HeraldClient.CreateTenant, req)
	if err != nil {
		return nil, err
	}
	return resp.GetTenant(), nil
}

// ListTenants returns every tenant. It retries transient failures.
func (c *Client) ListTenants(ctx context.Context, opts ...ReadOption) ([]*Tenant, error) {
	resp, err := invoke(ctx, c, call{op: "list tenants"}, heraldpb.HeraldClient.ListTenants, &heraldpb.ListTenantsRequest{Stale: readOpts(opts).stale})
	if err != nil {
		return nil, err
	}
	return resp.GetTenants(), nil
}

// DescribeTenant returns one tenant, or an error matching
// ErrTenantNotFound. It retries transient failures.
func (c *Client) DescribeTenant(ctx context.Context, id string, opts ...ReadOption) (*Tenant, error) {
	if id == "" {
		return nil, InvalidArgument("id", "a tenant needs an id")
	}
	resp, err := invoke(ctx, c, call{op: "describe tenant " + id}, heraldpb.HeraldClient.DescribeTenant, &heraldpb.DescribeTenantRequest{Id: id, Stale: readOpts(opts).stale})
	if err != nil {
		return nil, err
	}
	return resp.GetTenant(), nil
}

// SetTenantQuota replaces a tenant's whole quota (zero fields mean
// unlimited, see TenantQuota) and returns the tenant. To change one limit,
// DescribeTenant first and send the quota with that limit changed. It is
// not resent after an ambiguous failure (ErrUnknownOutcome).
func (c *Client) SetTenantQuota(ctx context.Context, id string, quota *TenantQuota) (*Tenant, error) {
	if id == "" {
		return nil, InvalidArgument("id", "a tenant needs an id")
	}
	req := &heraldpb.SetTenantQuotaRequest{Id: id, Quota: quota}
	resp, err := invoke(ctx, c, call{op: "set quota of tenant " + id, mutating: true}, heraldpb.HeraldClient.SetTenantQuota, req)
	if err != nil {
		return nil, err
	}
	return resp.GetTenant(), nil
}

// InitProducer allocates a cluster-wide producer id for an idempotent
// producer, which numbers its events per (tenant, partition) from
// producer_seq 1. Most callers want NewProducer, which does this. It is not
// resent after an ambiguous failure (ErrUnknownOutcome); calling it again
// is harmless (an id never used costs nothing).
func (c *Client) InitProducer(ctx context.Context) (string, error) {
	id, _, err := c.InitProducerEpoch(ctx, "")
	return id, err
}

// InitProducerEpoch is InitProducer with fencing: for producerID "" it
// allocates a new producer id (unguessable) and its epoch; for an existing
// id it issues a new, higher epoch, which fences every holder of an older
// one (their requests fail with ErrProducerFenced). Events carry the epoch
// in ProducerEpoch and number producer_seq from 1 under each epoch.
func (c *Client) InitProducerEpoch(ctx context.Context, producerID string) (id string, epoch uint64, err error) {
	resp, err := invoke(ctx, c, call{op: "init producer", mutating: true}, heraldpb.HeraldClient.InitProducer,
		&heraldpb.InitProducerRequest{ProducerId: producerID})
	if err != nil {
		return "", 0, err
	}
	if resp.GetProducerId() == "" {
		return "", 0, fmt.Errorf("client: init producer: the server returned no producer id: %w", ErrUnknownOutcome)
	}
	return resp.GetProducerId(), resp.GetProducerEpoch(), nil
}
