package wire

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
)

// The constructors of Herald errors, one per condition. Each sets the
// metadata herald.proto documents for its reason; the gRPC code comes from
// the error table. Nodes return them from RPCs; the SDK also makes a few
// locally (a request it refuses before sending).

// InvalidArgument reports a bad request field.
func InvalidArgument(field, format string, args ...any) error {
	return newError(heraldpb.ErrorReason_INVALID_ARGUMENT,
		"herald: invalid "+field+": "+fmt.Sprintf(format, args...),
		map[string]string{MetadataField: field})
}

// PayloadTooLarge reports an event of size bytes over the topic's max.
func PayloadTooLarge(size, max uint64) error {
	return newError(heraldpb.ErrorReason_PAYLOAD_TOO_LARGE,
		fmt.Sprintf("herald: payload too large: %d bytes, max %d", size, max),
		map[string]string{
			MetadataSize: strconv.FormatUint(size, 10),
			MetadataMax:  strconv.FormatUint(max, 10),
		})
}

// TopicNotFound reports that no topic is called name.
func TopicNotFound(name string) error {
	return newError(heraldpb.ErrorReason_TOPIC_NOT_FOUND,
		fmt.Sprintf("herald: topic %q not found", name),
		map[string]string{MetadataTopic: name})
}

// TopicExists reports that a topic called name already exists.
func TopicExists(name string) error {
	return newError(heraldpb.ErrorReason_TOPIC_EXISTS,
		fmt.Sprintf("herald: topic %q already exists", name),
		map[string]string{MetadataTopic: name})
}

// PartitionNotFound reports that topic has no partition with that index
// (or that this node does not host it).
func PartitionNotFound(topic string, partition uint32) error {
	return newError(heraldpb.ErrorReason_PARTITION_NOT_FOUND,
		fmt.Sprintf("herald: topic %q has no partition %d", topic, partition),
		map[string]string{
			MetadataTopic:     topic,
			MetadataPartition: strconv.FormatUint(uint64(partition), 10),
		})
}

// NotLeader reports that this node does not lead the group; id and addr
// name the leader when known (empty otherwise).
func NotLeader(id, addr string) error {
	return &NotLeaderError{LeaderID: id, LeaderAddr: addr}
}

// NoLeader reports that what (a partition or the controller) has no leader
// elected yet. The request was not applied; retry after a backoff.
func NoLeader(what string) error {
	return newError(heraldpb.ErrorReason_NO_LEADER, "herald: no leader for "+what, nil)
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
	return newError(heraldpb.ErrorReason_NO_LEADER, "herald: node "+node+" is "+state+"; retry another node", nil)
}

// OffsetOutOfRange reports a read of requested outside [low, high).
func OffsetOutOfRange(requested, low, high uint64) error {
	return &OffsetOutOfRangeError{Requested: requested, Low: low, High: high}
}

// EpochChanged reports a subscription whose position belongs to epoch
// requested while the partition is now at epoch current, with the current
// bounds [low, high).
func EpochChanged(requested, current, low, high uint64) error {
	return &EpochChangedError{Epoch: requested, CurrentEpoch: current, Low: low, High: high}
}

// UnknownOutcome reports a write that may or may not have been committed,
// for the reason given.
func UnknownOutcome(format string, args ...any) error {
	return newError(heraldpb.ErrorReason_UNKNOWN_OUTCOME, "herald: unknown outcome: "+fmt.Sprintf(format, args...), nil)
}

// Corruption reports a record that failed its checksum or another storage
// invariant, naming the partition (its group id) and the offset.
func Corruption(partition, offset uint64, format string, args ...any) error {
	return newError(heraldpb.ErrorReason_CORRUPTION,
		fmt.Sprintf("herald: corruption in partition %d at offset %d: %s", partition, offset, fmt.Sprintf(format, args...)),
		map[string]string{
			MetadataPartition: strconv.FormatUint(partition, 10),
			MetadataOffset:    strconv.FormatUint(offset, 10),
		})
}

// TenantNotFound reports that no tenant has the id.
func TenantNotFound(id string) error {
	return newError(heraldpb.ErrorReason_TENANT_NOT_FOUND,
		fmt.Sprintf("herald: tenant %q not found", id),
		map[string]string{MetadataTenant: id})
}

// TenantExists reports that a tenant with the id already exists.
func TenantExists(id string) error {
	return newError(heraldpb.ErrorReason_TENANT_EXISTS,
		fmt.Sprintf("herald: tenant %q already exists", id),
		map[string]string{MetadataTenant: id})
}

// SchemaVersionNotAllowed reports an event of schema at a version the topic
// does not allow; allowed lists the versions it does.
func SchemaVersionNotAllowed(schema string, version uint32, allowed []uint32) error {
	list := make([]string, len(allowed))
	for i, v := range allowed {
		list[i] = strconv.FormatUint(uint64(v), 10)
	}
	return newError(heraldpb.ErrorReason_SCHEMA_VERSION_NOT_ALLOWED,
		fmt.Sprintf("herald: schema %q version %d not allowed (allowed: %s)", schema, version, strings.Join(list, ",")),
		map[string]string{
			MetadataSchema:  schema,
			MetadataVersion: strconv.FormatUint(uint64(version), 10),
			MetadataAllowed: strings.Join(list, ","),
		})
}

// TTLTooLarge reports an event TTL of ttlMs over the topic's maximum maxMs.
func TTLTooLarge(ttlMs, maxMs int64) error {
	return newError(heraldpb.ErrorReason_TTL_TOO_LARGE,
		fmt.Sprintf("herald: ttl too large: %d ms, max %d ms", ttlMs, maxMs),
		map[string]string{
			MetadataTTLMs:    strconv.FormatInt(ttlMs, 10),
			MetadataMaxTTLMs: strconv.FormatInt(maxMs, 10),
		})
}

// MissingField reports an event without an envelope field the topic
// requires.
func MissingField(field, format string, args ...any) error {
	return newError(heraldpb.ErrorReason_MISSING_FIELD,
		"herald: missing "+field+": "+fmt.Sprintf(format, args...),
		map[string]string{MetadataField: field})
}

// TopicInUse reports a delete, without force, of a topic whose last event
// was produced at lastProduceUnixNano (recently).
func TopicInUse(topic string, lastProduceUnixNano int64) error {
	return newError(heraldpb.ErrorReason_TOPIC_IN_USE,
		fmt.Sprintf("herald: topic %q is in use: last event produced at %s; delete with force to delete anyway",
			topic, time.Unix(0, lastProduceUnixNano).UTC().Format(time.RFC3339Nano)),
		map[string]string{
			MetadataTopic:               topic,
			MetadataLastProduceUnixNano: strconv.FormatInt(lastProduceUnixNano, 10),
		})
}

// OutOfOrderSequence reports an idempotent producer's event whose
// producer_seq is got where the cluster expected expected. Nothing of the
// request was written.
func OutOfOrderSequence(producerID string, expected, got uint64) error {
	return newError(heraldpb.ErrorReason_OUT_OF_ORDER_SEQUENCE,
		fmt.Sprintf("herald: producer %s: out of order sequence %d, expected %d", producerID, got, expected),
		map[string]string{
			MetadataProducerID: producerID,
			MetadataExpected:   strconv.FormatUint(expected, 10),
			MetadataGot:        strconv.FormatUint(got, 10),
		})
}

// UnknownProducer reports a sequence other than 1 from an idempotent
// producer the partition does not know; detail says which. Nothing of the
// request was written.
func UnknownProducer(detail string) error {
	return newError(heraldpb.ErrorReason_UNKNOWN_PRODUCER, "herald: unknown producer: "+detail, nil)
}

// ProducerFenced reports a request of producerID under epoch where the
// partition knows the newer current epoch. Nothing of the request was
// written.
func ProducerFenced(producerID string, epoch, current uint64) error {
	return newError(heraldpb.ErrorReason_PRODUCER_FENCED,
		fmt.Sprintf("herald: producer %s: epoch %d is fenced by epoch %d", producerID, epoch, current),
		map[string]string{
			MetadataProducerID:   producerID,
			MetadataEpoch:        strconv.FormatUint(epoch, 10),
			MetadataCurrentEpoch: strconv.FormatUint(current, 10),
		})
}

// QueueFull reports that a partition leader's queue of produce calls
// waiting to be proposed is full; nothing was written; retry after
// retryAfterMs.
func QueueFull(queuedBytes, queueBytesMax int, retryAfterMs int64) error {
	return newError(heraldpb.ErrorReason_QUEUE_FULL,
		fmt.Sprintf("herald: produce queue full: %d bytes waiting, the limit is %d; retry after %d ms", queuedBytes, queueBytesMax, retryAfterMs),
		map[string]string{MetadataRetryAfterMs: strconv.FormatInt(retryAfterMs, 10), MetadataLimit: LimitPartitionQueue})
}

// TenantQueueFull reports that tenant already holds its share of a
// partition leader's produce queue; nothing was written; retry after
// retryAfterMs. Other tenants' calls still find room.
func TenantQueueFull(tenant string, queuedBytes, shareBytes int, retryAfterMs int64) error {
	return newError(heraldpb.ErrorReason_QUEUE_FULL,
		fmt.Sprintf("herald: produce queue full for tenant %s: %d bytes waiting, its share is %d; retry after %d ms", tenant, queuedBytes, shareBytes, retryAfterMs),
		map[string]string{MetadataRetryAfterMs: strconv.FormatInt(retryAfterMs, 10), MetadataLimit: LimitPartitionQueue, MetadataTenant: tenant})
}

// QuotaExceeded reports that tenant is over its quota (events or bytes
// per second) on this partition leader; nothing was written; retry after
// retryAfterMs.
func QuotaExceeded(tenant, detail string, retryAfterMs int64) error {
	return newError(heraldpb.ErrorReason_THROTTLED,
		fmt.Sprintf("herald: throttled: tenant %s is over its quota (%s); retry after %d ms", tenant, detail, retryAfterMs),
		map[string]string{MetadataRetryAfterMs: strconv.FormatInt(retryAfterMs, 10), MetadataLimit: LimitTenantQuota, MetadataTenant: tenant})
}

// ConsumerLagExceeded reports that group, which topic protects, is lag
// events behind on a partition, at or past the pause lag; nothing was
// written; retry after retryAfterMs.
func ConsumerLagExceeded(topic, group string, lag, pauseLag uint64, retryAfterMs int64) error {
	return newError(heraldpb.ErrorReason_THROTTLED,
		fmt.Sprintf("herald: throttled: consumer group %s of %s is %d events behind (pause at %d); retry after %d ms", group, topic, lag, pauseLag, retryAfterMs),
		map[string]string{
			MetadataRetryAfterMs: strconv.FormatInt(retryAfterMs, 10), MetadataLimit: LimitConsumerLag,
			MetadataTopic: topic, MetadataGroup: group,
		})
}

// NodeLimit reports that the node is at one of its limits (what:
// produce_bytes, fetch_bytes, streams, long_polls); detail says which
// bound; nothing was done; retry after retryAfterMs, or elsewhere.
func NodeLimit(what, detail string, retryAfterMs int64) error {
	return newError(heraldpb.ErrorReason_THROTTLED,
		fmt.Sprintf("herald: throttled: node limit on %s (%s); retry after %d ms", what, detail, retryAfterMs),
		map[string]string{MetadataRetryAfterMs: strconv.FormatInt(retryAfterMs, 10), MetadataLimit: LimitNodeLimit, MetadataWhat: what})
}

// RetryAfter returns the retry hint of a THROTTLED or QUEUE_FULL error
// (retry_after_ms), and the limit it names, when err carries one.
func RetryAfter(err error) (time.Duration, string, bool) {
	var e *Error
	if !errors.As(err, &e) || (e.Reason != heraldpb.ErrorReason_THROTTLED && e.Reason != heraldpb.ErrorReason_QUEUE_FULL) {
		return 0, "", false
	}
	ms, perr := strconv.ParseInt(e.Metadata[MetadataRetryAfterMs], 10, 64)
	if perr != nil || ms < 0 {
		return 0, e.Metadata[MetadataLimit], false
	}
	return time.Duration(ms) * time.Millisecond, e.Metadata[MetadataLimit], true
}

// DuplicateSequence reports an idempotent producer's sequence committed
// too long ago for the partition to remember its position; detail says
// which. Nothing was written again.
func DuplicateSequence(detail string) error {
	return newError(heraldpb.ErrorReason_DUPLICATE_SEQUENCE, "herald: duplicate sequence: "+detail, nil)
}

// GroupNotFound reports that topic has no consumer group called group.
func GroupNotFound(topic, group string) error {
	return newError(heraldpb.ErrorReason_GROUP_NOT_FOUND,
		fmt.Sprintf("herald: consumer group %q of topic %q not found", group, topic),
		map[string]string{MetadataTopic: topic, MetadataGroup: group})
}

// GroupExists reports that topic has a consumer group called group with
// another config than the one asked for; detail says which.
func GroupExists(topic, group, detail string) error {
	return newError(heraldpb.ErrorReason_GROUP_EXISTS,
		fmt.Sprintf("herald: consumer group %q of topic %q already exists: %s", group, topic, detail),
		map[string]string{MetadataTopic: topic, MetadataGroup: group})
}

// TooManyGroups reports that partition of topic holds max consumer groups
// already.
func TooManyGroups(topic string, partition uint32, max int) error {
	return newError(heraldpb.ErrorReason_TOO_MANY_GROUPS,
		fmt.Sprintf("herald: partition %d of topic %q holds %d consumer groups, the most it may", partition, topic, max),
		map[string]string{
			MetadataTopic:     topic,
			MetadataPartition: strconv.FormatUint(uint64(partition), 10),
			MetadataMax:       strconv.Itoa(max),
		})
}

// UnknownMember reports that the coordinator of group of topic does not
// know member: it expired, left, or the coordinator moved. Join again.
func UnknownMember(topic, group, member string) error {
	return newError(heraldpb.ErrorReason_UNKNOWN_MEMBER,
		fmt.Sprintf("herald: consumer group %q of topic %q has no member %q here (expired, left, or the coordinator moved); join again", group, topic, member),
		map[string]string{MetadataTopic: topic, MetadataGroup: group, MetadataMember: member})
}

// StaleGeneration reports a command of generation for group of topic
// where the current generation is current; detail says where. Nothing
// was written.
func StaleGeneration(topic, group string, generation, current uint64, detail string) error {
	return newError(heraldpb.ErrorReason_STALE_GENERATION,
		fmt.Sprintf("herald: consumer group %q of topic %q: generation %d is stale, the current one is %d: %s", group, topic, generation, current, detail),
		map[string]string{MetadataTopic: topic, MetadataGroup: group, MetadataCurrentGeneration: strconv.FormatUint(current, 10)})
}

// TooManyMembers reports that the coordinator holds max of what (members
// of group of topic, or groups); nothing changed.
func TooManyMembers(topic, group, what string, max int) error {
	return newError(heraldpb.ErrorReason_TOO_MANY_MEMBERS,
		fmt.Sprintf("herald: consumer group %q of topic %q: the coordinator holds %d %s, the most it may", group, topic, max, what),
		map[string]string{MetadataTopic: topic, MetadataGroup: group, MetadataMax: strconv.Itoa(max)})
}

// GroupFenced reports that generation (and member) is not the current
// assignment of partition of group, which current is; nothing was
// written. detail says which.
func GroupFenced(topic, group string, partition uint32, generation, current uint64, detail string) error {
	return newError(heraldpb.ErrorReason_GROUP_FENCED,
		fmt.Sprintf("herald: consumer group %q of topic %q, partition %d: generation %d fenced (current generation %d): %s",
			group, topic, partition, generation, current, detail),
		map[string]string{
			MetadataTopic:             topic,
			MetadataGroup:             group,
			MetadataPartition:         strconv.FormatUint(uint64(partition), 10),
			MetadataGeneration:        strconv.FormatUint(generation, 10),
			MetadataCurrentGeneration: strconv.FormatUint(current, 10),
		})
}

// Unauthenticated refuses a request without valid credentials; what says
// why (missing, malformed, signature, expired, not_yet_valid). Nothing was
// done.
func Unauthenticated(what, detail string) error {
	return newError(heraldpb.ErrorReason_UNAUTHENTICATED,
		fmt.Sprintf("herald: unauthenticated: %s", detail),
		map[string]string{MetadataWhat: what})
}

// PermissionDenied refuses a request its credentials do not allow; action
// names what was asked (produce, consume, groups, admin), and tenant or
// topic, when not empty, what it was asked for. Nothing was done.
func PermissionDenied(action, tenant, topic, detail string) error {
	md := map[string]string{MetadataAction: action}
	if tenant != "" {
		md[MetadataTenant] = tenant
	}
	if topic != "" {
		md[MetadataTopic] = topic
	}
	return newError(heraldpb.ErrorReason_PERMISSION_DENIED, "herald: permission denied: "+detail, md)
}
