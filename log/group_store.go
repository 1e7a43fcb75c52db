package log

import (
	"cmp"
	"errors"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"
)

// Reads and writes of the consumer group keys, shared by the writer (through
// its indexed Batch, which sees its own writes) and the readers (through
// the DB). Every value is checked right after it is read and every header
// right before it is written; a failure is a *CorruptionError.

var _ pebbleReader = (*pebble.Batch)(nil)

// groupStore reads one partition's group keys from r.
type groupStore struct {
	partition uint64
	r         pebbleReader
	// nearOffset is the offset a *CorruptionError names for damage not
	// tied to one offset (the partition's high watermark).
	nearOffset uint64
}

func (s groupStore) corrupt(offset uint64, format string, args ...any) error {
	return &CorruptionError{Partition: s.partition, Offset: offset, Reason: fmt.Sprintf(format, args...)}
}

// get returns a copy of key's value; found is false when it is absent.
func (s groupStore) get(key []byte, what string) (value []byte, found bool, err error) {
	v, closer, err := s.r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("log: partition %d: read %s: %w", s.partition, what, err)
	}
	value = append([]byte(nil), v...)
	if err := closer.Close(); err != nil {
		return nil, false, fmt.Errorf("log: partition %d: read %s: %w", s.partition, what, err)
	}
	return value, true, nil
}

// header reads and checks group's header; found is false when the group
// does not exist.
func (s groupStore) header(group string) (h groupHeader, found bool, err error) {
	value, found, err := s.get(appendGroupKey(nil, s.partition, group), "consumer group header")
	if err != nil || !found {
		return h, found, err
	}
	h, problem := decodeGroupHeader(value)
	if problem != "" {
		return h, false, s.corrupt(s.nearOffset, "consumer group %q: %s", group, problem)
	}
	return h, true, nil
}

// runFromIter decodes and checks the run under iter's key, a pending key
// of group.
func (s groupStore) runFromIter(group string, iter *pebble.Iterator) (pendingRun, error) {
	name, first, ok := parseGroupPendingKey(s.partition, iter.Key())
	if !ok || string(name) != group {
		return pendingRun{}, s.corrupt(s.nearOffset, "consumer group %q: malformed pending key %x", group, iter.Key())
	}
	value, err := iter.ValueAndErr()
	if err != nil {
		return pendingRun{}, fmt.Errorf("log: partition %d: read consumer group pending delivery: %w", s.partition, err)
	}
	r, problem := decodePendingRun(first, value)
	if problem != "" {
		return pendingRun{}, s.corrupt(first, "consumer group %q: offset %d: %s", group, first, problem)
	}
	return r, nil
}

// run reads and checks group's run that starts at first; found is false
// when no run starts there.
func (s groupStore) run(group string, first uint64) (r pendingRun, found bool, err error) {
	value, found, err := s.get(appendGroupPendingKey(nil, s.partition, group, first), "consumer group pending delivery")
	if err != nil || !found {
		return r, found, err
	}
	r, problem := decodePendingRun(first, value)
	if problem != "" {
		return r, false, s.corrupt(first, "consumer group %q: offset %d: %s", group, first, problem)
	}
	return r, true, nil
}

// scanRuns calls fn with group's runs that hold an offset in [from,
// before), in offset order, until fn returns false. The first may start
// below from.
func (s groupStore) scanRuns(group string, from, before uint64, fn func(pendingRun) bool) error {
	if from >= before {
		return nil
	}
	prefix := appendGroupPendingPrefix(nil, s.partition, group)
	upper := prefixSuccessor(prefix)
	if before != math.MaxUint64 {
		upper = appendGroupPendingKey(nil, s.partition, group, before)
	}
	iter, err := s.r.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("log: partition %d: consumer group iterator: %w", s.partition, err)
	}
	defer iter.Close()
	start := appendGroupPendingKey(nil, s.partition, group, from)
	// A run that starts below from may hold it.
	if iter.SeekLT(start) {
		r, err := s.runFromIter(group, iter)
		if err != nil {
			return err
		}
		if r.last >= from && !fn(r) {
			return nil
		}
	}
	for valid := iter.SeekGE(start); valid; valid = iter.Next() {
		r, err := s.runFromIter(group, iter)
		if err != nil {
			return err
		}
		if !fn(r) {
			break
		}
	}
	if err := iter.Error(); err != nil {
		return fmt.Errorf("log: partition %d: consumer group scan: %w", s.partition, err)
	}
	return nil
}

// scanPending calls fn with group's pending deliveries of offsets in
// [from, before) in offset order, until fn returns false or limit entries
// were passed (limit <= 0: no limit beyond the range).
func (s groupStore) scanPending(group string, from, before uint64, limit int, fn func(PendingDelivery) bool) error {
	n := 0
	return s.scanRuns(group, from, before, func(r pendingRun) bool {
		for offset := max(r.first, from); offset <= r.last && offset < before; offset++ {
			n++
			if !fn(r.v.delivery(offset)) || (limit > 0 && n >= limit) {
				return false
			}
		}
		return true
	})
}

// firstPending returns group's lowest pending offset at or above from;
// found is false when there is none.
func (s groupStore) firstPending(group string, from uint64) (offset uint64, found bool, err error) {
	err = s.scanRuns(group, from, math.MaxUint64, func(r pendingRun) bool {
		offset, found = max(r.first, from), true
		return false
	})
	return offset, found, err
}

// scanDueRuns calls fn with group's runs whose not-before is at or before
// nowUnixNano, in not-before then first offset order, until fn returns
// false. Each due key must have its run, with the same not-before.
func (s groupStore) scanDueRuns(group string, nowUnixNano int64, fn func(pendingRun) bool) error {
	prefix := appendGroupDuePrefix(nil, s.partition, group)
	iter, err := s.r.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixSuccessor(prefix)})
	if err != nil {
		return fmt.Errorf("log: partition %d: consumer group iterator: %w", s.partition, err)
	}
	defer iter.Close()
	for valid := iter.First(); valid; valid = iter.Next() {
		name, notBefore, first, ok := parseGroupDueKey(s.partition, iter.Key())
		if !ok || string(name) != group {
			return s.corrupt(s.nearOffset, "consumer group %q: malformed due key %x", group, iter.Key())
		}
		if notBefore > nowUnixNano {
			break
		}
		r, found, err := s.run(group, first)
		if err != nil {
			return err
		}
		if !found || r.v.notBeforeUnixNano != notBefore {
			return s.corrupt(first, "consumer group %q: due key of offset %d at %d, pending delivery found %v with not-before %d",
				group, first, notBefore, found, r.v.notBeforeUnixNano)
		}
		if !fn(r) {
			break
		}
	}
	if err := iter.Error(); err != nil {
		return fmt.Errorf("log: partition %d: consumer group scan: %w", s.partition, err)
	}
	return nil
}

// scanDue calls fn with group's pending deliveries whose not-before is at
// or before nowUnixNano, in not-before then offset order, until fn
// returns false.
func (s groupStore) scanDue(group string, nowUnixNano int64, fn func(PendingDelivery) bool) error {
	return s.scanDueRuns(group, nowUnixNano, func(r pendingRun) bool {
		for offset := r.first; offset <= r.last; offset++ {
			if !fn(r.v.delivery(offset)) {
				return false
			}
			if offset == math.MaxUint64 {
				break
			}
		}
		return true
	})
}

// groups calls fn with every group's name and header in name order (by
// length, then bytes: the key order), until fn returns false.
func (s groupStore) groups(fn func(name string, h groupHeader) bool) error {
	lower, upper := kindBounds(s.partition, kindGroup)
	iter, err := s.r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("log: partition %d: consumer group iterator: %w", s.partition, err)
	}
	defer iter.Close()
	for valid := iter.First(); valid; valid = iter.Next() {
		name, ok := parseGroupKey(s.partition, iter.Key())
		if !ok {
			return s.corrupt(s.nearOffset, "malformed consumer group key %x", iter.Key())
		}
		value, err := iter.ValueAndErr()
		if err != nil {
			return fmt.Errorf("log: partition %d: read consumer group header: %w", s.partition, err)
		}
		h, problem := decodeGroupHeader(value)
		if problem != "" {
			return s.corrupt(s.nearOffset, "consumer group %q: %s", name, problem)
		}
		if !fn(string(name), h) {
			break
		}
	}
	if err := iter.Error(); err != nil {
		return fmt.Errorf("log: partition %d: consumer group scan: %w", s.partition, err)
	}
	return nil
}

// groupStoreLocked reads through the batch. db.lifecycle must be read-held.
func (b *Batch) groupStoreLocked() groupStore {
	return groupStore{partition: b.partition.id, r: b.pebbleBatch, nearOffset: b.nextOffset}
}

// putGroupLocked checks h and writes it as group's header. A broken
// invariant is a *CorruptionError (the state machine computed a wrong
// state: stop rather than persist it). Failures are sticky.
func (b *Batch) putGroupLocked(group string, h groupHeader) error {
	if problem := h.check(); problem != "" {
		return b.fail(b.corrupt("consumer group %q: would write %s", group, problem))
	}
	return b.set(appendGroupKey(nil, b.partition.id, group), h.encode(), "consumer group header")
}

// putRun writes group's run r with its due key. previous is the run
// that started at r.first before (found: there was one): its due key is
// replaced when the not-before changed. Failures are sticky.
func (b *Batch) putRun(group string, r pendingRun, previous pendingRun, found bool) error {
	p := b.partition.id
	if found && previous.v.notBeforeUnixNano != r.v.notBeforeUnixNano {
		if err := b.delete(appendGroupDueKey(nil, p, group, previous.v.notBeforeUnixNano, r.first), "consumer group due key"); err != nil {
			return err
		}
	}
	if err := b.set(appendGroupPendingKey(nil, p, group, r.first), r.encode(), "consumer group pending delivery"); err != nil {
		return err
	}
	if found && previous.v.notBeforeUnixNano == r.v.notBeforeUnixNano {
		return nil
	}
	return b.set(appendGroupDueKey(nil, p, group, r.v.notBeforeUnixNano, r.first), nil, "consumer group due key")
}

// deleteRun deletes group's run r and its due key. Failures are sticky.
func (b *Batch) deleteRun(group string, r pendingRun) error {
	p := b.partition.id
	if err := b.delete(appendGroupPendingKey(nil, p, group, r.first), "consumer group pending delivery"); err != nil {
		return err
	}
	return b.delete(appendGroupDueKey(nil, p, group, r.v.notBeforeUnixNano, r.first), "consumer group due key")
}

// deleteGroupEntries deletes every pending delivery and due key of group
// (two range deletes). Failures are sticky.
func (b *Batch) deleteGroupEntries(group string) error {
	p := b.partition.id
	pending := appendGroupPendingPrefix(nil, p, group)
	if err := b.deleteRange(pending, prefixSuccessor(pending), "consumer group pending deliveries"); err != nil {
		return err
	}
	due := appendGroupDuePrefix(nil, p, group)
	return b.deleteRange(due, prefixSuccessor(due), "consumer group due keys")
}

// groupDeleteChunk is how many runs a cumulative acknowledgement reads
// before it deletes them: it bounds the memory of one acknowledgement
// whatever the group's max pending.
const groupDeleteChunk = 1024

// deletePendingBelowLocked deletes group's pending deliveries of offsets in
// [from, before) and returns how many it deleted: the runs wholly below
// before go, and the run that holds before is trimmed to start there (one
// run rewritten). db.lifecycle must be read-held. Failures are sticky.
func (b *Batch) deletePendingBelowLocked(group string, from, before uint64) (uint64, error) {
	var deleted uint64
	chunk := make([]pendingRun, 0, groupDeleteChunk)
	for from < before {
		chunk = chunk[:0]
		err := b.groupStoreLocked().scanRuns(group, from, before, func(r pendingRun) bool {
			chunk = append(chunk, r)
			return len(chunk) < groupDeleteChunk
		})
		if err != nil {
			return deleted, b.fail(err)
		}
		for _, r := range chunk {
			if err := b.deleteRun(group, r); err != nil {
				return deleted, err
			}
			if r.last < before {
				deleted += r.offsets()
				continue
			}
			// r holds before: its offsets from before stay pending.
			deleted += before - r.first
			rest := pendingRun{first: before, last: r.last, v: r.v}
			if err := b.putRun(group, rest, pendingRun{}, false); err != nil {
				return deleted, err
			}
			return deleted, nil
		}
		if len(chunk) < groupDeleteChunk {
			break
		}
		from = chunk[len(chunk)-1].last + 1
	}
	return deleted, nil
}

// checkGroupEntry checks one stored entry (full key) when it is a consumer
// group key: the key parses and the value decodes and passes its checks. It
// returns nil for the other kinds. A failure is a *CorruptionError.
func (p *Partition) checkGroupEntry(key, value []byte) error {
	if len(key) <= partitionPrefixBytes {
		return nil
	}
	s := groupStore{partition: p.id, nearOffset: p.high.Load()}
	switch key[partitionPrefixBytes] {
	case kindGroup:
		name, ok := parseGroupKey(p.id, key)
		if !ok {
			return s.corrupt(s.nearOffset, "malformed consumer group key %x", key)
		}
		if _, problem := decodeGroupHeader(value); problem != "" {
			return s.corrupt(s.nearOffset, "consumer group %q: %s", name, problem)
		}
	case kindGroupPending:
		name, offset, ok := parseGroupPendingKey(p.id, key)
		if !ok {
			return s.corrupt(s.nearOffset, "malformed consumer group pending key %x", key)
		}
		if _, problem := decodePendingRun(offset, value); problem != "" {
			return s.corrupt(offset, "consumer group %q: offset %d: %s", name, offset, problem)
		}
	case kindGroupDue:
		if _, _, _, ok := parseGroupDueKey(p.id, key); !ok || len(value) != 0 {
			return s.corrupt(s.nearOffset, "malformed consumer group due entry %x", key)
		}
	case kindGroupMark, kindGroupMarkOffset, kindGroupMarkCount:
		_, err := p.checkMarkEntry(key, value)
		return err
	}
	return nil
}

// check verifies the groups' keys against each other: each group's pending
// count is the number of offsets of its runs, its floor the first offset
// of the lowest run (its cursor when there is none), the runs apart from
// each other and below its cursor, each with one due key at its
// not-before, and no pending or due key belongs to a group that does not
// exist. It reads every group key once. A failure is a *CorruptionError.
func (s groupStore) check() error {
	var runsTotal uint64
	var failure error
	err := s.groups(func(name string, h groupHeader) bool {
		var count, runs uint64
		first := h.delivered
		var next uint64 // the lowest offset the next run may start at
		err := s.scanRuns(name, 0, math.MaxUint64, func(r pendingRun) bool {
			if runs == 0 {
				first = r.first
			}
			switch {
			case r.first < next:
				failure = s.corrupt(r.first, "consumer group %q: run from %d overlaps the one before it", name, r.first)
			case r.last >= h.delivered:
				failure = s.corrupt(r.last, "consumer group %q: offset %d pending at or above the cursor %d", name, r.last, h.delivered)
			}
			runs++
			count += r.offsets()
			next = r.last + 1
			return failure == nil
		})
		if err != nil || failure != nil {
			failure = cmp.Or(failure, err)
			return false
		}
		var due uint64
		if err := s.scanDueRuns(name, math.MaxInt64, func(pendingRun) bool { due++; return true }); err != nil {
			failure = err
			return false
		}
		if count != h.pending || due != runs || first != h.floor {
			failure = s.corrupt(h.floor, "consumer group %q: header says %d pending from floor %d; %d pending in %d runs from %d, %d due keys",
				name, h.pending, h.floor, count, runs, first, due)
			return false
		}
		runsTotal += runs
		return true
	})
	if err := cmp.Or(failure, err); err != nil {
		return err
	}
	for _, kind := range []byte{kindGroupPending, kindGroupDue} {
		lower, upper := kindBounds(s.partition, kind)
		iter, err := s.r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
		if err != nil {
			return fmt.Errorf("log: partition %d: consumer group iterator: %w", s.partition, err)
		}
		var n uint64
		for valid := iter.First(); valid; valid = iter.Next() {
			n++
		}
		err = iter.Error()
		if closeErr := iter.Close(); err == nil {
			err = closeErr
		}
		if err != nil {
			return fmt.Errorf("log: partition %d: consumer group scan: %w", s.partition, err)
		}
		if n != runsTotal {
			return s.corrupt(s.nearOffset, "%d keys of kind %q, the groups have %d pending runs", n, kind, runsTotal)
		}
	}
	return nil
}
