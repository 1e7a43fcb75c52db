package client

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// The SDK's errors are the wire contract's (package wire), re-exported here
// so that SDK users need one import: an error a node made and sent is the
// same sentinel or type after FromStatus, and errors.Is(err, ErrNoLeader)
// holds whichever package's name the caller uses. The table from reason to
// gRPC code and sentinel, Status and FromStatus live in package wire.

// ErrorDomain is the google.rpc.ErrorInfo domain of every Herald error.
const ErrorDomain = wire.ErrorDomain

// Metadata keys of the ErrorInfo detail, as documented in herald.proto.
const (
	MetadataLeaderID            = wire.MetadataLeaderID
	MetadataLeaderAddr          = wire.MetadataLeaderAddr
	MetadataTopic               = wire.MetadataTopic
	MetadataField               = wire.MetadataField
	MetadataSize                = wire.MetadataSize
	MetadataMax                 = wire.MetadataMax
	MetadataLowWatermark        = wire.MetadataLowWatermark
	MetadataHighWatermark       = wire.MetadataHighWatermark
	MetadataRequested           = wire.MetadataRequested
	MetadataPartition           = wire.MetadataPartition
	MetadataOffset              = wire.MetadataOffset
	MetadataTenant              = wire.MetadataTenant
	MetadataSchema              = wire.MetadataSchema
	MetadataVersion             = wire.MetadataVersion
	MetadataAllowed             = wire.MetadataAllowed
	MetadataTTLMs               = wire.MetadataTTLMs
	MetadataMaxTTLMs            = wire.MetadataMaxTTLMs
	MetadataLastProduceUnixNano = wire.MetadataLastProduceUnixNano
	MetadataProducerID          = wire.MetadataProducerID
	MetadataExpected            = wire.MetadataExpected
	MetadataRetryAfterMs        = wire.MetadataRetryAfterMs
	MetadataGot                 = wire.MetadataGot
	MetadataEpoch               = wire.MetadataEpoch
	MetadataCurrentEpoch        = wire.MetadataCurrentEpoch
	MetadataGroup               = wire.MetadataGroup
)

// Sentinel errors. Every error the SDK returns for a Herald condition
// matches one of these with errors.Is, whether it was made locally or
// decoded from the wire. See package wire for what each means.
var (
	ErrTopicNotFound           = wire.ErrTopicNotFound
	ErrTopicExists             = wire.ErrTopicExists
	ErrInvalidArgument         = wire.ErrInvalidArgument
	ErrPayloadTooLarge         = wire.ErrPayloadTooLarge
	ErrNoLeader                = wire.ErrNoLeader
	ErrUnavailable             = wire.ErrUnavailable
	ErrUnknownOutcome          = wire.ErrUnknownOutcome
	ErrPartitionNotFound       = wire.ErrPartitionNotFound
	ErrCorruption              = wire.ErrCorruption
	ErrOffsetOutOfRange        = wire.ErrOffsetOutOfRange
	ErrNotLeader               = wire.ErrNotLeader
	ErrTenantNotFound          = wire.ErrTenantNotFound
	ErrTenantExists            = wire.ErrTenantExists
	ErrSchemaVersionNotAllowed = wire.ErrSchemaVersionNotAllowed
	ErrTTLTooLarge             = wire.ErrTTLTooLarge
	ErrMissingField            = wire.ErrMissingField
	ErrTopicInUse              = wire.ErrTopicInUse
	ErrOutOfOrderSequence      = wire.ErrOutOfOrderSequence
	ErrUnknownProducer         = wire.ErrUnknownProducer
	ErrProducerFenced          = wire.ErrProducerFenced
	ErrDuplicateSequence       = wire.ErrDuplicateSequence
	ErrQueueFull               = wire.ErrQueueFull
	ErrGroupNotFound           = wire.ErrGroupNotFound
	ErrGroupExists             = wire.ErrGroupExists
	ErrTooManyGroups           = wire.ErrTooManyGroups
	ErrUnknownMember           = wire.ErrUnknownMember
	ErrStaleGeneration         = wire.ErrStaleGeneration
	ErrTooManyMembers          = wire.ErrTooManyMembers
	ErrGroupFenced             = wire.ErrGroupFenced
	// ErrThrottled matches every backpressure refusal (THROTTLED and
	// QUEUE_FULL): nothing was written; RetryAfter gives the hint.
	ErrThrottled = wire.ErrThrottled
	// ErrUnauthenticated: no credentials, or credentials that are not
	// valid (signature, key, expiry); nothing was done.
	ErrUnauthenticated = wire.ErrUnauthenticated
	// ErrPermissionDenied: the credentials do not allow the request;
	// nothing was done.
	ErrPermissionDenied = wire.ErrPermissionDenied
)

// The limits a backpressure refusal names (RetryAfter).
const (
	LimitTenantQuota    = wire.LimitTenantQuota
	LimitPartitionQueue = wire.LimitPartitionQueue
	LimitConsumerLag    = wire.LimitConsumerLag
	LimitNodeLimit      = wire.LimitNodeLimit
)

// RetryAfter returns the retry hint of a backpressure refusal (an error
// matching ErrThrottled) and the limit it names.
func RetryAfter(err error) (time.Duration, string, bool) { return wire.RetryAfter(err) }

// ErrClosed is returned by calls on a Client after Close. It never crosses
// the wire, so it is the SDK's own.
var ErrClosed = errors.New("client: closed")

// Typed errors; see package wire.
type (
	// Error is a Herald error without a dedicated type: a reason, the gRPC
	// code it travels with and the ErrorInfo metadata.
	Error = wire.Error
	// NotLeaderError says the answering node does not lead the group that
	// must serve the request; it names the leader when known.
	NotLeaderError = wire.NotLeaderError
	// OffsetOutOfRangeError says a read asked for an offset (or tenant
	// sequence) outside [Low, High).
	OffsetOutOfRangeError = wire.OffsetOutOfRangeError
	// UnreachableError says that none of Servers answered.
	UnreachableError = wire.UnreachableError
)

// InvalidArgument reports a bad request field.
func InvalidArgument(field, format string, args ...any) error {
	return wire.InvalidArgument(field, format, args...)
}

// PayloadTooLarge reports an event of size bytes over the topic's max.
func PayloadTooLarge(size, max uint64) error { return wire.PayloadTooLarge(size, max) }

// TopicNotFound reports that no topic is called name.
func TopicNotFound(name string) error { return wire.TopicNotFound(name) }

// TopicExists reports that a topic called name already exists.
func TopicExists(name string) error { return wire.TopicExists(name) }

// PartitionNotFound reports that topic has no partition with that index.
func PartitionNotFound(topic string, partition uint32) error {
	return wire.PartitionNotFound(topic, partition)
}

// NotLeader reports that this node does not lead the group; id and addr
// name the leader when known (empty otherwise).
func NotLeader(id, addr string) error { return wire.NotLeader(id, addr) }

// NoLeader reports that what (a partition or the controller) has no leader
// elected yet.
func NoLeader(what string) error { return wire.NoLeader(what) }

// NodeStarting reports that node is still starting.
func NodeStarting(node string) error { return wire.NodeStarting(node) }

// NodeStopping reports that node is shutting down.
func NodeStopping(node string) error { return wire.NodeStopping(node) }

// NodeCatchingUp reports that node's controller replica has not caught up.
func NodeCatchingUp(node string) error { return wire.NodeCatchingUp(node) }

// OffsetOutOfRange reports a read of requested outside [low, high).
func OffsetOutOfRange(requested, low, high uint64) error {
	return wire.OffsetOutOfRange(requested, low, high)
}

// UnknownOutcome reports a write that may or may not have been committed.
func UnknownOutcome(format string, args ...any) error { return wire.UnknownOutcome(format, args...) }

// Corruption reports a record that failed its checksum or another storage
// invariant.
func Corruption(partition, offset uint64, format string, args ...any) error {
	return wire.Corruption(partition, offset, format, args...)
}

// TenantNotFound reports that no tenant has the id.
func TenantNotFound(id string) error { return wire.TenantNotFound(id) }

// TenantExists reports that a tenant with the id already exists.
func TenantExists(id string) error { return wire.TenantExists(id) }

// SchemaVersionNotAllowed reports an event of schema at a version the topic
// does not allow.
func SchemaVersionNotAllowed(schema string, version uint32, allowed []uint32) error {
	return wire.SchemaVersionNotAllowed(schema, version, allowed)
}

// TTLTooLarge reports an event TTL of ttlMs over the topic's maximum maxMs.
func TTLTooLarge(ttlMs, maxMs int64) error { return wire.TTLTooLarge(ttlMs, maxMs) }

// MissingField reports an event without an envelope field the topic
// requires.
func MissingField(field, format string, args ...any) error {
	return wire.MissingField(field, format, args...)
}

// TopicInUse reports a delete, without force, of a recently used topic.
func TopicInUse(topic string, lastProduceUnixNano int64) error {
	return wire.TopicInUse(topic, lastProduceUnixNano)
}

// OutOfOrderSequence reports an idempotent producer's out-of-order event.
func OutOfOrderSequence(producerID string, expected, got uint64) error {
	return wire.OutOfOrderSequence(producerID, expected, got)
}

// UnknownProducer reports a sequence other than 1 from an unknown
// idempotent producer.
func UnknownProducer(detail string) error { return wire.UnknownProducer(detail) }

// ProducerFenced reports a request of a fenced producer epoch.
func ProducerFenced(producerID string, epoch, current uint64) error {
	return wire.ProducerFenced(producerID, epoch, current)
}

// QueueFull reports that a partition leader's produce queue is full.
func QueueFull(queuedBytes, queueBytesMax int, retryAfterMs int64) error {
	return wire.QueueFull(queuedBytes, queueBytesMax, retryAfterMs)
}

// DuplicateSequence reports an idempotent producer's sequence committed
// too long ago for the partition to remember its position.
func DuplicateSequence(detail string) error { return wire.DuplicateSequence(detail) }

// Status converts err to the gRPC status it travels as (see wire.Status).
func Status(err error) *status.Status { return wire.Status(err) }

// FromStatus converts an error returned by a Herald RPC into the SDK's
// typed errors (see wire.FromStatus).
func FromStatus(err error) error { return wire.FromStatus(err) }

// SentTracker returns the stats handler that lets TrackSent tell whether a
// request left this process (see wire.SentTracker).
func SentTracker() stats.Handler { return wire.SentTracker() }

// TrackSent returns a context for one RPC on a connection with SentTracker
// installed, and a function that reports whether the RPC's request was
// handed to a transport (see wire.TrackSent).
func TrackSent(ctx context.Context) (_ context.Context, sent func() bool) {
	return wire.TrackSent(ctx)
}

// errorCode returns the gRPC code err travels with (see Status).
func errorCode(err error) codes.Code { return wire.Code(err) }

// errorReason returns the Herald reason of err, or UNSPECIFIED.
func errorReason(err error) heraldpb.ErrorReason { return wire.Reason(err) }
