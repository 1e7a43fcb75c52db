package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// The idempotent consumer (issue 12, scope item 5): a group member that
// processes each event at most once per idempotency key, with the state
// kept in Herald itself (docs/protocol.md, "The idempotent consumer").
//
// An event's idempotency key is its tenant with its causation id, or with
// its event id when it has no causation id (wire.IdempotencyKey). For each
// group and partition Herald keeps a processed mark per key: the highest
// tenant sequence a member acknowledged with AckProcessed, written in the
// same Raft command as the acknowledgement. The partition's leader sends
// each event with its key's mark (GroupMessage.ProcessedSequence), and
// Processed decides:
//
//   - keyed by causation id: processed when the mark is at or above the
//     event's sequence (a cause has several events, in sequence order);
//   - keyed by event id: processed when there is any mark (an event id
//     names one event; a producer retry that wrote it twice gave the copy
//     a higher sequence).
//
// What is at most once: the handler of ConsumeGroupOnce (or a caller that
// skips Processed messages and acknowledges with AckProcessed) does not
// see an event again, on any member of the group, after its AckProcessed
// returned nil; not after a rebalance, a restart of every member or every
// node, nor a `herald group reset --to earliest`. What stays at least
// once: a handler whose side effect happened but whose AckProcessed did
// not apply (the member crashed or was fenced in between, or the handler
// outlasted the group's ack wait so that the event went to another member
// before the mark was written) runs again for that event. Make the side
// effect itself idempotent if that window matters.
//
// Marks are bounded: a group keeps 65,536 per partition, and evicts the
// lowest offsets first beyond that; an evicted key's events are no longer
// recognised. A retried write of an event with a causation id gets a new,
// higher sequence and is processed as a new event of that cause: such
// producers should use idempotent producers or the topic's event id
// dedupe window, which drop the copy at write time.

// ProcessedMark is one processed mark on the wire (GroupConsumeStream.AckWithMarks).
type ProcessedMark = heraldpb.ProcessedMark

// groupOnceNackDelay is how long ConsumeGroupOnce waits before an event
// whose handler failed is delivered again.
const groupOnceNackDelay = time.Second

// groupOnceLocalMarksMax bounds the marks a ConsumeGroupOnce remembers
// itself, for the batches the leader built before its last acks applied.
const groupOnceLocalMarksMax = 4096

// IdempotencyKey returns the message's idempotency key and whether it is
// its event id's ("" when the event has neither a causation id nor an
// event id: it is never marked).
func (m *GroupMessage) IdempotencyKey() (key string, byEventID bool) {
	e := m.Event
	return wire.IdempotencyKey(e.GetTenantId(), e.GetCausationId(), e.GetEventId())
}

// Processed reports whether a member of the group already processed the
// event, by its key's processed mark when the leader sent it (the rules
// above).
func (m *GroupMessage) Processed() bool {
	key, byEventID := m.IdempotencyKey()
	return key != "" && wire.Processed(m.Event.GetSequence(), m.ProcessedSequence, byEventID)
}

// AckProcessed acknowledges the message as Ack does and, in the same
// replicated command, raises its key's processed mark to the event's
// sequence, so no member of the group processes it (or, for a causation
// id, an event of that cause at or below its sequence) again. Its errors
// are Ack's: after an error matching ErrUnknownOutcome the mark may or may
// not have been written.
func (m *GroupMessage) AckProcessed(ctx context.Context) error {
	key, _ := m.IdempotencyKey()
	if key == "" {
		return m.Ack(ctx)
	}
	return m.stream.settle(ctx, false, 0, m.Offset, &heraldpb.ProcessedMark{Key: key, Sequence: m.Event.GetSequence(), Offset: m.Offset})
}

// GroupHandler handles one event of ConsumeGroupOnce.
type GroupHandler func(ctx context.Context, m *GroupMessage) error

// ConsumeGroupOnce joins group of topic as ConsumeGroup does and calls
// handler, from one goroutine, for each event no member of the group
// processed yet (the guarantee above). An event already processed is
// acknowledged without calling handler. After handler returns nil the
// event is acknowledged with its processed mark (AckProcessed); after it
// returns an error the event is nacked and delivered again after 1 s.
// A failed acknowledgement is logged and consumption goes on (the event
// is redelivered if the ack did not apply). It returns nil when ctx ends,
// or the error that ended the consumer (such as ErrGroupNotFound).
func (c *Client) ConsumeGroupOnce(ctx context.Context, topic, group string, opts GroupConsumerOptions, handler GroupHandler) error {
	if handler == nil {
		return InvalidArgument("handler", "ConsumeGroupOnce needs a handler")
	}
	g, err := c.ConsumeGroup(ctx, topic, group, opts)
	if err != nil {
		return err
	}
	defer g.Close()
	log := c.log.With("topic", topic, "group", group, "member", g.MemberID())
	local := newLocalMarks(groupOnceLocalMarksMax)
	for {
		m, err := g.Next(ctx)
		switch {
		case errors.Is(err, ErrConsumerClosed) || (err != nil && ctx.Err() != nil):
			return nil
		case err != nil:
			return err
		}
		key, byEventID := m.IdempotencyKey()
		localSeq := local.get(m.Partition, key)
		if m.Processed() || (key != "" && wire.Processed(m.Event.GetSequence(), localSeq, byEventID)) {
			log.Debug("herald: idempotent consumer: event already processed; acknowledged without the handler",
				"partition", m.Partition, "offset", m.Offset, "sequence", m.Event.GetSequence(), "mark", max(m.ProcessedSequence, localSeq))
			if err := m.Ack(ctx); err != nil && ctx.Err() == nil {
				log.Warn("herald: idempotent consumer: ack of a processed event failed; it is redelivered and skipped again", "partition", m.Partition, "offset", m.Offset, "err", err)
			}
			continue
		}
		if err := handler(ctx, m); err != nil {
			log.Warn("herald: idempotent consumer: handler failed; the event is delivered again", "partition", m.Partition, "offset", m.Offset,
				"delay", groupOnceNackDelay, "err", err)
			if err := m.Nack(ctx, groupOnceNackDelay); err != nil && ctx.Err() == nil {
				log.Warn("herald: idempotent consumer: nack failed; the event is redelivered after the ack wait", "partition", m.Partition, "offset", m.Offset, "err", err)
			}
			continue
		}
		if err := m.AckProcessed(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("herald: idempotent consumer: processed, but the ack with its mark failed; if it did not apply the event is processed again",
				"partition", m.Partition, "offset", m.Offset, "err", err)
			continue
		}
		if key != "" {
			local.put(m.Partition, key, m.Event.GetSequence())
		}
	}
}

// localMarks are the marks one ConsumeGroupOnce wrote, at most max (the
// oldest forgotten first): a batch the leader built before an ack applied
// carries the key's older mark. One goroutine.
type localMarks struct {
	max   int
	seqs  map[string]uint64
	order []string
}

func newLocalMarks(max int) *localMarks {
	return &localMarks{max: max, seqs: map[string]uint64{}}
}

func localMarkKey(partition uint32, key string) string { return fmt.Sprintf("%d/%s", partition, key) }

func (l *localMarks) get(partition uint32, key string) uint64 {
	if key == "" {
		return 0
	}
	return l.seqs[localMarkKey(partition, key)]
}

func (l *localMarks) put(partition uint32, key string, seq uint64) {
	k := localMarkKey(partition, key)
	if old, ok := l.seqs[k]; ok {
		l.seqs[k] = max(old, seq)
		return
	}
	if len(l.order) >= l.max {
		delete(l.seqs, l.order[0])
		l.order = l.order[1:]
	}
	l.seqs[k] = seq
	l.order = append(l.order, k)
}
