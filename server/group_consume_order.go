package server

import (
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	heraldlog "github.com/heraldlog/herald/log"
	"github.com/heraldlog/herald/partition"
)

// Per-key order (a group created with key_order): the partition's leader
// delivers no event while an earlier event of the same tenant and key is
// pending, so a member never holds two events of one key at once and a
// redelivery can never overtake a later event of its key. Events without
// a key are not held.
//
// Each step reads the group's pending offsets (at most its max pending)
// and their keys (cached per stream; a key not cached is read from the
// log), then:
//
//   - a redelivery is made only of the lowest pending offset of its key,
//     and of at most one offset per key per batch; the others stay
//     pending, are not due for this stream's timer, and go once the lower
//     one is done;
//   - new offsets stop at the first event whose key has a pending offset
//     or one already in the batch: new offsets are contiguous from the
//     cursor (log/group.go), so a held key also holds every event behind
//     it on the partition until the earlier one is acknowledged, nacked
//     and redelivered, or dead-lettered. That is the price of the order:
//     a group whose events share few keys gets small batches.
//
// Skipped offsets (expired, below the low watermark) have no key here:
// they are never sent, so they hold nothing.

// keyOrder is one step's view of the keys the group holds.
type keyOrder struct {
	// lowest is each held key's lowest pending offset.
	lowest map[string]uint64
	// taken: keys with an event in the batch being built.
	taken map[string]struct{}
	// wake is the earliest time a pending offset that is not held (the
	// lowest of its key, or without one) becomes due; zero: none.
	wake time.Time
	// heldNew reports that new offsets stopped at a held key.
	heldNew bool
}

// keyOrderView reads the group's pending offsets and their keys. It
// refreshes c.orderKeys to hold exactly the pending offsets' keys (so the
// cache is bounded by the group's max pending).
func (c *groupConsumer) keyOrderView(st partition.GroupState, now time.Time) (*keyOrder, error) {
	o := &keyOrder{lowest: map[string]uint64{}, taken: map[string]struct{}{}}
	if st.Pending == 0 {
		clear(c.orderKeys)
		return o, nil
	}
	pending, err := c.r.GroupPending(c.group, st.Floor, int(min(st.Pending, uint64(partition.GroupPendingMax))))
	if err != nil {
		return nil, c.error(err)
	}
	keys := make(map[uint64]string, len(pending))
	reader := &pageReader{c: c}
	for _, d := range pending {
		key, cached := c.orderKeys[d.Offset]
		if !cached {
			rec, skip, err := reader.read(d.Offset, pending[len(pending)-1].Offset, now)
			if err != nil {
				return nil, err
			}
			if skip == "" {
				key = orderKey(rec)
			}
		}
		keys[d.Offset] = key
		if key != "" {
			if _, held := o.lowest[key]; held {
				continue // not the lowest of its key: held, and no timer for it
			}
			o.lowest[key] = d.Offset
		}
		o.wake = earliest(o.wake, time.Unix(0, d.NotBeforeUnixNano))
	}
	c.orderKeys = keys
	return o, nil
}

// holds reports whether the event at offset, of key key, must wait: an
// earlier pending offset of its key, or one of its key in the batch.
func (o *keyOrder) holds(key string, offset uint64) bool {
	if key == "" {
		return false
	}
	if low, ok := o.lowest[key]; ok && low < offset {
		return true
	}
	_, in := o.taken[key]
	return in
}

// take notes that the batch carries an event of key.
func (o *keyOrder) take(key string) {
	if key != "" {
		o.taken[key] = struct{}{}
	}
}

// orderKey is the key per-key order keeps an event's order under: its
// tenant and key ("" when the event has no key, or its body cannot be
// read).
func orderKey(rec *heraldlog.Record) string {
	if rec == nil {
		return ""
	}
	key, ok := bodyKey(rec.Body)
	if !ok || len(key) == 0 {
		return ""
	}
	return rec.Tenant + "\x00" + string(key)
}

// bodyKey returns a stored event body's key without decoding the body.
func bodyKey(body []byte) ([]byte, bool) {
	var key []byte
	for len(body) > 0 {
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 {
			return nil, false
		}
		body = body[n:]
		if num == eventKeyField && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(body)
			if m < 0 {
				return nil, false
			}
			key, body = v, body[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, body)
		if m < 0 {
			return nil, false
		}
		body = body[m:]
	}
	return key, true
}
