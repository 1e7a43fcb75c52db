// Package client is the Go SDK of Herald, a clustered, Raft-replicated
// event log for realtime systems.
//
// Connect with New, giving one or more node addresses; the Client keeps a
// metadata cache and routes each call to the node that can serve it (the
// partition's leader for writes), following NOT_LEADER answers and
// retrying transient failures with backoff where a retry is safe:
//
//	c, err := client.New(ctx, client.Config{Servers: []string{"127.0.0.1:7701"}})
//	if err != nil { ... }
//	defer c.Close()
//	res, err := c.Produce(ctx, "orders", &client.Event{TenantId: "acme", Payload: []byte("hi")})
//
// Produce appends events; each result names the event's partition, offset
// and per-tenant sequence (assigned by the cluster, never by a client
// clock). NewProducer gives an idempotent producer: a resend after an
// unknown outcome is stored once. Fetch reads one page of a partition from
// an offset, a tenant sequence, a time, the earliest or the latest
// position, optionally as a long poll; a Reader (NewReader, TenantReader)
// is the cursor built on it: page after page, long-polling at the end of
// the log, with a Position to resume from with no gap and no repeat.
// Subscribe (or NewSubscription, for Lag and Positions) is the live
// stream: an iterator (range over func) over the events of every
// partition, or some, pushed by a replica as they are produced within a
// credit window the SDK gives back as the caller takes events; a stream
// whose node dies is resumed on another replica at the next event, and a
// position the partition no longer holds ends it with a typed error.
// CreateTopic, AlterTopic, DeleteTopic, CreateTenant,
// SetTenantQuota and the List/Describe calls manage the registry; registry
// reads are linearizable unless Stale is given. CreateGroup, ListGroups,
// DescribeGroup, ResetGroup and DeleteGroup administer consumer groups and
// report their lag per partition. JoinGroup, GroupHeartbeat and LeaveGroup
// are the lower-level membership calls a group consumer is built on: they
// go to the group's coordinator (the leader of the topic's partition 0),
// following NOT_LEADER, and answer a member's partitions and generation.
// GroupConsume opens, on a partition's
// leader, the stream through which the member that owns the partition (under
// the group's generation) receives batches and acknowledges or nacks them;
// ConsumeGroup is the group consumer built on both: a GroupConsumer joins
// the group, heartbeats, opens a stream on the leader of each partition
// it owns and hands their events to Next (or the Messages iterator) with
// their partition, offset and delivery count; each GroupMessage is
// acknowledged (Ack) or nacked (Nack) on the stream that delivered it. On
// a rebalance it closes its streams, joins again and opens those of its
// new partitions; a stream whose leader moves or fails is reopened on the
// new leader. Delivery is at least once: an ack of a message whose
// partition moved fails (ErrGroupFenced, or ErrUnknownOutcome when it was
// sent) and the event is redelivered to its new owner unless the ack was
// recorded. Close leaves the group.
//
// Backpressure: every produce answer may ask for a pause before the next
// request to its partition (throttle_ms), and a leader over a limit
// refuses with an error matching ErrThrottled (nothing written; RetryAfter
// gives the hint and the limit). In the default blocking mode
// (Config.Backpressure) Produce and Producer.Send wait out each
// partition's pause and resend refusals after the hint plus jitter, at
// most Config.MaxThrottleRetries times; in fail-fast mode they return
// ErrThrottled at once instead, without sending. PendingBytes reports the
// bytes of unanswered produce calls, and Config.MaxPendingBytes bounds
// them. See docs/protocol.md, "SDK backpressure".
//
// Errors are typed: match them with errors.Is against the Err* sentinels
// (ErrTopicNotFound, ErrUnknownOutcome, ...) or errors.As with
// *NotLeaderError, *OffsetOutOfRangeError and *EpochChangedError. ErrUnknownOutcome means a
// write may or may not have been committed; any other error of a write
// means it was not.
//
// The wire contract (gRPC, package heraldpb) is documented in
// docs/protocol.md; a Client is safe for concurrent use.
package client
