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

	// FetchFromOffset starts a FetchRequest at an offset.
	FetchFromOffset = heraldpb.FetchRequest_Offset
	// FetchFromSequence starts a FetchRequest at a tenant sequence (needs TenantId).
	FetchFromSequence = heraldpb.FetchRequest_Sequence
	// FetchFromPosition starts a FetchRequest at Earliest or Latest.
	FetchFromPosition = heraldpb.FetchRequest_Position
)

// Start positions of a FetchRequest.
const (
	Earliest = heraldpb.StartPosition_EARLIEST
	Latest   = heraldpb.StartPosition_LATEST
)
