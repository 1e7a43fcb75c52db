package client

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heraldlog/herald/client/heraldpb"
)

// This file is the one place where Herald errors meet gRPC statuses. The
// server converts every error it returns with Status (in an interceptor);
// the SDK converts every RPC error back with FromStatus, so errors.Is and
// errors.As work the same on both sides of the wire.
//
// Wire format (herald.v1): a gRPC status whose details hold one
// google.rpc.ErrorInfo with Domain ErrorDomain, Reason the name of a
// heraldpb.ErrorReason and the metadata keys documented in herald.proto.
// Reasons and metadata keys are append-only.

// ErrorDomain is the google.rpc.ErrorInfo domain of every Herald error.
const ErrorDomain = "herald.dev"

// Metadata keys of the ErrorInfo detail, as documented in herald.proto.
// MetadataRequested is an addition: the offset or sequence that was asked for.
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
)

// Sentinel errors. Every error the SDK returns for a Herald condition
// matches one of these with errors.Is, whether it was made locally or
// decoded from the wire.
var (
	ErrTopicNotFound     = errors.New("client: topic not found")
	ErrTopicExists       = errors.New("client: topic already exists")
	ErrInvalidArgument   = errors.New("client: invalid argument")
	ErrPayloadTooLarge   = errors.New("client: payload too large")
	ErrNoLeader          = errors.New("client: no leader")
	ErrUnavailable       = errors.New("client: unavailable")
	ErrUnknownOutcome    = errors.New("client: unknown outcome")
	ErrPartitionNotFound = errors.New("client: partition not found")
	ErrCorruption        = errors.New("client: corruption")
	ErrOffsetOutOfRange  = errors.New("client: offset out of range")
	ErrNotLeader         = errors.New("client: not leader")
	ErrTenantNotFound    = errors.New("client: tenant not found")
	ErrTenantExists      = errors.New("client: tenant already exists")
	// ErrSchemaVersionNotAllowed: the event's schema version is not one the
	// topic allows.
	ErrSchemaVersionNotAllowed = errors.New("client: schema version not allowed")
	// ErrTTLTooLarge: the event's TTL is over the topic's max_ttl_ms.
	ErrTTLTooLarge = errors.New("client: ttl too large")
	// ErrMissingField: the event lacks an envelope field the topic requires.
	ErrMissingField = errors.New("client: missing field")
	// ErrTopicInUse: a topic with recent produces was not deleted (use force).
	ErrTopicInUse = errors.New("client: topic in use")
	// ErrOutOfOrderSequence: an idempotent producer's sequence skipped
	// ahead of what the cluster expects (or the cluster forgot the producer).
	ErrOutOfOrderSequence = errors.New("client: out of order sequence")
	// ErrUnknownProducer: the partition does not know the idempotent
	// producer (never seen there, or forgotten after being idle) and its
	// sequence is not 1. Nothing of the request was written.
	ErrUnknownProducer = errors.New("client: unknown producer")
	// ErrProducerFenced: a newer InitProducer for the producer id issued a
	// higher epoch; this holder of the id may not write any more. Nothing
	// of the request was written.
	ErrProducerFenced = errors.New("client: producer fenced")
	// ErrDuplicateSequence: the idempotent producer's sequence was already
	// committed, longer ago than the partition remembers positions for
	// (more than its last request and its last 1,024 sequences). The
	// events are in the log; nothing was written again.
	ErrDuplicateSequence = errors.New("client: duplicate sequence")
	// ErrQueueFull: the partition leader's queue of produce calls waiting
	// to be proposed is full (bytes); nothing was written. Retry after the
	// hint (retry_after_ms); the SDK does so with backoff.
	ErrQueueFull = errors.New("client: produce queue full")
	// ErrClosed is returned by calls on a Client after Close.
	ErrClosed = errors.New("client: closed")
)

// reasonSentinels maps each wire reason to its sentinel. Status walks it
// to classify plain sentinel-wrapping errors; Error.Is uses it to match.
var reasonSentinels = map[heraldpb.ErrorReason]error{
	heraldpb.ErrorReason_NOT_LEADER:                 ErrNotLeader,
	heraldpb.ErrorReason_TOPIC_NOT_FOUND:            ErrTopicNotFound,
	heraldpb.ErrorReason_TOPIC_EXISTS:               ErrTopicExists,
	heraldpb.ErrorReason_INVALID_ARGUMENT:           ErrInvalidArgument,
	heraldpb.ErrorReason_PAYLOAD_TOO_LARGE:          ErrPayloadTooLarge,
	heraldpb.ErrorReason_OFFSET_OUT_OF_RANGE:        ErrOffsetOutOfRange,
	heraldpb.ErrorReason_NO_LEADER:                  ErrNoLeader,
	heraldpb.ErrorReason_PARTITION_NOT_FOUND:        ErrPartitionNotFound,
	heraldpb.ErrorReason_UNKNOWN_OUTCOME:            ErrUnknownOutcome,
	heraldpb.ErrorReason_CORRUPTION:                 ErrCorruption,
	heraldpb.ErrorReason_TENANT_NOT_FOUND:           ErrTenantNotFound,
	heraldpb.ErrorReason_TENANT_EXISTS:              ErrTenantExists,
	heraldpb.ErrorReason_SCHEMA_VERSION_NOT_ALLOWED: ErrSchemaVersionNotAllowed,
	heraldpb.ErrorReason_TTL_TOO_LARGE:              ErrTTLTooLarge,
	heraldpb.ErrorReason_MISSING_FIELD:              ErrMissingField,
	heraldpb.ErrorReason_TOPIC_IN_USE:               ErrTopicInUse,
	heraldpb.ErrorReason_OUT_OF_ORDER_SEQUENCE:      ErrOutOfOrderSequence,
	heraldpb.ErrorReason_UNKNOWN_PRODUCER:           ErrUnknownProducer,
	heraldpb.ErrorReason_PRODUCER_FENCED:            ErrProducerFenced,
	heraldpb.ErrorReason_DUPLICATE_SEQUENCE:         ErrDuplicateSequence,
	heraldpb.ErrorReason_QUEUE_FULL:                 ErrQueueFull,
}

// reasonOrder fixes the order in which Status tests sentinels, so that the
// classification of an error wrapping several of them is deterministic.
var reasonOrder = []heraldpb.ErrorReason{
	heraldpb.ErrorReason_UNKNOWN_OUTCOME,
	heraldpb.ErrorReason_CORRUPTION,
	heraldpb.ErrorReason_NOT_LEADER,
	heraldpb.ErrorReason_NO_LEADER,
	heraldpb.ErrorReason_TOPIC_NOT_FOUND,
	heraldpb.ErrorReason_OUT_OF_ORDER_SEQUENCE,
	heraldpb.ErrorReason_UNKNOWN_PRODUCER,
	heraldpb.ErrorReason_PRODUCER_FENCED,
	heraldpb.ErrorReason_DUPLICATE_SEQUENCE,
	heraldpb.ErrorReason_QUEUE_FULL,
	heraldpb.ErrorReason_TENANT_NOT_FOUND,
	heraldpb.ErrorReason_TOPIC_EXISTS,
	heraldpb.ErrorReason_TENANT_EXISTS,
	heraldpb.ErrorReason_TOPIC_IN_USE,
	heraldpb.ErrorReason_PARTITION_NOT_FOUND,
	heraldpb.ErrorReason_PAYLOAD_TOO_LARGE,
	heraldpb.ErrorReason_SCHEMA_VERSION_NOT_ALLOWED,
	heraldpb.ErrorReason_TTL_TOO_LARGE,
	heraldpb.ErrorReason_MISSING_FIELD,
	heraldpb.ErrorReason_INVALID_ARGUMENT,
	heraldpb.ErrorReason_OFFSET_OUT_OF_RANGE,
}

// reasonCode is the gRPC code each reason travels with.
func reasonCode(r heraldpb.ErrorReason) codes.Code {
	switch r {
	case heraldpb.ErrorReason_NOT_LEADER, heraldpb.ErrorReason_TOPIC_IN_USE, heraldpb.ErrorReason_OUT_OF_ORDER_SEQUENCE,
		heraldpb.ErrorReason_UNKNOWN_PRODUCER, heraldpb.ErrorReason_PRODUCER_FENCED, heraldpb.ErrorReason_DUPLICATE_SEQUENCE:
		return codes.FailedPrecondition
	case heraldpb.ErrorReason_TOPIC_NOT_FOUND, heraldpb.ErrorReason_PARTITION_NOT_FOUND, heraldpb.ErrorReason_TENANT_NOT_FOUND:
		return codes.NotFound
	case heraldpb.ErrorReason_TOPIC_EXISTS, heraldpb.ErrorReason_TENANT_EXISTS:
		return codes.AlreadyExists
	case heraldpb.ErrorReason_INVALID_ARGUMENT, heraldpb.ErrorReason_PAYLOAD_TOO_LARGE,
		heraldpb.ErrorReason_SCHEMA_VERSION_NOT_ALLOWED, heraldpb.ErrorReason_TTL_TOO_LARGE,
		heraldpb.ErrorReason_MISSING_FIELD:
		return codes.InvalidArgument
	case heraldpb.ErrorReason_OFFSET_OUT_OF_RANGE:
		return codes.OutOfRange
	case heraldpb.ErrorReason_QUEUE_FULL:
		return codes.ResourceExhausted
	case heraldpb.ErrorReason_NO_LEADER:
		return codes.Unavailable
	case heraldpb.ErrorReason_UNKNOWN_OUTCOME:
		return codes.Unknown
	case heraldpb.ErrorReason_CORRUPTION:
		return codes.DataLoss
	default:
		return codes.Internal
	}
}

// Error is a Herald error without a dedicated type: a reason, the gRPC code
// it travels with and the ErrorInfo metadata. errors.Is matches it against
// the sentinel of its reason. An Error with no reason stands for a plain
// gRPC status (for example a transport failure): it matches ErrUnavailable
// when its code is Unavailable, and context.DeadlineExceeded or
// context.Canceled for those codes.
type Error struct {
	Reason   heraldpb.ErrorReason
	Code     codes.Code
	Message  string
	Metadata map[string]string
}

// Error returns the message; a reason-less error names its gRPC code.
func (e *Error) Error() string {
	if e.Reason == heraldpb.ErrorReason_ERROR_REASON_UNSPECIFIED {
		return fmt.Sprintf("client: %s: %s", e.Code, e.Message)
	}
	if e.Message == "" {
		return reasonSentinels[e.Reason].Error()
	}
	return e.Message
}

// Is reports whether target is the sentinel of e's reason (see Error).
func (e *Error) Is(target error) bool {
	if e.Reason != heraldpb.ErrorReason_ERROR_REASON_UNSPECIFIED {
		return target == reasonSentinels[e.Reason]
	}
	switch e.Code {
	case codes.Unavailable:
		return target == ErrUnavailable
	case codes.DeadlineExceeded:
		return target == context.DeadlineExceeded
	case codes.Canceled:
		return target == context.Canceled
	}
	return false
}

// code is the gRPC code e travels with.
func (e *Error) code() codes.Code {
	if e.Code != codes.OK {
		return e.Code
	}
	if e.Reason == heraldpb.ErrorReason_ERROR_REASON_UNSPECIFIED {
		return codes.Unknown
	}
	return reasonCode(e.Reason)
}

// NotLeaderError says the answering node does not lead the group that
// must serve the request. LeaderAddr is the leader's gRPC address when the
// node knows it, else empty. It matches ErrNotLeader.
type NotLeaderError struct {
	LeaderID   string
	LeaderAddr string
}

func (e *NotLeaderError) Error() string {
	if e.LeaderAddr == "" && e.LeaderID == "" {
		return "client: not leader; leader unknown"
	}
	return fmt.Sprintf("client: not leader; leader is %s at %s", e.LeaderID, e.LeaderAddr)
}

// Is matches ErrNotLeader.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// OffsetOutOfRangeError says a read asked for an offset (or tenant
// sequence) outside [Low, High): history before Low was truncated, and High
// is the next offset to be assigned. It matches ErrOffsetOutOfRange.
type OffsetOutOfRangeError struct {
	Requested, Low, High uint64
}

func (e *OffsetOutOfRangeError) Error() string {
	return fmt.Sprintf("client: offset %d out of range [%d, %d)", e.Requested, e.Low, e.High)
}

// Is matches ErrOffsetOutOfRange.
func (e *OffsetOutOfRangeError) Is(target error) bool { return target == ErrOffsetOutOfRange }

// UnreachableError says that none of Servers answered; Errs holds each
// server's error in the same order. It matches ErrUnavailable.
type UnreachableError struct {
	Servers []string
	Errs    []error
}

func (e *UnreachableError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "client: no node answered at %s: ", strings.Join(e.Servers, ","))
	b.WriteString(e.Cause())
	return b.String()
}

// Cause describes why the servers did not answer, without the list of
// addresses when there is one server.
func (e *UnreachableError) Cause() string {
	if len(e.Errs) == 1 {
		return e.Errs[0].Error()
	}
	parts := make([]string, 0, len(e.Errs))
	for i, err := range e.Errs {
		addr := ""
		if i < len(e.Servers) {
			addr = e.Servers[i]
		}
		parts = append(parts, addr+": "+err.Error())
	}
	return strings.Join(parts, "; ")
}

// Is matches ErrUnavailable.
func (e *UnreachableError) Is(target error) bool { return target == ErrUnavailable }

// Unwrap returns the per-server errors.
func (e *UnreachableError) Unwrap() []error { return e.Errs }

// InvalidArgument reports a bad request field.
func InvalidArgument(field, format string, args ...any) error {
	return &Error{
		Reason:   heraldpb.ErrorReason_INVALID_ARGUMENT,
		Code:     codes.InvalidArgument,
		Message:  "client: invalid " + field + ": " + fmt.Sprintf(format, args...),
		Metadata: map[string]string{MetadataField: field},
	}
}

// PayloadTooLarge reports an event of size bytes over the topic's max.
func PayloadTooLarge(size, max uint64) error {
	return &Error{
		Reason:  heraldpb.ErrorReason_PAYLOAD_TOO_LARGE,
		Code:    codes.InvalidArgument,
		Message: fmt.Sprintf("client: payload too large: %d bytes, max %d", size, max),
		Metadata: map[string]string{
			MetadataSize: strconv.FormatUint(size, 10),
			MetadataMax:  strconv.FormatUint(max, 10),
		},
	}
}

// TopicNotFound reports that no topic is called name.
func TopicNotFound(name string) error {
	return &Error{
		Reason:   heraldpb.ErrorReason_TOPIC_NOT_FOUND,
		Code:     codes.NotFound,
		Message:  fmt.Sprintf("client: topic %q not found", name),
		Metadata: map[string]string{MetadataTopic: name},
	}
}

// TopicExists reports that a topic called name already exists.
func TopicExists(name string) error {
	return &Error{
		Reason:   heraldpb.ErrorReason_TOPIC_EXISTS,
		Code:     codes.AlreadyExists,
		Message:  fmt.Sprintf("client: topic %q already exists", name),
		Metadata: map[string]string{MetadataTopic: name},
	}
}

// PartitionNotFound reports that topic has no partition with that index
// (or that this node does not host it).
func PartitionNotFound(topic string, partition uint32) error {
	return &Error{
		Reason:  heraldpb.ErrorReason_PARTITION_NOT_FOUND,
		Code:    codes.NotFound,
		Message: fmt.Sprintf("client: topic %q has no partition %d", topic, partition),
		Metadata: map[string]string{
			MetadataTopic:     topic,
			MetadataPartition: strconv.FormatUint(uint64(partition), 10),
		},
	}
}

// NotLeader reports that this node does not lead the group; id and addr
// name the leader when known (empty otherwise).
func NotLeader(id, addr string) error {
	return &NotLeaderError{LeaderID: id, LeaderAddr: addr}
}

// NoLeader reports that what (a partition or the controller) has no leader
// elected yet. The request was not applied; retry after a backoff.
func NoLeader(what string) error {
	return &Error{
		Reason:  heraldpb.ErrorReason_NO_LEADER,
		Code:    codes.Unavailable,
		Message: "client: no leader for " + what,
	}
}

// NodeStarting reports that node is still starting (its registry is not
// open yet). Nothing was applied; another node can answer now, and this one
// shortly (it travels as NO_LEADER, which the SDK retries elsewhere).
func NodeStarting(node string) error { return nodeUnavailable(node, "starting") }

// NodeStopping reports that node is shutting down; like NodeStarting, the
// call can be retried on another node.
func NodeStopping(node string) error { return nodeUnavailable(node, "stopping") }

// NodeCatchingUp reports that node cannot answer for the cluster yet: its
// controller replica rejoins from its peers and has not caught up, so it
// knows neither the cluster's members nor its registry. Like NodeStarting,
// the call can be retried on another node.
func NodeCatchingUp(node string) error {
	return nodeUnavailable(node, "catching up with the controller")
}

func nodeUnavailable(node, state string) error {
	return &Error{
		Reason:  heraldpb.ErrorReason_NO_LEADER,
		Code:    codes.Unavailable,
		Message: "client: node " + node + " is " + state + "; retry another node",
	}
}

// OffsetOutOfRange reports a read of requested outside [low, high).
func OffsetOutOfRange(requested, low, high uint64) error {
	return &OffsetOutOfRangeError{Requested: requested, Low: low, High: high}
}

// UnknownOutcome reports a write that may or may not have been committed,
// for the reason given.
func UnknownOutcome(format string, args ...any) error {
	return &Error{
		Reason:  heraldpb.ErrorReason_UNKNOWN_OUTCOME,
		Code:    codes.Unknown,
		Message: "client: unknown outcome: " + fmt.Sprintf(format, args...),
	}
}

// Corruption reports a record that failed its checksum or another storage
// invariant, naming the partition (its group id) and the offset.
func Corruption(partition, offset uint64, format string, args ...any) error {
	return &Error{
		Reason:  heraldpb.ErrorReason_CORRUPTION,
		Code:    codes.DataLoss,
		Message: fmt.Sprintf("client: corruption in partition %d at offset %d: %s", partition, offset, fmt.Sprintf(format, args...)),
		Metadata: map[string]string{
			MetadataPartition: strconv.FormatUint(partition, 10),
			MetadataOffset:    strconv.FormatUint(offset, 10),
		},
	}
}

// TenantNotFound reports that no tenant has the id.
func TenantNotFound(id string) error {
	return &Error{
		Reason:   heraldpb.ErrorReason_TENANT_NOT_FOUND,
		Code:     codes.NotFound,
		Message:  fmt.Sprintf("client: tenant %q not found", id),
		Metadata: map[string]string{MetadataTenant: id},
	}
}

// TenantExists reports that a tenant with the id already exists.
func TenantExists(id string) error {
	return &Error{
		Reason:   heraldpb.ErrorReason_TENANT_EXISTS,
		Code:     codes.AlreadyExists,
		Message:  fmt.Sprintf("client: tenant %q already exists", id),
		Metadata: map[string]string{MetadataTenant: id},
	}
}

// SchemaVersionNotAllowed reports an event of schema at a version the topic
// does not allow; allowed lists the versions it does.
func SchemaVersionNotAllowed(schema string, version uint32, allowed []uint32) error {
	list := make([]string, len(allowed))
	for i, v := range allowed {
		list[i] = strconv.FormatUint(uint64(v), 10)
	}
	return &Error{
		Reason:  heraldpb.ErrorReason_SCHEMA_VERSION_NOT_ALLOWED,
		Code:    codes.InvalidArgument,
		Message: fmt.Sprintf("client: schema %q version %d not allowed (allowed: %s)", schema, version, strings.Join(list, ",")),
		Metadata: map[string]string{
			MetadataSchema:  schema,
			MetadataVersion: strconv.FormatUint(uint64(version), 10),
			MetadataAllowed: strings.Join(list, ","),
		},
	}
}

// TTLTooLarge reports an event TTL of ttlMs over the topic's maximum maxMs.
func TTLTooLarge(ttlMs, maxMs int64) error {
	return &Error{
		Reason:  heraldpb.ErrorReason_TTL_TOO_LARGE,
		Code:    codes.InvalidArgument,
		Message: fmt.Sprintf("client: ttl too large: %d ms, max %d ms", ttlMs, maxMs),
		Metadata: map[string]string{
			MetadataTTLMs:    strconv.FormatInt(ttlMs, 10),
			MetadataMaxTTLMs: strconv.FormatInt(maxMs, 10),
		},
	}
}

// MissingField reports an event without an envelope field the topic
// requires.
func MissingField(field, format string, args ...any) error {
	return &Error{
		Reason:   heraldpb.ErrorReason_MISSING_FIELD,
		Code:     codes.InvalidArgument,
		Message:  "client: missing " + field + ": " + fmt.Sprintf(format, args...),
		Metadata: map[string]string{MetadataField: field},
	}
}

// TopicInUse reports a delete, without force, of a topic whose last event
// was produced at lastProduceUnixNano (recently).
func TopicInUse(topic string, lastProduceUnixNano int64) error {
	return &Error{
		Reason: heraldpb.ErrorReason_TOPIC_IN_USE,
		Code:   codes.FailedPrecondition,
		Message: fmt.Sprintf("client: topic %q is in use: last event produced at %s; delete with force to delete anyway",
			topic, time.Unix(0, lastProduceUnixNano).UTC().Format(time.RFC3339Nano)),
		Metadata: map[string]string{
			MetadataTopic:               topic,
			MetadataLastProduceUnixNano: strconv.FormatInt(lastProduceUnixNano, 10),
		},
	}
}

// OutOfOrderSequence reports an idempotent producer's event whose
// producer_seq is got where the cluster expected expected. Nothing of the
// request was written.
func OutOfOrderSequence(producerID string, expected, got uint64) error {
	return &Error{
		Reason:  heraldpb.ErrorReason_OUT_OF_ORDER_SEQUENCE,
		Code:    codes.FailedPrecondition,
		Message: fmt.Sprintf("client: producer %s: out of order sequence %d, expected %d", producerID, got, expected),
		Metadata: map[string]string{
			MetadataProducerID: producerID,
			MetadataExpected:   strconv.FormatUint(expected, 10),
			MetadataGot:        strconv.FormatUint(got, 10),
		},
	}
}

// UnknownProducer reports a sequence other than 1 from an idempotent
// producer the partition does not know; detail says which. Nothing of the
// request was written.
func UnknownProducer(detail string) error {
	return &Error{Reason: heraldpb.ErrorReason_UNKNOWN_PRODUCER, Code: codes.FailedPrecondition,
		Message: "client: unknown producer: " + detail}
}

// ProducerFenced reports a request of producerID under epoch where the
// partition knows the newer current epoch. Nothing of the request was
// written.
func ProducerFenced(producerID string, epoch, current uint64) error {
	return &Error{
		Reason:  heraldpb.ErrorReason_PRODUCER_FENCED,
		Code:    codes.FailedPrecondition,
		Message: fmt.Sprintf("client: producer %s: epoch %d is fenced by epoch %d", producerID, epoch, current),
		Metadata: map[string]string{
			MetadataProducerID:   producerID,
			MetadataEpoch:        strconv.FormatUint(epoch, 10),
			MetadataCurrentEpoch: strconv.FormatUint(current, 10),
		},
	}
}

// QueueFull reports that a partition leader's queue of produce calls
// waiting to be proposed is full; nothing was written; retry after
// retryAfterMs.
func QueueFull(queuedBytes, queueBytesMax int, retryAfterMs int64) error {
	return &Error{Reason: heraldpb.ErrorReason_QUEUE_FULL, Code: codes.ResourceExhausted,
		Message:  fmt.Sprintf("client: produce queue full: %d bytes waiting, the limit is %d; retry after %d ms", queuedBytes, queueBytesMax, retryAfterMs),
		Metadata: map[string]string{MetadataRetryAfterMs: strconv.FormatInt(retryAfterMs, 10)}}
}

// DuplicateSequence reports an idempotent producer's sequence committed
// too long ago for the partition to remember its position; detail says
// which. Nothing was written again.
func DuplicateSequence(detail string) error {
	return &Error{Reason: heraldpb.ErrorReason_DUPLICATE_SEQUENCE, Code: codes.FailedPrecondition,
		Message: "client: duplicate sequence: " + detail}
}

// Status converts err to the gRPC status it travels as. Herald errors
// (typed, or sentinels, possibly wrapped) get their code and an ErrorInfo
// detail; context errors become DeadlineExceeded or Canceled; an error that
// already carries a gRPC status keeps it; anything else is Internal. The
// message is err.Error(), so wrapping context reaches the caller.
//
// A nil err gives an OK status.
func Status(err error) *status.Status {
	if err == nil {
		return status.New(codes.OK, "")
	}
	msg := err.Error()
	var (
		notLeader  *NotLeaderError
		outOfRange *OffsetOutOfRangeError
		herr       *Error
		unreach    *UnreachableError
	)
	switch {
	case errors.As(err, &notLeader):
		return withInfo(codes.FailedPrecondition, msg, heraldpb.ErrorReason_NOT_LEADER, map[string]string{
			MetadataLeaderID:   notLeader.LeaderID,
			MetadataLeaderAddr: notLeader.LeaderAddr,
		})
	case errors.As(err, &outOfRange):
		return withInfo(codes.OutOfRange, msg, heraldpb.ErrorReason_OFFSET_OUT_OF_RANGE, map[string]string{
			MetadataRequested:     strconv.FormatUint(outOfRange.Requested, 10),
			MetadataLowWatermark:  strconv.FormatUint(outOfRange.Low, 10),
			MetadataHighWatermark: strconv.FormatUint(outOfRange.High, 10),
		})
	case errors.As(err, &herr):
		if herr.Reason == heraldpb.ErrorReason_ERROR_REASON_UNSPECIFIED {
			return status.New(herr.code(), msg)
		}
		return withInfo(herr.code(), msg, herr.Reason, herr.Metadata)
	case errors.As(err, &unreach):
		return status.New(codes.Unavailable, msg)
	}
	for _, reason := range reasonOrder {
		if errors.Is(err, reasonSentinels[reason]) {
			return withInfo(reasonCode(reason), msg, reason, nil)
		}
	}
	switch {
	case errors.Is(err, ErrUnavailable):
		return status.New(codes.Unavailable, msg)
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, msg)
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, msg)
	}
	if st, ok := status.FromError(err); ok {
		return st
	}
	return status.New(codes.Internal, msg)
}

// withInfo builds a status carrying an ErrorInfo detail.
func withInfo(code codes.Code, msg string, reason heraldpb.ErrorReason, md map[string]string) *status.Status {
	st := status.New(code, msg)
	detailed, err := st.WithDetails(&errdetails.ErrorInfo{Domain: ErrorDomain, Reason: reason.String(), Metadata: md})
	if err != nil {
		// Only a detail that cannot be marshalled fails; ErrorInfo always can.
		return st
	}
	return detailed
}

// FromStatus converts an error returned by a Herald RPC into the SDK's
// typed errors: NotLeaderError, OffsetOutOfRangeError or Error. A status
// without a Herald ErrorInfo becomes an Error without a reason (so a
// transport-level Unavailable matches ErrUnavailable). An error that is not
// a gRPC status is returned unchanged; nil gives nil.
func FromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	if st.Code() == codes.OK {
		return nil
	}
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetDomain() != ErrorDomain {
			continue
		}
		value, known := heraldpb.ErrorReason_value[info.GetReason()]
		if !known {
			break // a reason newer than this SDK: keep the code only
		}
		reason := heraldpb.ErrorReason(value)
		md := info.GetMetadata()
		switch reason {
		case heraldpb.ErrorReason_NOT_LEADER:
			return &NotLeaderError{LeaderID: md[MetadataLeaderID], LeaderAddr: md[MetadataLeaderAddr]}
		case heraldpb.ErrorReason_OFFSET_OUT_OF_RANGE:
			return &OffsetOutOfRangeError{
				Requested: parseUint(md[MetadataRequested]),
				Low:       parseUint(md[MetadataLowWatermark]),
				High:      parseUint(md[MetadataHighWatermark]),
			}
		}
		return &Error{Reason: reason, Code: st.Code(), Message: st.Message(), Metadata: md}
	}
	return &Error{Code: st.Code(), Message: st.Message()}
}

// parseUint reads a metadata number; a missing or malformed one is 0.
func parseUint(s string) uint64 {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// errorCode returns the gRPC code err travels with (see Status).
func errorCode(err error) codes.Code {
	return Status(err).Code()
}

// errorReason returns the Herald reason of err, or UNSPECIFIED.
func errorReason(err error) heraldpb.ErrorReason {
	var (
		notLeader  *NotLeaderError
		outOfRange *OffsetOutOfRangeError
		herr       *Error
	)
	switch {
	case errors.As(err, &notLeader):
		return heraldpb.ErrorReason_NOT_LEADER
	case errors.As(err, &outOfRange):
		return heraldpb.ErrorReason_OFFSET_OUT_OF_RANGE
	case errors.As(err, &herr):
		return herr.Reason
	}
	return heraldpb.ErrorReason_ERROR_REASON_UNSPECIFIED
}
