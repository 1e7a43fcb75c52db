package server

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	"github.com/heraldlog/herald/partition"
)

// Dead letters of a consumer group (docs/architecture.md, "Consumer
// groups"): a due offset whose delivery count reached the group's max
// deliveries is not redelivered. The partition's leader, in the serving
// loop of the stream that owns the partition, writes the event to the
// topic's dead-letter topic through the node's normal produce path (which
// forwards to the dead-letter partition's leader), then proposes
// GroupDeadLetter: the offset is done and the floor moves past it.
//
// The copy keeps the original envelope (tenant, key, payload, headers,
// ...) without its server-assigned fields, its idempotent-producer fields
// and its TTL, with the headers below added, and an event_id derived from
// (topic, group, partition, offset): a retry after a failure or an
// unknown outcome is dropped as a duplicate where the dead-letter topic
// has a dedupe window.
//
// When the write fails, nothing is proposed: the offsets stay pending and
// the loop tries again after groupDeadLetterRetryWait (the group's other
// offsets keep flowing). With no dead-letter topic declared (or one that
// no longer exists), the offsets are dead-lettered all the same, with the
// reason in the Raft log and a warning in the node's log.

// Headers of a dead-lettered event.
const (
	deadLetterHeaderReason     = "herald-dead-letter-reason"
	deadLetterHeaderGroup      = "herald-dead-letter-group"
	deadLetterHeaderTopic      = "herald-dead-letter-topic"
	deadLetterHeaderPartition  = "herald-dead-letter-partition"
	deadLetterHeaderOffset     = "herald-dead-letter-offset"
	deadLetterHeaderDeliveries = "herald-dead-letter-deliveries"
	deadLetterHeaderEventID    = "herald-dead-letter-event-id"
)

// deadLetterReasonMaxDeliveries is the reason of an offset delivered max
// deliveries times without an acknowledgement.
const deadLetterReasonMaxDeliveries = "max_deliveries"

// deadLetterNamespace makes dead-letter event ids (UUIDv5, SHA-1).
var deadLetterNamespace = uuid.MustParse("6f1d7d0e-4a43-4c59-9a4e-5d1f0b1e7c21")

// deadLetterEventID is the event id of the dead-letter copy of offset of
// partition of topic for group: the same on every leader and attempt.
func deadLetterEventID(topic, group string, partitionIndex uint32, offset uint64) string {
	key := topic + "\x00" + group + "\x00" + strconv.FormatUint(uint64(partitionIndex), 10) + "\x00" + strconv.FormatUint(offset, 10)
	return uuid.NewSHA1(deadLetterNamespace, []byte(key)).String()
}

// deadLetterEvent makes the dead-letter copy of the event at d.
func (c *groupConsumer) deadLetterEvent(d partition.PendingDelivery, body []byte, tenant string) (*heraldpb.Event, error) {
	ev := &heraldpb.Event{}
	if err := proto.Unmarshal(body, ev); err != nil {
		return nil, err
	}
	original := ev.GetEventId()
	ev.EventId = deadLetterEventID(c.topic, c.group, c.index, d.Offset)
	ev.TenantId = tenant
	ev.Offset, ev.Sequence, ev.Partition, ev.ProducedAtUnixNano = 0, 0, 0, 0
	ev.ProducerId, ev.ProducerSeq, ev.ProducerEpoch = "", 0, 0
	ev.TtlMs = 0
	if ev.Headers == nil {
		ev.Headers = map[string]string{}
	}
	ev.Headers[deadLetterHeaderReason] = deadLetterReasonMaxDeliveries
	ev.Headers[deadLetterHeaderGroup] = c.group
	ev.Headers[deadLetterHeaderTopic] = c.topic
	ev.Headers[deadLetterHeaderPartition] = strconv.FormatUint(uint64(c.index), 10)
	ev.Headers[deadLetterHeaderOffset] = strconv.FormatUint(d.Offset, 10)
	ev.Headers[deadLetterHeaderDeliveries] = strconv.FormatUint(uint64(d.Deliveries), 10)
	if original != "" {
		ev.Headers[deadLetterHeaderEventID] = original
	}
	return ev, nil
}

// deadLetter writes due (at most groupDeadLettersPerStepMax offsets at max
// deliveries) to the dead-letter topic and proposes GroupDeadLetter.
// done reports that the proposal applied; a failed write or an unknown
// outcome sets deadLetterRetryAt and returns done false, nil. Errors end
// the stream (not leader, unknown group, corruption).
func (c *groupConsumer) deadLetter(ctx context.Context, due []partition.PendingDelivery) (done bool, err error) {
	n, m := c.n, c.n.metrics.groupConsume
	slices.SortFunc(due, func(a, b partition.PendingDelivery) int { return cmp.Compare(a.Offset, b.Offset) })
	offsets := make([]uint64, len(due))
	for i, d := range due {
		offsets[i] = d.Offset
	}
	dlt := ""
	if t := c.topicNow(ctx); t != nil {
		dlt = t.DeadLetterTopic
	}
	var events []*heraldpb.Event
	if dlt != "" {
		for _, d := range due {
			if d.Offset < c.r.LowWatermark() {
				n.logger.Warn("consumer group dead letter: event removed by retention; dead-lettered without a copy",
					"topic", c.topic, "partition", c.index, "group", c.group, "offset", d.Offset)
				continue
			}
			recs, rerr := c.r.Read(d.Offset, 1, 1)
			if rerr != nil || len(recs) == 0 || recs[0].Offset != d.Offset {
				n.logger.Warn("consumer group dead letter: event unreadable; dead-lettered without a copy",
					"topic", c.topic, "partition", c.index, "group", c.group, "offset", d.Offset, "err", rerr)
				continue
			}
			ev, derr := c.deadLetterEvent(d, recs[0].Body, recs[0].Tenant)
			if derr != nil {
				return false, c.error(derr)
			}
			events = append(events, ev)
		}
	}
	if len(events) > 0 {
		// The node's own request: none of the member's call metadata
		// (a forwarded mark would stop the produce path from forwarding).
		wctx, cancel := context.WithTimeout(metadata.NewIncomingContext(ctx, metadata.MD{}), groupDeadLetterWriteTimeout)
		_, perr := (&heraldService{node: n}).Produce(wctx, &heraldpb.ProduceRequest{Topic: dlt, Events: events})
		cancel()
		switch {
		case errors.Is(perr, wire.ErrTopicNotFound):
			n.logger.Warn("consumer group dead letter: the dead-letter topic no longer exists; dead-lettering without a copy",
				"topic", c.topic, "dead_letter_topic", dlt, "group", c.group)
			dlt = ""
		case perr != nil:
			if ctx.Err() != nil {
				return false, context.Cause(ctx)
			}
			m.deadLetterFailures.WithLabelValues(c.topic, c.group).Inc()
			n.logger.Warn("consumer group dead letter: writing to the dead-letter topic failed; the offsets stay pending and are tried again",
				"topic", c.topic, "partition", c.index, "group", c.group, "dead_letter_topic", dlt,
				"offsets", len(events), "retry_in", groupDeadLetterRetryWait, "err", perr)
			c.deadLetterRetryAt = time.Now().Add(groupDeadLetterRetryWait)
			return false, nil
		}
	}
	reason := deadLetterReasonMaxDeliveries
	if dlt == "" {
		reason += " (no dead-letter topic)"
	}
	res, err := c.r.GroupDeadLetter(c.group, offsets, reason)
	if errors.Is(err, partition.ErrUnknownOutcome) {
		n.logger.Warn("consumer group dead letter: proposal outcome unknown; tried again",
			"topic", c.topic, "partition", c.index, "group", c.group, "err", err)
		c.deadLetterRetryAt = time.Now().Add(groupDeadLetterRetryWait)
		return false, nil
	}
	if err != nil {
		return false, c.error(err)
	}
	for i, d := range due {
		if res.Outcomes[i] != partition.OffsetApplied {
			continue
		}
		m.deadLetters.WithLabelValues(c.topic, c.group).Inc()
		c.settle(d.Offset)
		level := slog.LevelInfo
		if dlt == "" {
			level = slog.LevelWarn // no copy kept anywhere but this line
		}
		n.logger.Log(ctx, level, "consumer group: event dead-lettered", "topic", c.topic, "partition", c.index, "group", c.group,
			"offset", d.Offset, "deliveries", d.Deliveries, "reason", reason, "dead_letter_topic", dlt)
	}
	return true, nil
}
