package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/cockroachdb/pebble/v2"
)

// Processed marks of a consumer group (issue 12, the idempotent consumer):
// per group and partition, an idempotency key (chosen by the SDK: a
// tenant's causation id, or its event id) maps to the highest tenant
// sequence a member processed under it and the offset of that event. A
// member writes marks with the acknowledgement of the events they name,
// in the same command (GroupAck), so that "processed" and "acknowledged"
// are one replicated fact; the partition's leader reads them when it
// builds a batch, so the member can skip what any member already did.
//
// Rules, replicated behaviour like the rest of the group state:
//
//   - a mark only raises a key's sequence: a mark at or below the stored
//     one changes nothing;
//   - a group holds at most GroupMarksMax marks; a new key beyond that
//     evicts the mark with the lowest offset (then the lowest key bytes),
//     the same one on every replica;
//   - GroupReset keeps the marks (a reset to earliest must not process
//     again what was processed); GroupDelete deletes them;
//   - a mark names an offset the same command acknowledges (below Before
//     or in Offsets), with a key of 1..GroupMarkKeyBytesMax bytes and a
//     sequence from 1; else the whole command is refused
//     (ErrInvalidArgument) and nothing is written;
//   - a mark of an offset at or above the group's cursor (never
//     delivered, as after a reset that moved the cursor back) is not
//     written, as its offset's outcome is OffsetNotDelivered; the rest of
//     the command applies.
//
// Keys (key layout version 6, see the package documentation):
//
//	mark:        'p' | pid(8) | 'k' | len(group)(1) | group | len(key)(1) | key -> mark value
//	mark offset: 'p' | pid(8) | 'o' | len(group)(1) | group | offset(8) | len(key)(1) | key -> empty
//	mark count:  'p' | pid(8) | 'u' | len(group)(1) | group -> count(8)
//
// Mark value, version 1: crc32c(4) | version(1)=1 | sequence(8) | offset(8).

// Bounds of the processed marks (replicated behaviour).
const (
	// GroupMarksMax is how many marks a group keeps per partition.
	GroupMarksMax = 1 << 16
	// GroupMarkKeyBytesMax is the longest idempotency key.
	GroupMarkKeyBytesMax = 255
)

const (
	groupMarkValueBytes = 4 + 1 + 8 + 8
	groupMarkCountBytes = 8
)

// GroupMark is one processed mark: Key's highest processed tenant sequence
// and the offset of that event.
type GroupMark struct {
	Key      string
	Sequence uint64
	Offset   uint64
}

type markValue struct {
	sequence uint64
	offset   uint64
}

func (v markValue) encode() []byte {
	b := make([]byte, groupChecksumBytes, groupMarkValueBytes)
	b = append(b, groupValueVersion1)
	b = binary.BigEndian.AppendUint64(b, v.sequence)
	b = binary.BigEndian.AppendUint64(b, v.offset)
	binary.BigEndian.PutUint32(b, crc32.Checksum(b[groupChecksumBytes:], castagnoli))
	return b
}

func decodeMarkValue(value []byte) (v markValue, problem string) {
	if len(value) != groupMarkValueBytes {
		return v, fmt.Sprintf("mark value of %d bytes", len(value))
	}
	if stored, computed := binary.BigEndian.Uint32(value), crc32.Checksum(value[groupChecksumBytes:], castagnoli); stored != computed {
		return v, fmt.Sprintf("mark value checksum mismatch: stored %08x, computed %08x", stored, computed)
	}
	if value[4] != groupValueVersion1 {
		return v, fmt.Sprintf("mark value version %d", value[4])
	}
	v.sequence = binary.BigEndian.Uint64(value[5:])
	v.offset = binary.BigEndian.Uint64(value[13:])
	if v.sequence == 0 {
		return v, "mark of sequence 0"
	}
	return v, ""
}

func appendGroupMarkPrefix(dst []byte, partition uint64, group string) []byte {
	return appendShortString(appendKindPrefix(dst, partition, kindGroupMark), group)
}

func appendGroupMarkKey(dst []byte, partition uint64, group, key string) []byte {
	return appendShortString(appendGroupMarkPrefix(dst, partition, group), key)
}

func parseGroupMarkKey(partition uint64, key []byte) (group, markKey []byte, ok bool) {
	if len(key) < partitionPrefixBytes+1 || !hasPartitionPrefix(partition, key) || key[partitionPrefixBytes] != kindGroupMark {
		return nil, nil, false
	}
	group, rest, ok := cutShortString(key[partitionPrefixBytes+1:])
	if !ok || len(group) == 0 {
		return nil, nil, false
	}
	markKey, rest, ok = cutShortString(rest)
	if !ok || len(rest) != 0 || len(markKey) == 0 {
		return nil, nil, false
	}
	return group, markKey, true
}

func appendGroupMarkOffsetPrefix(dst []byte, partition uint64, group string) []byte {
	return appendShortString(appendKindPrefix(dst, partition, kindGroupMarkOffset), group)
}

func appendGroupMarkOffsetKey(dst []byte, partition uint64, group string, offset uint64, key string) []byte {
	dst = binary.BigEndian.AppendUint64(appendGroupMarkOffsetPrefix(dst, partition, group), offset)
	return appendShortString(dst, key)
}

func parseGroupMarkOffsetKey(partition uint64, key []byte) (group []byte, offset uint64, markKey []byte, ok bool) {
	if len(key) < partitionPrefixBytes+1 || !hasPartitionPrefix(partition, key) || key[partitionPrefixBytes] != kindGroupMarkOffset {
		return nil, 0, nil, false
	}
	group, rest, ok := cutShortString(key[partitionPrefixBytes+1:])
	if !ok || len(group) == 0 || len(rest) < 8 {
		return nil, 0, nil, false
	}
	offset = binary.BigEndian.Uint64(rest)
	markKey, rest, ok = cutShortString(rest[8:])
	if !ok || len(rest) != 0 || len(markKey) == 0 {
		return nil, 0, nil, false
	}
	return group, offset, markKey, true
}

func appendGroupMarkCountKey(dst []byte, partition uint64, group string) []byte {
	return appendShortString(appendKindPrefix(dst, partition, kindGroupMarkCount), group)
}

func parseGroupMarkCountKey(partition uint64, key []byte) (group []byte, ok bool) {
	if len(key) < partitionPrefixBytes+1 || !hasPartitionPrefix(partition, key) || key[partitionPrefixBytes] != kindGroupMarkCount {
		return nil, false
	}
	group, rest, ok := cutShortString(key[partitionPrefixBytes+1:])
	if !ok || len(rest) != 0 || len(group) == 0 {
		return nil, false
	}
	return group, true
}

// checkMarks refuses marks that break the rules above, before anything is
// written: too many, a key not 1..GroupMarkKeyBytesMax bytes, sequence 0,
// an offset the ack does not acknowledge.
func checkMarks(name string, req GroupAckRequest) error {
	if len(req.Marks) == 0 {
		return nil
	}
	if err := checkOffsetCount(uint64(len(req.Marks))); err != nil {
		return fmt.Errorf("%w (processed marks)", err)
	}
	acked := make(map[uint64]struct{}, len(req.Offsets))
	for _, o := range req.Offsets {
		acked[o] = struct{}{}
	}
	var errs []error
	for i, m := range req.Marks {
		if len(m.Key) == 0 || len(m.Key) > GroupMarkKeyBytesMax {
			errs = append(errs, fmt.Errorf("%w: consumer group %q: mark %d: key of %d bytes, want 1..%d", ErrInvalidArgument, name, i, len(m.Key), GroupMarkKeyBytesMax))
		}
		if m.Sequence == 0 {
			errs = append(errs, fmt.Errorf("%w: consumer group %q: mark %d: sequence 0 (tenant sequences start at 1)", ErrInvalidArgument, name, i))
		}
		if _, ok := acked[m.Offset]; !ok && m.Offset >= req.Before {
			errs = append(errs, fmt.Errorf("%w: consumer group %q: mark %d: offset %d is not acknowledged by the same command", ErrInvalidArgument, name, i, m.Offset))
		}
	}
	return errors.Join(errs...)
}

// mark reads group's mark of key; found is false when there is none.
func (s groupStore) mark(group, key string) (v markValue, found bool, err error) {
	value, found, err := s.get(appendGroupMarkKey(nil, s.partition, group, key), "consumer group mark")
	if err != nil || !found {
		return v, found, err
	}
	v, problem := decodeMarkValue(value)
	if problem != "" {
		return v, false, s.corrupt(s.nearOffset, "consumer group %q: mark %q: %s", group, key, problem)
	}
	return v, true, nil
}

// markCount reads how many marks group holds.
func (s groupStore) markCount(group string) (uint64, error) {
	value, found, err := s.get(appendGroupMarkCountKey(nil, s.partition, group), "consumer group mark count")
	if err != nil || !found {
		return 0, err
	}
	if len(value) != groupMarkCountBytes {
		return 0, s.corrupt(s.nearOffset, "consumer group %q: mark count of %d bytes", group, len(value))
	}
	return binary.BigEndian.Uint64(value), nil
}

// lowestMark returns group's mark with the lowest offset (then key).
func (s groupStore) lowestMark(group string) (offset uint64, key string, found bool, err error) {
	prefix := appendGroupMarkOffsetPrefix(nil, s.partition, group)
	iter, err := s.r.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixSuccessor(prefix)})
	if err != nil {
		return 0, "", false, fmt.Errorf("log: partition %d: consumer group iterator: %w", s.partition, err)
	}
	defer iter.Close()
	if iter.First() {
		name, off, k, ok := parseGroupMarkOffsetKey(s.partition, iter.Key())
		if !ok || string(name) != group {
			return 0, "", false, s.corrupt(s.nearOffset, "consumer group %q: malformed mark offset key %x", group, iter.Key())
		}
		offset, key, found = off, string(k), true
	}
	if err := iter.Error(); err != nil {
		return 0, "", false, fmt.Errorf("log: partition %d: consumer group scan: %w", s.partition, err)
	}
	return offset, key, found, nil
}

// putMarksLocked writes marks for group (checked by checkMarks), but
// those of offsets at or above delivered (the cursor), raising each key's
// sequence and evicting the lowest-offset marks beyond GroupMarksMax. It
// returns how many marks it wrote and evicted. db.lifecycle must be
// read-held. Failures are sticky.
func (b *Batch) putMarksLocked(group string, delivered uint64, marks []GroupMark) (written, evicted uint64, err error) {
	if len(marks) == 0 {
		return 0, 0, nil
	}
	p := b.partition.id
	store := b.groupStoreLocked()
	count, err := store.markCount(group)
	if err != nil {
		return 0, 0, b.fail(err)
	}
	before := count
	for _, m := range marks {
		if m.Offset >= delivered {
			continue // never delivered: its offset's outcome is OffsetNotDelivered
		}
		old, found, err := store.mark(group, m.Key)
		if err != nil {
			return 0, 0, b.fail(err)
		}
		if found && old.sequence >= m.Sequence {
			continue // marks only rise
		}
		if found {
			if err := b.delete(appendGroupMarkOffsetKey(nil, p, group, old.offset, m.Key), "consumer group mark offset"); err != nil {
				return 0, 0, err
			}
		} else {
			for count >= GroupMarksMax {
				offset, key, ok, err := store.lowestMark(group)
				if err != nil {
					return 0, 0, b.fail(err)
				}
				if !ok {
					return 0, 0, b.fail(b.corrupt("consumer group %q: mark count %d, no mark stored", group, count))
				}
				if err := b.delete(appendGroupMarkOffsetKey(nil, p, group, offset, key), "consumer group mark offset"); err != nil {
					return 0, 0, err
				}
				if err := b.delete(appendGroupMarkKey(nil, p, group, key), "consumer group mark"); err != nil {
					return 0, 0, err
				}
				count--
				evicted++
			}
			count++
		}
		if err := b.set(appendGroupMarkKey(nil, p, group, m.Key), markValue{sequence: m.Sequence, offset: m.Offset}.encode(), "consumer group mark"); err != nil {
			return 0, 0, err
		}
		if err := b.set(appendGroupMarkOffsetKey(nil, p, group, m.Offset, m.Key), nil, "consumer group mark offset"); err != nil {
			return 0, 0, err
		}
		written++
	}
	if count != before {
		if err := b.set(appendGroupMarkCountKey(nil, p, group), binary.BigEndian.AppendUint64(nil, count), "consumer group mark count"); err != nil {
			return 0, 0, err
		}
	}
	return written, evicted, nil
}

// deleteMarks deletes every mark of group (two range deletes and the
// count). Failures are sticky.
func (b *Batch) deleteMarks(group string) error {
	p := b.partition.id
	for _, prefix := range [][]byte{appendGroupMarkPrefix(nil, p, group), appendGroupMarkOffsetPrefix(nil, p, group)} {
		if err := b.deleteRange(prefix, prefixSuccessor(prefix), "consumer group marks"); err != nil {
			return err
		}
	}
	return b.delete(appendGroupMarkCountKey(nil, p, group), "consumer group mark count")
}

// GroupMarks returns, for each of keys, group name's processed sequence
// of it (0: no mark), as committed; an absent group has no mark. The
// leader calls it for every batch it sends, so a group with no mark costs
// one read (its count) and the reads take no point-in-time view: marks
// only rise, and a mark read a little late only makes the member process
// an event as at least once. At most GroupCommandOffsetsMax keys.
func (p *Partition) GroupMarks(name string, keys []string) ([]uint64, error) {
	if err := checkGroupName(name); err != nil {
		return nil, err
	}
	if err := checkOffsetCount(uint64(len(keys))); err != nil {
		return nil, err
	}
	if err := p.db.acquire(); err != nil {
		return nil, err
	}
	defer p.db.release()
	out := make([]uint64, len(keys))
	if p.restoring.Load() {
		return out, nil
	}
	store := p.groupStoreLocked()
	count, err := store.markCount(name)
	if err != nil || count == 0 {
		return out, err
	}
	for i, k := range keys {
		if len(k) == 0 || len(k) > GroupMarkKeyBytesMax {
			continue // no such mark can exist
		}
		v, found, err := store.mark(name, k)
		if err != nil {
			return nil, err
		}
		if found {
			out[i] = v.sequence
		}
	}
	return out, nil
}

// GroupMarkCount returns how many marks group name holds, as committed.
func (p *Partition) GroupMarkCount(name string) (uint64, error) {
	if err := checkGroupName(name); err != nil {
		return 0, err
	}
	if err := p.db.acquire(); err != nil {
		return 0, err
	}
	defer p.db.release()
	if p.restoring.Load() {
		return 0, nil
	}
	return p.groupStoreLocked().markCount(name)
}

// checkMarkEntry checks one stored mark entry (full key); false when key
// is not of a mark kind.
func (p *Partition) checkMarkEntry(key, value []byte) (bool, error) {
	s := groupStore{partition: p.id, nearOffset: p.high.Load()}
	switch key[partitionPrefixBytes] {
	case kindGroupMark:
		group, k, ok := parseGroupMarkKey(p.id, key)
		if !ok {
			return true, s.corrupt(s.nearOffset, "malformed consumer group mark key %x", key)
		}
		if _, problem := decodeMarkValue(value); problem != "" {
			return true, s.corrupt(s.nearOffset, "consumer group %q: mark %q: %s", group, k, problem)
		}
	case kindGroupMarkOffset:
		if _, _, _, ok := parseGroupMarkOffsetKey(p.id, key); !ok || len(value) != 0 {
			return true, s.corrupt(s.nearOffset, "malformed consumer group mark offset entry %x", key)
		}
	case kindGroupMarkCount:
		if _, ok := parseGroupMarkCountKey(p.id, key); !ok || len(value) != groupMarkCountBytes {
			return true, s.corrupt(s.nearOffset, "malformed consumer group mark count entry %x", key)
		}
	default:
		return false, nil
	}
	return true, nil
}

// checkMarks verifies the marks against each other and the groups: per
// group, the count is the number of mark keys and of mark offset keys, and
// each mark's offset key exists; no mark belongs to an absent group. A
// failure is a *CorruptionError.
func (s groupStore) checkMarks() error {
	counts := map[string]uint64{}
	for _, kind := range []byte{kindGroupMarkCount, kindGroupMark, kindGroupMarkOffset} {
		lower, upper := kindBounds(s.partition, kind)
		iter, err := s.r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
		if err != nil {
			return fmt.Errorf("log: partition %d: consumer group iterator: %w", s.partition, err)
		}
		seen := map[string]uint64{}
		var failure error
		for valid := iter.First(); valid && failure == nil; valid = iter.Next() {
			value, err := iter.ValueAndErr()
			if err != nil {
				failure = fmt.Errorf("log: partition %d: read consumer group mark: %w", s.partition, err)
				break
			}
			switch kind {
			case kindGroupMarkCount:
				group, ok := parseGroupMarkCountKey(s.partition, iter.Key())
				if !ok || len(value) != groupMarkCountBytes {
					failure = s.corrupt(s.nearOffset, "malformed mark count entry %x", iter.Key())
					break
				}
				if _, found, err := s.header(string(group)); err != nil || !found {
					failure = s.corrupt(s.nearOffset, "marks of consumer group %q, which does not exist (%v)", group, err)
					break
				}
				counts[string(group)] = binary.BigEndian.Uint64(value)
			case kindGroupMark:
				group, k, ok := parseGroupMarkKey(s.partition, iter.Key())
				if !ok {
					failure = s.corrupt(s.nearOffset, "malformed mark key %x", iter.Key())
					break
				}
				v, problem := decodeMarkValue(value)
				if problem != "" {
					failure = s.corrupt(s.nearOffset, "consumer group %q: mark %q: %s", group, k, problem)
					break
				}
				if _, found, err := s.get(appendGroupMarkOffsetKey(nil, s.partition, string(group), v.offset, string(k)), "mark offset"); err != nil || !found {
					failure = s.corrupt(v.offset, "consumer group %q: mark %q at offset %d has no offset entry (%v)", group, k, v.offset, err)
					break
				}
				seen[string(group)]++
			case kindGroupMarkOffset:
				group, _, _, ok := parseGroupMarkOffsetKey(s.partition, iter.Key())
				if !ok {
					failure = s.corrupt(s.nearOffset, "malformed mark offset key %x", iter.Key())
					break
				}
				seen[string(group)]++
			}
		}
		err = errors.Join(failure, iter.Error(), iter.Close())
		if err != nil {
			return err
		}
		if kind != kindGroupMarkCount {
			for group, n := range seen {
				if counts[group] != n {
					return s.corrupt(s.nearOffset, "consumer group %q: mark count %d, %d keys of kind %q", group, counts[group], n, kind)
				}
			}
			for group, n := range counts {
				if seen[group] != n {
					return s.corrupt(s.nearOffset, "consumer group %q: mark count %d, %d keys of kind %q", group, n, seen[group], kind)
				}
			}
		}
	}
	return nil
}
