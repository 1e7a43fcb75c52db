package wire

import (
	"errors"

	"google.golang.org/grpc/codes"

	"github.com/heraldlog/herald/client/heraldpb"
)

// Sentinel errors. Every error of a Herald condition, made on a node or in
// the SDK, matches one of these with errors.Is, also after it crossed the
// wire (Status, then FromStatus).
var (
	ErrTopicNotFound     = errors.New("herald: topic not found")
	ErrTopicExists       = errors.New("herald: topic already exists")
	ErrInvalidArgument   = errors.New("herald: invalid argument")
	ErrPayloadTooLarge   = errors.New("herald: payload too large")
	ErrNoLeader          = errors.New("herald: no leader")
	ErrUnknownOutcome    = errors.New("herald: unknown outcome")
	ErrPartitionNotFound = errors.New("herald: partition not found")
	ErrCorruption        = errors.New("herald: corruption")
	ErrOffsetOutOfRange  = errors.New("herald: offset out of range")
	ErrNotLeader         = errors.New("herald: not leader")
	ErrTenantNotFound    = errors.New("herald: tenant not found")
	ErrTenantExists      = errors.New("herald: tenant already exists")
	// ErrSchemaVersionNotAllowed: the event's schema version is not one the
	// topic allows.
	ErrSchemaVersionNotAllowed = errors.New("herald: schema version not allowed")
	// ErrTTLTooLarge: the event's TTL is over the topic's max_ttl_ms.
	ErrTTLTooLarge = errors.New("herald: ttl too large")
	// ErrMissingField: the event lacks an envelope field the topic requires.
	ErrMissingField = errors.New("herald: missing field")
	// ErrTopicInUse: a topic with recent produces was not deleted (use force).
	ErrTopicInUse = errors.New("herald: topic in use")
	// ErrOutOfOrderSequence: an idempotent producer's sequence skipped
	// ahead of what the cluster expects (or the cluster forgot the producer).
	ErrOutOfOrderSequence = errors.New("herald: out of order sequence")
	// ErrUnknownProducer: the partition does not know the idempotent
	// producer (never seen there, or forgotten after being idle) and its
	// sequence is not 1. Nothing of the request was written.
	ErrUnknownProducer = errors.New("herald: unknown producer")
	// ErrProducerFenced: a newer InitProducer for the producer id issued a
	// higher epoch; this holder of the id may not write any more. Nothing
	// of the request was written.
	ErrProducerFenced = errors.New("herald: producer fenced")
	// ErrDuplicateSequence: the idempotent producer's sequence was already
	// committed, longer ago than the partition remembers positions for
	// (more than its last request and its last 1,024 sequences). The
	// events are in the log; nothing was written again.
	ErrDuplicateSequence = errors.New("herald: duplicate sequence")
	// ErrQueueFull: the partition leader's queue of produce calls waiting
	// to be proposed is full (bytes); nothing was written. Retry after the
	// hint (retry_after_ms); the SDK does so with backoff.
	ErrQueueFull = errors.New("herald: produce queue full")
	// ErrThrottled: admission control refused the request (a tenant over
	// its quota, a protected consumer group too far behind, a node at one
	// of its limits); nothing was written. Retry after the hint
	// (RetryAfter). A QUEUE_FULL error matches it too: both are
	// backpressure.
	ErrThrottled = errors.New("herald: throttled")
	// ErrEpochChanged: a subscription resumed with a position taken from an
	// earlier incarnation of the partition (the topic was deleted and
	// recreated); the position means nothing now. The error is an
	// *EpochChangedError with the current epoch and bounds.
	ErrEpochChanged = errors.New("herald: partition epoch changed")
	// ErrGroupNotFound: the topic has no consumer group of that name.
	ErrGroupNotFound = errors.New("herald: consumer group not found")
	// ErrGroupExists: a consumer group of that name exists with another
	// config (a create with the same config succeeds).
	ErrGroupExists = errors.New("herald: consumer group already exists")
	// ErrTooManyGroups: a partition of the topic holds the most consumer
	// groups it may (1,024).
	ErrTooManyGroups = errors.New("herald: too many consumer groups")
	// ErrUnknownMember: the group's coordinator does not know the member
	// (it expired, left, or the coordinator moved to another node): the
	// member joins again.
	ErrUnknownMember = errors.New("herald: unknown consumer group member")
	// ErrStaleGeneration: an assignment (or a member's command) of a
	// generation older than the partition's current one; nothing written.
	ErrStaleGeneration = errors.New("herald: stale consumer group generation")
	// ErrTooManyMembers: the coordinator holds the most members of a group
	// (or the most groups) it may; nothing changed.
	ErrTooManyMembers = errors.New("herald: too many consumer group members")
	// ErrGroupFenced: a member consumed, acknowledged or nacked a
	// partition of a group under a generation or member id that is not the
	// partition's current assignment (a rebalance gave it to another
	// generation). Nothing of the request was written.
	ErrGroupFenced = errors.New("herald: consumer group member fenced")
	// ErrUnauthenticated: the request had no credentials, or credentials
	// that are not valid (signature, key, expiry); nothing was done.
	ErrUnauthenticated = errors.New("herald: unauthenticated")
	// ErrPermissionDenied: the request's credentials do not allow it
	// (another tenant, a topic or action the token does not grant, an
	// admin operation without an admin token); nothing was done.
	ErrPermissionDenied = errors.New("herald: permission denied")

	// ErrUnavailable has no reason of its own: it stands for a gRPC
	// UNAVAILABLE status without a Herald ErrorInfo (a node that did not
	// answer, a connection that failed).
	ErrUnavailable = errors.New("herald: unavailable")
)

// reasonRow is one row of the error table.
type reasonRow struct {
	reason   heraldpb.ErrorReason
	code     codes.Code // the gRPC code the reason travels with
	sentinel error      // what errors.Is matches for the reason
}

// reasonTable is the one table from wire reason to gRPC code and sentinel
// (docs/protocol.md, "Errors"): constructors, Status, FromStatus and
// Error.Is all read it. Its order is the order in which Status tests
// sentinels, so that an error wrapping several is classified the same way
// every time: outcomes first, then leadership, then the rest.
//
// A reason added to herald.proto gets one row here (TestErrorTable fails
// until it has); rows are never removed.
var reasonTable = [...]reasonRow{
	{heraldpb.ErrorReason_UNKNOWN_OUTCOME, codes.Unknown, ErrUnknownOutcome},
	{heraldpb.ErrorReason_CORRUPTION, codes.DataLoss, ErrCorruption},
	{heraldpb.ErrorReason_NOT_LEADER, codes.FailedPrecondition, ErrNotLeader},
	{heraldpb.ErrorReason_NO_LEADER, codes.Unavailable, ErrNoLeader},
	{heraldpb.ErrorReason_TOPIC_NOT_FOUND, codes.NotFound, ErrTopicNotFound},
	{heraldpb.ErrorReason_OUT_OF_ORDER_SEQUENCE, codes.FailedPrecondition, ErrOutOfOrderSequence},
	{heraldpb.ErrorReason_UNKNOWN_PRODUCER, codes.FailedPrecondition, ErrUnknownProducer},
	{heraldpb.ErrorReason_PRODUCER_FENCED, codes.FailedPrecondition, ErrProducerFenced},
	{heraldpb.ErrorReason_DUPLICATE_SEQUENCE, codes.FailedPrecondition, ErrDuplicateSequence},
	{heraldpb.ErrorReason_QUEUE_FULL, codes.ResourceExhausted, ErrQueueFull},
	{heraldpb.ErrorReason_TENANT_NOT_FOUND, codes.NotFound, ErrTenantNotFound},
	{heraldpb.ErrorReason_TOPIC_EXISTS, codes.AlreadyExists, ErrTopicExists},
	{heraldpb.ErrorReason_TENANT_EXISTS, codes.AlreadyExists, ErrTenantExists},
	{heraldpb.ErrorReason_TOPIC_IN_USE, codes.FailedPrecondition, ErrTopicInUse},
	{heraldpb.ErrorReason_PARTITION_NOT_FOUND, codes.NotFound, ErrPartitionNotFound},
	{heraldpb.ErrorReason_PAYLOAD_TOO_LARGE, codes.InvalidArgument, ErrPayloadTooLarge},
	{heraldpb.ErrorReason_SCHEMA_VERSION_NOT_ALLOWED, codes.InvalidArgument, ErrSchemaVersionNotAllowed},
	{heraldpb.ErrorReason_TTL_TOO_LARGE, codes.InvalidArgument, ErrTTLTooLarge},
	{heraldpb.ErrorReason_MISSING_FIELD, codes.InvalidArgument, ErrMissingField},
	{heraldpb.ErrorReason_INVALID_ARGUMENT, codes.InvalidArgument, ErrInvalidArgument},
	{heraldpb.ErrorReason_OFFSET_OUT_OF_RANGE, codes.OutOfRange, ErrOffsetOutOfRange},
	{heraldpb.ErrorReason_EPOCH_CHANGED, codes.FailedPrecondition, ErrEpochChanged},
	{heraldpb.ErrorReason_GROUP_NOT_FOUND, codes.NotFound, ErrGroupNotFound},
	{heraldpb.ErrorReason_GROUP_EXISTS, codes.AlreadyExists, ErrGroupExists},
	{heraldpb.ErrorReason_TOO_MANY_GROUPS, codes.ResourceExhausted, ErrTooManyGroups},
	{heraldpb.ErrorReason_UNKNOWN_MEMBER, codes.FailedPrecondition, ErrUnknownMember},
	{heraldpb.ErrorReason_STALE_GENERATION, codes.FailedPrecondition, ErrStaleGeneration},
	{heraldpb.ErrorReason_TOO_MANY_MEMBERS, codes.ResourceExhausted, ErrTooManyMembers},
	{heraldpb.ErrorReason_GROUP_FENCED, codes.FailedPrecondition, ErrGroupFenced},
	{heraldpb.ErrorReason_THROTTLED, codes.ResourceExhausted, ErrThrottled},
	{heraldpb.ErrorReason_UNAUTHENTICATED, codes.Unauthenticated, ErrUnauthenticated},
	{heraldpb.ErrorReason_PERMISSION_DENIED, codes.PermissionDenied, ErrPermissionDenied},
}

// alsoMatches names the one further sentinel a reason matches, besides its
// own: a QUEUE_FULL refusal is backpressure as THROTTLED is.
var alsoMatches = map[heraldpb.ErrorReason]error{
	heraldpb.ErrorReason_QUEUE_FULL: ErrThrottled,
}

// reasonRows indexes reasonTable by reason; built from it, never edited.
var reasonRows = func() map[heraldpb.ErrorReason]reasonRow {
	m := make(map[heraldpb.ErrorReason]reasonRow, len(reasonTable))
	for _, row := range reasonTable {
		m[row.reason] = row
	}
	return m
}()

// CodeOf returns the gRPC code reason travels with, per the error table;
// Internal for UNSPECIFIED or a reason this package does not know.
func CodeOf(reason heraldpb.ErrorReason) codes.Code {
	if row, ok := reasonRows[reason]; ok {
		return row.code
	}
	return codes.Internal
}

// SentinelOf returns the sentinel of reason, per the error table; nil for
// UNSPECIFIED or a reason this package does not know.
func SentinelOf(reason heraldpb.ErrorReason) error {
	return reasonRows[reason].sentinel
}
