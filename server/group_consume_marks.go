package server

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	heraldlog "github.com/heraldlog/herald/log"
	"github.com/heraldlog/herald/partition"
)

// The idempotent consumer's processed marks on a GroupConsume stream
// (issue 12, scope item 5; the state is in log/group_marks.go):
//
//   - an ack may carry marks (GroupConsumeAck.marks); they are checked
//     here per ack (a bad one refuses that ack alone, nothing written) and
//     proposed in the same GroupAck command as the offsets, so a mark and
//     its acknowledgement apply together or not at all;
//   - a batch carries, per event, the group's mark of the event's
//     idempotency key as applied on this leader
//     (GroupConsumeBatch.processed_sequences), read after the delivery was
//     recorded, so the member decides without another round trip.

// groupMarkMetrics count the processed marks.
type groupMarkMetrics struct {
	written   *prometheus.CounterVec
	evicted   *prometheus.CounterVec
	processed *prometheus.CounterVec
}

func newGroupMarkMetrics() *groupMarkMetrics {
	labels := []string{"topic", "group"}
	return &groupMarkMetrics{
		written: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_group_marks_written_total",
			Help: "Processed marks written with acks that raised a key's sequence (idempotent consumers).",
		}, labels),
		evicted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_group_marks_evicted_total",
			Help: "Processed marks evicted, lowest offset first, to keep a group's partition at 65,536 marks.",
		}, labels),
		processed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_group_delivered_processed_total",
			Help: "Events delivered whose processed mark says a member already processed them (an idempotent consumer skips and acknowledges them).",
		}, labels),
	}
}

func (m *groupMarkMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.written, m.evicted, m.processed}
}

// groupMarksFromWire converts and checks the marks of one ack: at most
// GroupCommandOffsetsMax, each with a key of 1..255 bytes, a sequence
// from 1 and an offset the same ack acknowledges (below before or in
// offsets). The problem is "" when they are sound.
func groupMarksFromWire(marks []*heraldpb.ProcessedMark, before uint64, offsets []uint64) ([]partition.GroupMark, string) {
	if len(marks) == 0 {
		return nil, ""
	}
	if len(marks) > partition.GroupCommandOffsetsMax {
		return nil, fmt.Sprintf("%d processed marks in one ack; the limit is %d; nothing acknowledged", len(marks), partition.GroupCommandOffsetsMax)
	}
	acked := make(map[uint64]struct{}, len(offsets))
	for _, o := range offsets {
		acked[o] = struct{}{}
	}
	out := make([]partition.GroupMark, len(marks))
	for i, m := range marks {
		switch _, ok := acked[m.GetOffset()]; {
		case len(m.GetKey()) == 0 || len(m.GetKey()) > partition.GroupMarkKeyBytesMax:
			return nil, fmt.Sprintf("processed mark %d: key of %d bytes, want 1..%d; nothing acknowledged", i, len(m.GetKey()), partition.GroupMarkKeyBytesMax)
		case m.GetSequence() == 0:
			return nil, fmt.Sprintf("processed mark %d: sequence 0 (tenant sequences start at 1); nothing acknowledged", i)
		case !ok && m.GetOffset() >= before:
			return nil, fmt.Sprintf("processed mark %d: offset %d is not acknowledged by the same ack; nothing acknowledged", i, m.GetOffset())
		}
		out[i] = partition.GroupMark{Key: m.GetKey(), Sequence: m.GetSequence(), Offset: m.GetOffset()}
	}
	return out, ""
}

// marksBelowCursor returns why marks cannot be written ("" when they can):
// an offset at or above the group's cursor was never delivered.
func marksBelowCursor(marks []partition.GroupMark, delivered uint64) string {
	for i, m := range marks {
		if m.Offset >= delivered {
			return fmt.Sprintf("processed mark %d: offset %d at or above the group's cursor %d (never delivered); nothing acknowledged", i, m.Offset, delivered)
		}
	}
	return ""
}

// recordMarks counts what a GroupAck did with its marks.
func (c *groupConsumer) recordMarks(res partition.GroupResult) {
	m := c.n.metrics.groupMarks
	if res.MarksWritten > 0 {
		m.written.WithLabelValues(c.topic, c.group).Add(float64(res.MarksWritten))
	}
	if res.MarksEvicted > 0 {
		m.evicted.WithLabelValues(c.topic, c.group).Add(float64(res.MarksEvicted))
		c.n.logger.Info("group consume: processed marks evicted (the group's partition holds the maximum; the lowest offsets go first)",
			"topic", c.topic, "partition", c.index, "group", c.group, "evicted", res.MarksEvicted, "max", partition.GroupMarksMax)
	}
}

// markKey is a record's idempotency key (wire.IdempotencyKey) read from
// its body, the event's stored fields; "" when it has none.
type markKey struct {
	key       string
	byEventID bool
}

// idempotencyKeyOf reads the event id and causation id of rec's body.
func idempotencyKeyOf(rec *heraldlog.Record) markKey {
	var eventID, causationID string
	b := rec.Body
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return markKey{}
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == eventIDField || num == eventCausationField) {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return markKey{}
			}
			if num == eventIDField {
				eventID = string(v)
			} else {
				causationID = string(v)
			}
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return markKey{}
		}
		b = b[n:]
	}
	key, byEventID := wire.IdempotencyKey(rec.Tenant, causationID, eventID)
	return markKey{key: key, byEventID: byEventID}
}

// Event fields read for the idempotency key.
var (
	eventIDField        = fieldNumber(eventDescriptor, "event_id", protoreflect.StringKind)
	eventCausationField = fieldNumber(eventDescriptor, "causation_id", protoreflect.StringKind)
)

// processedSequences returns, per event sent (in the batch's order), the
// group's mark of its key (nil when none has one) and counts those
// processed already. A read failure sends the batch without marks (the
// member then processes as if unmarked: at least once still holds) and is
// logged.
func (c *groupConsumer) processedSequences(sent []groupEntry) []uint64 {
	keys := make([]string, len(sent))
	any := false
	for i, e := range sent {
		keys[i] = e.mark.key
		any = any || e.mark.key != ""
	}
	if !any {
		return nil
	}
	seqs, err := c.r.GroupMarks(c.group, keys)
	if err != nil {
		c.n.logger.Warn("group consume: reading processed marks failed; the batch goes without them",
			slog.String("topic", c.topic), slog.Uint64("partition", uint64(c.index)), slog.String("group", c.group), slog.Any("err", err))
		return nil
	}
	found := false
	processed := 0
	for i, s := range seqs {
		if s != 0 {
			found = true
			if wire.Processed(sent[i].sequence, s, sent[i].mark.byEventID) {
				processed++
			}
		}
	}
	if processed > 0 {
		c.n.metrics.groupMarks.processed.WithLabelValues(c.topic, c.group).Add(float64(processed))
	}
	if !found {
		return nil
	}
	return seqs
}
