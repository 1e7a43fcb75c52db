package log

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"
)

// Consumer group values (key layout version 5; see the package
// documentation). Both are persisted and sent in snapshots: the version
// byte gets a new number for a new encoding, and an older node refuses a
// newer one.
//
// Group header ('g'), version 1:
//
//	crc32c(4) | version(1)=1 | floor(8) | delivered(8) | generation(8) |
//	pending(8) | dead_lettered(8) | ack_wait_ns(8) | max_deliveries(4) |
//	max_pending(4) | len(member)(1) | member
//
// Version 2 adds a flags byte after max_pending (bit 0: key order); a
// header without flags is still written as version 1, so a group created
// without them stays readable by a node that knows only version 1.
//
//	crc32c(4) | version(1)=2 | floor(8) | delivered(8) | generation(8) |
//	pending(8) | dead_lettered(8) | ack_wait_ns(8) | max_deliveries(4) |
//	max_pending(4) | flags(1) | len(member)(1) | member
//
// Pending delivery ('q'), version 1: the pending delivery of the key's
// offset alone (a run of one offset):
//
//	crc32c(4) | version(1)=1 | deliveries(4) | last_delivered_unix_nano(8) |
//	not_before_unix_nano(8) | len(member)(1) | member
//
// Version 2 (key layout version 7): a run, the pending deliveries of the
// offsets from the key's offset (the run's first) to last, all with the
// same delivery count, times and member. A run of one offset is still
// written as version 1, so version 2 always has last above first and one
// run has one encoding.
//
//	crc32c(4) | version(1)=2 | last(8) | deliveries(4) |
//	last_delivered_unix_nano(8) | not_before_unix_nano(8) | len(member)(1) | member
//
// The CRC (Castagnoli) covers every byte after it. A due key ('r') has an
// empty value.
const (
	groupValueVersion1 byte = 1
	groupValueVersion2 byte = 2

	groupHeaderFixedBytes   = 4 + 1 + 8*6 + 4 + 4 + 1
	groupHeaderBytesMax     = groupHeaderFixedBytes + 1 + groupMemberBytesMax
	groupPendingFixedBytes  = 4 + 1 + 4 + 8 + 8 + 1
	groupPendingValueMax    = groupPendingFixedBytes + 8 + groupMemberBytesMax
	groupChecksumBytes      = 4
	groupDueValueBytes      = 0
	groupHeaderMemberOffset = groupHeaderFixedBytes - 1
)

// Flags of a version-2 group header.
const (
	groupFlagKeyOrder byte = 1 << 0
	groupFlagsKnown        = groupFlagKeyOrder
)

// flags returns c's header flags.
func (c GroupConfig) flags() byte {
	var f byte
	if c.KeyOrder {
		f |= groupFlagKeyOrder
	}
	return f
}

// groupHeader is a group's stored header: everything of GroupState but
// its name.
type groupHeader struct {
	floor        uint64
	delivered    uint64
	generation   uint64
	pending      uint64
	deadLettered uint64
	config       GroupConfig
	member       string
}

// check returns what is wrong with h, or "" when its invariants hold: the
// floor is at or below the cursor, the pending deliveries fit between them
// and within the bound, there are pending deliveries exactly when the
// floor is below the cursor (the floor is the lowest pending offset), a
// member is named exactly when a generation is assigned, and the config
// is valid.
func (h groupHeader) check() string {
	switch {
	case h.floor > h.delivered:
		return fmt.Sprintf("floor %d above delivered %d", h.floor, h.delivered)
	case h.pending > h.delivered-h.floor:
		return fmt.Sprintf("%d pending between floor %d and delivered %d", h.pending, h.floor, h.delivered)
	case (h.pending == 0) != (h.floor == h.delivered):
		return fmt.Sprintf("%d pending with floor %d and delivered %d", h.pending, h.floor, h.delivered)
	case h.pending > uint64(h.config.MaxPending):
		return fmt.Sprintf("%d pending above max pending %d", h.pending, h.config.MaxPending)
	case (h.generation == 0) != (h.member == ""):
		return fmt.Sprintf("generation %d with member %q", h.generation, h.member)
	case len(h.member) > groupMemberBytesMax:
		return fmt.Sprintf("member of %d bytes", len(h.member))
	case h.config.Validate() != nil:
		return fmt.Sprintf("config: %v", h.config.Validate())
	}
	return ""
}

func (h groupHeader) encode() []byte {
	flags := h.config.flags()
	v := make([]byte, groupChecksumBytes, groupHeaderFixedBytes+1+len(h.member))
	if flags == 0 {
		v = append(v, groupValueVersion1)
	} else {
		v = append(v, groupValueVersion2)
	}
	v = binary.BigEndian.AppendUint64(v, h.floor)
	v = binary.BigEndian.AppendUint64(v, h.delivered)
	v = binary.BigEndian.AppendUint64(v, h.generation)
	v = binary.BigEndian.AppendUint64(v, h.pending)
	v = binary.BigEndian.AppendUint64(v, h.deadLettered)
	v = binary.BigEndian.AppendUint64(v, uint64(h.config.AckWait))
	v = binary.BigEndian.AppendUint32(v, h.config.MaxDeliveries)
	v = binary.BigEndian.AppendUint32(v, h.config.MaxPending)
	if flags != 0 {
		v = append(v, flags)
	}
	v = append(v, byte(len(h.member)))
	v = append(v, h.member...)
	binary.BigEndian.PutUint32(v, crc32.Checksum(v[groupChecksumBytes:], castagnoli))
	return v
}

// decodeGroupHeader decodes and checks a header value; problem is "" when
// it is sound.
func decodeGroupHeader(value []byte) (h groupHeader, problem string) {
	if len(value) < groupHeaderFixedBytes || len(value) > groupHeaderBytesMax {
		return h, fmt.Sprintf("header of %d bytes", len(value))
	}
	if stored, computed := binary.BigEndian.Uint32(value), crc32.Checksum(value[groupChecksumBytes:], castagnoli); stored != computed {
		return h, fmt.Sprintf("header checksum mismatch: stored %08x, computed %08x", stored, computed)
	}
	fixed := groupHeaderFixedBytes
	switch value[4] {
	case groupValueVersion1:
	case groupValueVersion2:
		fixed++
		if len(value) < fixed {
			return h, fmt.Sprintf("version 2 header of %d bytes", len(value))
		}
		flags := value[groupHeaderMemberOffset]
		if flags&^groupFlagsKnown != 0 || flags == 0 {
			return h, fmt.Sprintf("header flags %#x", flags)
		}
		h.config.KeyOrder = flags&groupFlagKeyOrder != 0
	default:
		return h, fmt.Sprintf("header version %d", value[4])
	}
	v := value[5:]
	h.floor = binary.BigEndian.Uint64(v)
	h.delivered = binary.BigEndian.Uint64(v[8:])
	h.generation = binary.BigEndian.Uint64(v[16:])
	h.pending = binary.BigEndian.Uint64(v[24:])
	h.deadLettered = binary.BigEndian.Uint64(v[32:])
	h.config.AckWait = time.Duration(binary.BigEndian.Uint64(v[40:]))
	h.config.MaxDeliveries = binary.BigEndian.Uint32(v[48:])
	h.config.MaxPending = binary.BigEndian.Uint32(v[52:])
	if n := int(value[fixed-1]); len(value) != fixed+n {
		return h, fmt.Sprintf("header of %d bytes with a member of %d", len(value), n)
	}
	h.member = string(value[fixed:])
	return h, h.check()
}

// pendingValue is what the offsets of one pending run share.
type pendingValue struct {
	deliveries            uint32
	lastDeliveredUnixNano int64
	notBeforeUnixNano     int64
	member                string
}

// pendingRun is a stored run of pending deliveries: the offsets first..last
// (inclusive; first is in the key), each pending with v.
type pendingRun struct {
	first, last uint64
	v           pendingValue
}

// offsets returns how many offsets r holds.
func (r pendingRun) offsets() uint64 { return r.last - r.first + 1 }

// encode returns r's value: version 1 for a run of one offset, else
// version 2.
func (r pendingRun) encode() []byte {
	b := make([]byte, groupChecksumBytes, groupPendingFixedBytes+8+len(r.v.member))
	if r.first == r.last {
		b = append(b, groupValueVersion1)
	} else {
		b = append(b, groupValueVersion2)
		b = binary.BigEndian.AppendUint64(b, r.last)
	}
	b = binary.BigEndian.AppendUint32(b, r.v.deliveries)
	b = binary.BigEndian.AppendUint64(b, uint64(r.v.lastDeliveredUnixNano))
	b = binary.BigEndian.AppendUint64(b, uint64(r.v.notBeforeUnixNano))
	b = append(b, byte(len(r.v.member)))
	b = append(b, r.v.member...)
	binary.BigEndian.PutUint32(b, crc32.Checksum(b[groupChecksumBytes:], castagnoli))
	return b
}

// decodePendingRun decodes and checks the pending value of the key's
// offset first: a version-1 value is the run of first alone, a version-2
// one runs to a last above first. Every delivery has been made at least
// once, by a member. problem is "" when it is sound.
func decodePendingRun(first uint64, value []byte) (r pendingRun, problem string) {
	r.first, r.last = first, first
	if len(value) < groupPendingFixedBytes || len(value) > groupPendingValueMax {
		return r, fmt.Sprintf("pending value of %d bytes", len(value))
	}
	if stored, computed := binary.BigEndian.Uint32(value), crc32.Checksum(value[groupChecksumBytes:], castagnoli); stored != computed {
		return r, fmt.Sprintf("pending value checksum mismatch: stored %08x, computed %08x", stored, computed)
	}
	v := value[5:]
	fixed := groupPendingFixedBytes
	switch value[4] {
	case groupValueVersion1:
	case groupValueVersion2:
		fixed += 8
		if len(value) < fixed {
			return r, fmt.Sprintf("version 2 pending value of %d bytes", len(value))
		}
		r.last = binary.BigEndian.Uint64(v)
		if r.last <= first {
			return r, fmt.Sprintf("pending run from %d to %d", first, r.last)
		}
		v = v[8:]
	default:
		return r, fmt.Sprintf("pending value version %d", value[4])
	}
	r.v.deliveries = binary.BigEndian.Uint32(v)
	r.v.lastDeliveredUnixNano = int64(binary.BigEndian.Uint64(v[4:]))
	r.v.notBeforeUnixNano = int64(binary.BigEndian.Uint64(v[12:]))
	if n := int(value[fixed-1]); len(value) != fixed+n {
		return r, fmt.Sprintf("pending value of %d bytes with a member of %d", len(value), n)
	}
	r.v.member = string(value[fixed:])
	if r.v.deliveries == 0 || r.v.member == "" {
		return r, fmt.Sprintf("pending value with %d deliveries by member %q", r.v.deliveries, r.v.member)
	}
	return r, ""
}
