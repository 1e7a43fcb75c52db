package log

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Chunk value layout (see the package documentation). The version byte is
// persisted: new versions get new numbers and old ones stay readable.
const (
	chunkVersion1 byte = 1

	// chunkHeaderBytes is crc(4) | version(1) | count(4) |
	// first_timestamp(8) | last_timestamp(8) | expire_at_max(8).
	chunkHeaderBytes = recordChecksumBytes + 1 + 4 + 8 + 8 + 8
	// chunkRecordHeaderBytes is what a record takes in a chunk besides its
	// tenant and body: offset(8) | sequence(8) | timestamp(8) |
	// expire_at(8) | tenant_len(1) | body_len(4).
	chunkRecordHeaderBytes = 8 + 8 + 8 + 8 + 1 + 4

	// chunkRecordsMax bounds the records of one chunk.
	chunkRecordsMax = 1024
	// chunkRecordsBytesMax bounds the encoded records of a chunk of more
	// than one record: a record that would take a chunk past it starts
	// the next chunk, so a record larger than it is a chunk of its own.
	chunkRecordsBytesMax = 256 << 10
	// chunkRecordBytesMax is the largest encoded record.
	chunkRecordBytesMax = chunkRecordHeaderBytes + tenantBytesMax + recordBodyBytesMax
	// chunkValueBytesMax is the largest valid chunk value.
	chunkValueBytesMax = chunkHeaderBytes + max(chunkRecordsBytesMax, chunkRecordBytesMax)
)

// Where the header fields sit in a chunk value.
const (
	chunkVersionAt     = recordChecksumBytes
	chunkCountAt       = chunkVersionAt + 1
	chunkFirstTSAt     = chunkCountAt + 4
	chunkLastTSAt      = chunkFirstTSAt + 8
	chunkExpireAtMaxAt = chunkLastTSAt + 8
)

// chunkRecordBytes is the encoded size of a record of tenant and body in a
// chunk (the chunk header not included).
func chunkRecordBytes(tenant, body int) int { return chunkRecordHeaderBytes + tenant + body }

// chunkHeader is the decoded header of a chunk.
type chunkHeader struct {
	count                  int
	firstTimestampUnixNano int64
	lastTimestampUnixNano  int64
	// expireAtMaxUnixNano is the latest ExpireAtUnixNano of the records,
	// or 0 when one of them never expires: the whole chunk has expired at
	// now when it is not 0 and at or before now.
	expireAtMaxUnixNano int64
}

// expiredAt reports whether every record of the chunk has expired at now.
func (h chunkHeader) expiredAt(now int64) bool {
	return h.expireAtMaxUnixNano != 0 && h.expireAtMaxUnixNano <= now
}

// decodeChunk checks a stored chunk value found under the key of base in
// partition and decodes its records into dst[:0]; the views alias value.
// It checks the CRC, the version, the header against the records, that the
// offsets run from base without a gap, that sequences are not 0 and that
// timestamps do not decrease. Any failed check is a *CorruptionError at
// base, or at the offset of the record that failed.
func decodeChunk(partition, base uint64, value []byte, dst []recordView) (chunkHeader, []recordView, error) {
	dst = dst[:0]
	corrupt := func(offset uint64, format string, args ...any) (chunkHeader, []recordView, error) {
		return chunkHeader{}, dst, &CorruptionError{Partition: partition, Offset: offset, Reason: fmt.Sprintf(format, args...)}
	}
	if len(value) < chunkHeaderBytes+chunkRecordHeaderBytes+1 {
		return corrupt(base, "chunk value is %d bytes, shorter than the smallest chunk", len(value))
	}
	if len(value) > chunkValueBytesMax {
		return corrupt(base, "chunk value is %d bytes, longer than the largest chunk", len(value))
	}
	stored := binary.BigEndian.Uint32(value)
	if computed := crc32.Checksum(value[recordChecksumBytes:], castagnoli); stored != computed {
		return corrupt(base, "chunk checksum mismatch: stored %08x, computed %08x", stored, computed)
	}
	if version := value[chunkVersionAt]; version != chunkVersion1 {
		return corrupt(base, "unknown chunk version %d", version)
	}
	header := chunkHeader{
		count:                  int(binary.BigEndian.Uint32(value[chunkCountAt:])),
		firstTimestampUnixNano: int64(binary.BigEndian.Uint64(value[chunkFirstTSAt:])),
		lastTimestampUnixNano:  int64(binary.BigEndian.Uint64(value[chunkLastTSAt:])),
		expireAtMaxUnixNano:    int64(binary.BigEndian.Uint64(value[chunkExpireAtMaxAt:])),
	}
	if header.count < 1 || header.count > chunkRecordsMax {
		return corrupt(base, "chunk counts %d records, want 1..%d", header.count, chunkRecordsMax)
	}
	if cap(dst) < header.count {
		dst = make([]recordView, 0, header.count)
	}
	var expireAtMax int64
	neverExpires := false
	rest := value[chunkHeaderBytes:]
	for i := range header.count {
		offset := base + uint64(i)
		if len(rest) < chunkRecordHeaderBytes {
			return corrupt(offset, "chunk record %d of %d is cut short", i, header.count)
		}
		v := recordView{
			offset:            binary.BigEndian.Uint64(rest),
			sequence:          binary.BigEndian.Uint64(rest[8:]),
			timestampUnixNano: int64(binary.BigEndian.Uint64(rest[16:])),
			expireAtUnixNano:  int64(binary.BigEndian.Uint64(rest[24:])),
		}
		tenantBytes := int(rest[32])
		bodyBytes := int(binary.BigEndian.Uint32(rest[33:]))
		rest = rest[chunkRecordHeaderBytes:]
		if tenantBytes == 0 || bodyBytes > recordBodyBytesMax || tenantBytes+bodyBytes > len(rest) {
			return corrupt(offset, "chunk record with tenant length %d and body length %d does not fit", tenantBytes, bodyBytes)
		}
		v.tenant = rest[:tenantBytes:tenantBytes]
		v.body = rest[tenantBytes : tenantBytes+bodyBytes : tenantBytes+bodyBytes]
		rest = rest[tenantBytes+bodyBytes:]
		if v.offset != offset {
			return corrupt(offset, "chunk of base %d stores offset %d as its record %d", base, v.offset, i)
		}
		if v.sequence == 0 {
			return corrupt(offset, "record stores tenant sequence 0")
		}
		if i > 0 && v.timestampUnixNano < dst[i-1].timestampUnixNano {
			return corrupt(offset, "timestamp %d is below the previous record's %d", v.timestampUnixNano, dst[i-1].timestampUnixNano)
		}
		if v.expireAtUnixNano == 0 {
			neverExpires = true
		} else if i == 0 || v.expireAtUnixNano > expireAtMax {
			expireAtMax = v.expireAtUnixNano
		}
		dst = append(dst, v)
	}
	if len(rest) != 0 {
		return corrupt(base, "chunk has %d bytes after its %d records", len(rest), header.count)
	}
	if neverExpires {
		expireAtMax = 0
	}
	if header.firstTimestampUnixNano != dst[0].timestampUnixNano || header.lastTimestampUnixNano != dst[len(dst)-1].timestampUnixNano ||
		header.expireAtMaxUnixNano != expireAtMax {
		return corrupt(base, "chunk header (timestamps %d..%d, expire_at_max %d) disagrees with its records (%d..%d, %d)",
			header.firstTimestampUnixNano, header.lastTimestampUnixNano, header.expireAtMaxUnixNano,
			dst[0].timestampUnixNano, dst[len(dst)-1].timestampUnixNano, expireAtMax)
	}
	return header, dst, nil
}

// chunkEnd returns the offset after the last record of views (a decoded
// chunk).
func chunkEnd(views []recordView) uint64 { return views[len(views)-1].offset + 1 }

// chunkRecordSize is the share of a chunk value that record i of it
// accounts for (Partition.SizeBytes): its encoded size, plus the chunk
// header for the first record.
func chunkRecordSize(views []recordView, i int) uint64 {
	size := uint64(chunkRecordBytes(len(views[i].tenant), len(views[i].body)))
	if i == 0 {
		size += chunkHeaderBytes
	}
	return size
}
