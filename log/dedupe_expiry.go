package log

import (
	"fmt"
	"math"
	"time"
)

// expireEntriesMax bounds how many event ids and producers one
// ExpireDedupe call forgets, so that one apply stays short; the rest goes
// on the next call.
const expireEntriesMax = 10_000

// ExpireDedupe forgets the event-id entries whose until is at or before
// nowUnixNano (in until order), then the idempotent producers last seen
// before nowUnixNano-producerIdle (in key order, with their windows), at
// most 10,000 of both together per call, and returns how many it forgot.
// A negative producerIdle counts as 0. A forgotten producer is unknown
// again: its next sequence, whatever it is, starts it anew.
//
// It is a replicated, deterministic operation: nowUnixNano is the
// leader's clock stamped in the trim command before Raft (never the
// applying replica's clock: nothing in apply reads one), and what is
// forgotten depends only on it and the partition's state. Likewise
// AppendRecord's event-id check compares the entry's stamped time (kept
// monotonic by the stored last timestamp) with the replicated until. A
// leader whose clock runs behind only makes expiry later, the same on
// every replica (partition TestDedupeExpiryUsesOnlyTheTimesInTheEntries). Finding idle producers scans every producer's state
// (the cap bounds what is deleted, not that scan). Writer only.
func (b *Batch) ExpireDedupe(nowUnixNano int64, producerIdle time.Duration) (int, error) {
	if err := b.begin(); err != nil {
		return 0, err
	}
	defer b.end()
	// The scan of idle producers reads the stored states: the buffered
	// ones go into the Pebble batch first.
	if err := b.flushProducers(); err != nil {
		return 0, err
	}
	removed, err := b.expireEventsLocked(nowUnixNano, expireEntriesMax)
	if err != nil {
		return removed, err
	}
	idle := int64(max(producerIdle, 0))
	cutoff := int64(math.MinInt64) // saturates instead of wrapping
	if nowUnixNano >= math.MinInt64+idle {
		cutoff = nowUnixNano - idle
	}
	producers, err := b.expireProducersLocked(cutoff, expireEntriesMax-removed)
	return removed + producers, err
}

// expireEventsLocked deletes up to limit event-id entries with until <=
// now, with their expiry keys. db.lifecycle must be read-held.
func (b *Batch) expireEventsLocked(now int64, limit int) (int, error) {
	p := b.partition
	lower, upper := kindBounds(p.id, kindEventExpiry)
	iter, err := b.newIterLocked(lower, upper)
	if err != nil {
		return 0, err
	}
	defer iter.Close()
	removed := 0
	for valid := iter.First(); valid && removed < limit; valid = iter.Next() {
		until, tenant, eventID, ok := parseEventExpiryKey(p.id, iter.Key())
		if !ok {
			return removed, b.corrupt("malformed event expiry key %x", iter.Key())
		}
		if until > now {
			break
		}
		// The expiry key and its entry are written and deleted together.
		entry, found, err := b.eventEntryLocked(string(tenant), string(eventID))
		if err != nil {
			return removed, err
		}
		if !found || entry.untilUnixNano != until {
			return removed, b.corrupt("event id %q of tenant %q: expiry key at %d has no matching entry", eventID, tenant, until)
		}
		if err := b.delete(appendEventIDKey(nil, p.id, string(tenant), string(eventID)), "event id"); err != nil {
			return removed, err
		}
		if err := b.delete(append([]byte(nil), iter.Key()...), "event expiry"); err != nil {
			return removed, err
		}
		removed++
	}
	if err := iter.Error(); err != nil {
		return removed, fmt.Errorf("log: partition %d: read event expiry: %w", p.id, err)
	}
	return removed, nil
}

// expireProducersLocked deletes up to limit producers last seen before
// cutoff, with their window entries. db.lifecycle must be read-held.
func (b *Batch) expireProducersLocked(cutoff int64, limit int) (int, error) {
	p := b.partition
	lower, upper := kindBounds(p.id, kindProducer)
	iter, err := b.newIterLocked(lower, upper)
	if err != nil {
		return 0, err
	}
	defer iter.Close()
	removed := 0
	for valid := iter.First(); valid && removed < limit; valid = iter.Next() {
		tenant, producer, ok := parseProducerKey(p.id, iter.Key())
		if !ok {
			return removed, b.corrupt("malformed producer key %x", iter.Key())
		}
		value, err := iter.ValueAndErr()
		if err != nil {
			return removed, fmt.Errorf("log: partition %d: read producer state: %w", p.id, err)
		}
		state, ok := decodeProducerState(value)
		if !ok {
			return removed, b.corrupt("producer %q of tenant %q: malformed state %x", producer, tenant, value)
		}
		if state.lastSeenUnixNano >= cutoff {
			continue
		}
		window := appendProducerWindowPrefix(nil, p.id, string(tenant), string(producer))
		if err := b.deleteRange(window, prefixSuccessor(window), "producer window"); err != nil {
			return removed, err
		}
		if err := b.delete(append([]byte(nil), iter.Key()...), "producer state"); err != nil {
			return removed, err
		}
		removed++
	}
	if err := iter.Error(); err != nil {
		return removed, fmt.Errorf("log: partition %d: read producer state: %w", p.id, err)
	}
	return removed, nil
}
