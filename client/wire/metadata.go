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
)
