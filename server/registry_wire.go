package server

import (
	"errors"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	"github.com/heraldlog/herald/server/controller"
)

// Conversions between the registry's types (package controller) and the
// wire protocol's, and the registry's refusals as wire errors: the node is
// where the two meet.

// alterContract is the controller's Config.AlterContract: it copies the
// named alterable fields (TopicConfig field names, the list in
// wire.AlterableFields) of src into c; any other name is refused and c is
// left unchanged. The controller applies it to replicated commands, so it
// must stay deterministic: the list is append-only, and a name is only
// proposed after AlterTopic checked it with this same call.
func alterContract(c *controller.Contract, src controller.Contract, fields []string) error {
	cfg := contractConfig(*c)
	if err := wire.AlterTopicConfig(cfg, contractConfig(src), fields); err != nil {
		return err
	}
	*c = contractFromConfig(cfg)
	return nil
}

// controllerError maps the controller's refusals to wire errors; any other
// error (already a wire error, or the node's own) is returned as it is.
func controllerError(err error) error {
	var named *controller.NameError
	if errors.As(err, &named) {
		switch {
		case errors.Is(err, controller.ErrTopicNotFound):
			return wire.TopicNotFound(named.Name)
		case errors.Is(err, controller.ErrTopicExists):
			return wire.TopicExists(named.Name)
		case errors.Is(err, controller.ErrTenantNotFound):
			return wire.TenantNotFound(named.Name)
		case errors.Is(err, controller.ErrTenantExists):
			return wire.TenantExists(named.Name)
		}
	}
	var placement *controller.PlacementError
	if errors.As(err, &placement) {
		return wire.InvalidArgument("replication_factor", "replication factor %d needs as many nodes; the cluster has %d", placement.ReplicationFactor, placement.Nodes)
	}
	return err
}

// topicInfo converts a topic to the wire form; leaders are filled by the caller.
func topicInfo(t *controller.Topic) *heraldpb.TopicInfo {
	cfg := contractConfig(t.Contract)
	cfg.Name = t.Name
	cfg.Partitions = uint32(len(t.Partitions))
	cfg.ReplicationFactor = t.ReplicationFactor
	cfg.MaxEventBytes = t.MaxEventBytes
	info := &heraldpb.TopicInfo{Config: cfg, CreatedAtUnixNano: t.CreatedAtUnixNano}
	for _, p := range t.Partitions {
		info.Partitions = append(info.Partitions, &heraldpb.PartitionInfo{
			Index:    p.Index,
			GroupId:  p.GroupID,
			Replicas: append([]string(nil), p.Replicas...),
		})
	}
	return info
}

// contractConfig returns the contract fields as a wire topic config; the
// inverse of contractFromConfig.
func contractConfig(c controller.Contract) *heraldpb.TopicConfig {
	return &heraldpb.TopicConfig{
		Ordering:        heraldpb.Ordering(c.Ordering),
		RetentionAgeMs:  c.RetentionAgeMs,
		RetentionBytes:  c.RetentionBytes,
		RetentionEvents: c.RetentionEvents,
		DefaultTtlMs:    c.DefaultTTLMs,
		MaxTtlMs:        c.MaxTTLMs,
		DedupeWindowMs:  c.DedupeWindowMs,
		Schema:          c.Schema,
		SchemaVersions:  append([]uint32(nil), c.SchemaVersions...),
		RequiredFields:  append([]string(nil), c.RequiredFields...),
		AutoTenants:     c.AutoTenants,
		DeadLetterTopic: c.DeadLetterTopic,
		ProtectedGroups: protectedGroupsToWire(c.ProtectedGroups),
	}
}

// contractFromConfig takes the contract fields of a wire topic config.
func contractFromConfig(cfg *heraldpb.TopicConfig) controller.Contract {
	return controller.Contract{
		Ordering:        controller.Ordering(cfg.GetOrdering()),
		RetentionAgeMs:  cfg.GetRetentionAgeMs(),
		RetentionBytes:  cfg.GetRetentionBytes(),
		RetentionEvents: cfg.GetRetentionEvents(),
		DefaultTTLMs:    cfg.GetDefaultTtlMs(),
		MaxTTLMs:        cfg.GetMaxTtlMs(),
		DedupeWindowMs:  cfg.GetDedupeWindowMs(),
		Schema:          cfg.GetSchema(),
		SchemaVersions:  append([]uint32(nil), cfg.GetSchemaVersions()...),
		RequiredFields:  append([]string(nil), cfg.GetRequiredFields()...),
		AutoTenants:     cfg.GetAutoTenants(),
		DeadLetterTopic: cfg.GetDeadLetterTopic(),
		ProtectedGroups: protectedGroupsFromWire(cfg.GetProtectedGroups()),
	}
}

// protectedGroupsToWire converts a topic's protected groups (nil for none).
func protectedGroupsToWire(groups []controller.ProtectedGroup) []*heraldpb.ProtectedGroup {
	if len(groups) == 0 {
		return nil
	}
	out := make([]*heraldpb.ProtectedGroup, len(groups))
	for i, g := range groups {
		out[i] = &heraldpb.ProtectedGroup{Group: g.Group, SlowLag: g.SlowLag, PauseLag: g.PauseLag}
	}
	return out
}

// protectedGroupsFromWire takes a topic config's protected groups (nil for
// none).
func protectedGroupsFromWire(groups []*heraldpb.ProtectedGroup) []controller.ProtectedGroup {
	if len(groups) == 0 {
		return nil
	}
	out := make([]controller.ProtectedGroup, len(groups))
	for i, g := range groups {
		out[i] = controller.ProtectedGroup{Group: g.GetGroup(), SlowLag: g.GetSlowLag(), PauseLag: g.GetPauseLag()}
	}
	return out
}

// tenantInfo converts a tenant to the wire form.
func tenantInfo(t *controller.Tenant) *heraldpb.Tenant {
	return &heraldpb.Tenant{
		Id:          t.ID,
		DisplayName: t.DisplayName,
		Quota: &heraldpb.TenantQuota{
			EventsPerSec:     t.Quota.EventsPerSec,
			BytesPerSec:      t.Quota.BytesPerSec,
			Burst:            t.Quota.Burst,
			MaxInflightBytes: t.Quota.MaxInflightBytes,
		},
		CreatedAtUnixNano: t.CreatedAtUnixNano,
	}
}

// quotaFromWire takes a wire tenant quota.
func quotaFromWire(q *heraldpb.TenantQuota) controller.Quota {
	return controller.Quota{
		EventsPerSec:     q.GetEventsPerSec(),
		BytesPerSec:      q.GetBytesPerSec(),
		Burst:            q.GetBurst(),
		MaxInflightBytes: q.GetMaxInflightBytes(),
	}
}
