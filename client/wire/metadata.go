package wire

// ErrorDomain is the google.rpc.ErrorInfo domain of every Herald error.
const ErrorDomain = "herald.dev"

// Metadata keys of the ErrorInfo detail, as documented in herald.proto
// (herald.v1; append-only). MetadataRequested is an addition: the offset
// or sequence that was asked for.
const (
	MetadataLeaderID      = "leader_id"
	MetadataLeaderAddr    = "leader_addr"
	MetadataTopic         = "topic"
	MetadataField         = "field"
	MetadataSize          = "size"
	MetadataMax           = "max"
	MetadataLowWatermark  = "low_watermark"
	MetadataHighWatermark = "high_watermark"
	MetadataRequested     = "requested"
	MetadataPartition     = "partition"
	MetadataOffset        = "offset"
	MetadataTenant        = "tenant"
	MetadataSchema        = "schema"
	MetadataVersion       = "version"
	// MetadataAllowed holds the allowed schema versions in decimal,
	// comma-separated ("1,2"); empty when none is allowed.
	MetadataAllowed             = "allowed"
	MetadataTTLMs               = "ttl_ms"
	MetadataMaxTTLMs            = "max_ttl_ms"
	MetadataLastProduceUnixNano = "last_produce_unix_nano"
	MetadataProducerID          = "producer_id"
	MetadataExpected            = "expected"
	MetadataRetryAfterMs        = "retry_after_ms"
	MetadataGot                 = "got"
	MetadataEpoch               = "epoch"
	MetadataCurrentEpoch        = "current_epoch"
	MetadataGroup               = "group"
	MetadataMember              = "member"
	MetadataGeneration          = "generation"
	MetadataCurrentGeneration   = "current_generation"
	// MetadataLimit names the limit of a THROTTLED or QUEUE_FULL refusal:
	// one of the Limit* values.
	MetadataLimit = "limit"
	// MetadataWhat names the node limit of a THROTTLED refusal with limit
	// node_limit (produce_bytes, fetch_bytes, streams, long_polls).
	MetadataWhat = "what"
	// MetadataAction names the action a PERMISSION_DENIED refusal was
	// asked for: produce, consume, groups or admin.
	MetadataAction = "action"
)

// The limits a THROTTLED or QUEUE_FULL refusal names (MetadataLimit).
const (
	LimitTenantQuota    = "tenant_quota"
	LimitPartitionQueue = "partition_queue"
	LimitConsumerLag    = "consumer_lag"
	LimitNodeLimit      = "node_limit"
)
