package log

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"sync"
)

// tenantChunkValueBytes is the size of a sparse tenant index value:
// base offset(8) | count of the tenant's records in the chunk(4).
const tenantChunkValueBytes = 8 + 4

// chunkBuilder encodes the records a Batch appends into the chunk being
// filled. The Batch seals it (chunkBuilder.seal) into one Pebble key when
// it is full (chunkRecordsMax records, or chunkRecordsBytesMax bytes of
// records) and at Commit, so at most one chunk is held in memory besides
// the Pebble batch. Owned by its Batch; not safe for concurrent use.
type chunkBuilder struct {
	// buf holds room for the header followed by the encoded records.
	buf   []byte
	base  uint64
	count int
	first int64
	last  int64
	// expireAtMax is the latest ExpireAtUnixNano, valid unless
	// neverExpires (a record with ExpireAtUnixNano 0).
	expireAtMax  int64
	neverExpires bool
	// tenants are the chunk's tenants in order of first appearance, with
	// their first sequence and record count; tenantAt indexes them.
	tenants  []chunkTenant
	tenantAt map[string]int
}

// chunkTenant is one tenant's share of a chunk: its sparse index entry.
type chunkTenant struct {
	tenant   string
	firstSeq uint64
	count    uint32
}

// chunkBufferPool recycles chunk buffers between batches (one Batch per
// Raft apply would otherwise grow a new one every time). It holds
// *[]byte of capacity chunkBufferBytesPooled; a buffer grown past it for
// one large record is left to the garbage collector.
var chunkBufferPool = sync.Pool{New: func() any {
	buf := make([]byte, 0, chunkBufferBytesPooled)
	return &buf
}}

// chunkBufferBytesPooled is the capacity of pooled chunk buffers: a full
// chunk of small records.
const chunkBufferBytesPooled = chunkHeaderBytes + chunkRecordsBytesMax + chunkRecordHeaderBytes + tenantBytesMax

// release returns the builder's buffer to the pool and empties it.
func (c *chunkBuilder) release() {
	if c.buf != nil && cap(c.buf) == chunkBufferBytesPooled {
		buf := c.buf[:0]
		chunkBufferPool.Put(&buf)
	}
	*c = chunkBuilder{}
}

// recordsBytes returns the encoded size of the records added so far.
func (c *chunkBuilder) recordsBytes() int { return max(len(c.buf)-chunkHeaderBytes, 0) }

// fits reports whether a record of recordBytes encoded bytes may join the
// chunk: an empty chunk takes any record.
func (c *chunkBuilder) fits(recordBytes int) bool {
	return c.count == 0 || (c.count < chunkRecordsMax && c.recordsBytes()+recordBytes <= chunkRecordsBytesMax)
}

// full reports whether the chunk must be sealed before another record.
func (c *chunkBuilder) full() bool {
	return c.count >= chunkRecordsMax || c.recordsBytes() >= chunkRecordsBytesMax
}

// add encodes r at the end of the chunk; r.Offset must follow the last
// record's (or start the chunk) and r.Tenant be valid.
func (c *chunkBuilder) add(r *Record) {
	if c.count == 0 {
		if c.buf == nil {
			c.buf = *chunkBufferPool.Get().(*[]byte)
		}
		c.buf = append(c.buf[:0], make([]byte, chunkHeaderBytes)...)
		c.base = r.Offset
		c.first = r.TimestampUnixNano
		c.expireAtMax, c.neverExpires = r.ExpireAtUnixNano, false
	}
	dst := binary.BigEndian.AppendUint64(c.buf, r.Offset)
	dst = binary.BigEndian.AppendUint64(dst, r.Sequence)
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.TimestampUnixNano))
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.ExpireAtUnixNano))
	dst = append(dst, byte(len(r.Tenant)))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(r.Body)))
	dst = append(dst, r.Tenant...)
	c.buf = append(dst, r.Body...)
	c.count++
	c.last = r.TimestampUnixNano
	if r.ExpireAtUnixNano == 0 {
		c.neverExpires = true
	} else {
		c.expireAtMax = max(c.expireAtMax, r.ExpireAtUnixNano)
	}

	if i, ok := c.tenantAt[r.Tenant]; ok {
		c.tenants[i].count++
		return
	}
	if c.tenantAt == nil {
		c.tenantAt = make(map[string]int)
	}
	c.tenantAt[r.Tenant] = len(c.tenants)
	c.tenants = append(c.tenants, chunkTenant{tenant: r.Tenant, firstSeq: r.Sequence, count: 1})
}

// seal fills the header of a non-empty chunk and returns its value, which
// aliases the builder until reset.
func (c *chunkBuilder) seal() []byte {
	value := c.buf
	value[chunkVersionAt] = chunkVersion1
	binary.BigEndian.PutUint32(value[chunkCountAt:], uint32(c.count))
	binary.BigEndian.PutUint64(value[chunkFirstTSAt:], uint64(c.first))
	binary.BigEndian.PutUint64(value[chunkLastTSAt:], uint64(c.last))
	expireAtMax := c.expireAtMax
	if c.neverExpires {
		expireAtMax = 0
	}
	binary.BigEndian.PutUint64(value[chunkExpireAtMaxAt:], uint64(expireAtMax))
	binary.BigEndian.PutUint32(value, crc32.Checksum(value[recordChecksumBytes:], castagnoli))
	return value
}

// reset empties the chunk, keeping its buffers.
func (c *chunkBuilder) reset() {
	c.buf = c.buf[:0]
	c.count = 0
	c.tenants = c.tenants[:0]
	clear(c.tenantAt)
}

// flushChunk writes the pending chunk, if any, as one key with one sparse
// index entry per tenant, and empties it. Failures are sticky.
func (b *Batch) flushChunk() error {
	c := &b.chunk
	if c.count == 0 {
		return nil
	}
	p := b.partition
	// Invariants, checked right before they are written.
	if c.base < b.firstOffset || c.base+uint64(c.count) != b.nextOffset || c.first > c.last {
		return b.fail(&CorruptionError{Partition: p.id, Offset: c.base, Reason: fmt.Sprintf(
			"chunk of %d records at base %d (timestamps %d..%d) does not end at the batch's next offset %d",
			c.count, c.base, c.first, c.last, b.nextOffset)})
	}
	key := appendChunkKey(b.scratch[:0], p.id, c.base)
	if err := b.set(key, c.seal(), "chunk"); err != nil {
		return err
	}
	for _, t := range c.tenants {
		key = appendTenantChunkKey(key[:0], p.id, t.tenant, t.firstSeq)
		value := binary.BigEndian.AppendUint64(key[len(key):], c.base)
		value = binary.BigEndian.AppendUint32(value, t.count)
		if err := b.set(key, value, "sparse tenant index"); err != nil {
			return err
		}
	}
	b.scratch = key[:0]
	c.reset()
	return nil
}

// decodeTenantChunkValue decodes a sparse tenant index value; ok is false
// when it is malformed.
func decodeTenantChunkValue(value []byte) (base uint64, count uint64, ok bool) {
	if len(value) != tenantChunkValueBytes {
		return 0, 0, false
	}
	count = uint64(binary.BigEndian.Uint32(value[8:]))
	return binary.BigEndian.Uint64(value), count, count >= 1 && count <= chunkRecordsMax
}
