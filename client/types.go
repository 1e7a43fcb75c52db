package client

import "github.com/heraldlog/herald/client/heraldpb"

// Aliases of the wire types, so that SDK users need not import heraldpb.
// They are the generated protobuf messages: treat a message passed to the
// Client as owned by the call until it returns, and one returned as yours.
type (
	Event                 = heraldpb.Event
	TopicConfig           = heraldpb.TopicConfig
	TopicInfo             = heraldpb.TopicInfo
	PartitionInfo         = heraldpb.PartitionInfo
	NodeInfo              = heraldpb.NodeInfo
	ProduceResult         = heraldpb.ProduceResult
	FetchRequest          = heraldpb.FetchRequest
	FetchResponse         = heraldpb.FetchResponse
	MetadataResponse      = heraldpb.MetadataResponse
	ClusterStatusResponse = heraldpb.ClusterStatusResponse
	NodeStatusInfo        = heraldpb.NodeStatusInfo
	PartitionStatus       = heraldpb.PartitionStatus
	ReplicaStatus         = heraldpb.ReplicaStatus
	StartPosition         = heraldpb.StartPosition
	Ordering              = heraldpb.Ordering
	Tenant                = heraldpb.Tenant
	TenantQuota           = heraldpb.TenantQuota

	// FetchFromOffset starts a FetchRequest at an offset.
	FetchFromOffset = heraldpb.FetchRequest_Offset
	// FetchFromSequence starts a FetchRequest at a tenant sequence (needs TenantId).
	FetchFromSequence = heraldpb.FetchRequest_Sequence
	// FetchFromPosition starts a FetchRequest at Earliest or Latest.
	FetchFromPosition = heraldpb.FetchRequest_Position
	// FetchFromTime starts a FetchRequest at the first event produced at or
	// after TimeUnixNano (the leader's clock when it was produced); with or
	// without TenantId.
	FetchFromTime = heraldpb.FetchRequest_TimeUnixNano
)

// Start positions of a FetchRequest.
const (
	Earliest = heraldpb.StartPosition_EARLIEST
	Latest   = heraldpb.StartPosition_LATEST
)

// Orderings of a topic (TopicConfig.Ordering); see PartitionFor.
const (
	// OrderingPerTenant puts all of a tenant's events in one partition; the
	// zero value (unspecified) means the same.
	OrderingPerTenant = heraldpb.Ordering_PER_TENANT
	// OrderingPerKey puts all events with the same key in one partition
	// (keyless events go to their tenant's partition).
	OrderingPerKey = heraldpb.Ordering_PER_KEY
	// OrderingNone spreads events by event id; no order across events.
	OrderingNone = heraldpb.Ordering_NONE
)
