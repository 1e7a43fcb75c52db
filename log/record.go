package log

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Record value layout (see the package documentation). The version byte is
// persisted: new versions get new numbers and old ones stay readable.
const (
	recordVersion1 byte = 1
	recordVersion2 byte = 2

	recordChecksumBytes = 4
	// recordHeaderV1Bytes is everything before the tenant bytes in version 1:
	// crc(4) | version(1) | offset(8) | sequence(8) | timestamp(8) | tenant_len(1).
	recordHeaderV1Bytes = recordChecksumBytes + 1 + 8 + 8 + 8 + 1
	// recordHeaderV2Bytes is the version-1 header followed by
	// expire_at_unix_nano(8).
	recordHeaderV2Bytes = recordHeaderV1Bytes + 8
	// recordTenantLengthAt is where tenant_len sits in both versions.
	recordTenantLengthAt = recordHeaderV1Bytes - 1

	// recordBodyBytesMax bounds one record's body. Topics set smaller limits
	// on events; this one keeps a single record (and so a minimal read, a
	// snapshot entry and a restore buffer) bounded whatever the caller does.
	recordBodyBytesMax = 16 << 20
	// recordValueBytesMax is the largest valid record value.
	recordValueBytesMax = recordHeaderV2Bytes + tenantBytesMax + recordBodyBytesMax
)

// castagnoli is the CRC32C table used for records and snapshot streams.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Record is one entry of a partition's log.
type Record struct {
	// Offset is the record's position in its partition, dense from 0.
	Offset uint64
	// Sequence is the record's position among its tenant's records in the
	// partition, dense from 1.
	Sequence uint64
	// Tenant owns the record (1..255 bytes).
	Tenant string
	// TimestampUnixNano is the time given at append (the leader's clock,
	// stamped before replication), raised to the partition's previous
	// record's timestamp if it was behind: timestamps never decrease with
	// the offset (records stored before version 2 excepted).
	TimestampUnixNano int64
	// ExpireAtUnixNano is when the record's time to live ends; 0 means
	// never. Reads return expired records: the caller filters them with
	// its own clock (and retention drops them, see RetentionPolicy).
	ExpireAtUnixNano int64
	// Body is opaque to this package. Records returned by reads own their
	// Body.
	Body []byte
}

// appendRecordValue appends the version-2 encoding of r to dst (the only
// version written). r.Tenant must be valid.
func appendRecordValue(dst []byte, r *Record) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, recordVersion2)
	dst = binary.BigEndian.AppendUint64(dst, r.Offset)
	dst = binary.BigEndian.AppendUint64(dst, r.Sequence)
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.TimestampUnixNano))
	dst = append(dst, byte(len(r.Tenant)))
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.ExpireAtUnixNano))
	dst = append(dst, r.Tenant...)
	dst = append(dst, r.Body...)
	sum := crc32.Checksum(dst[start+recordChecksumBytes:], castagnoli)
	binary.BigEndian.PutUint32(dst[start:], sum)
	return dst
}

// recordView is a decoded record whose tenant and body alias the value it
// was decoded from.
type recordView struct {
	offset            uint64
	sequence          uint64
	timestampUnixNano int64
	expireAtUnixNano  int64
	tenant            []byte
	body              []byte
}

// parseRecordValue checks and decodes a stored record value found under the
// key of keyOffset in partition. Any failed check is a *CorruptionError.
func parseRecordValue(partition, keyOffset uint64, value []byte) (recordView, error) {
	corrupt := func(format string, args ...any) (recordView, error) {
		return recordView{}, &CorruptionError{Partition: partition, Offset: keyOffset, Reason: fmt.Sprintf(format, args...)}
	}
	if len(value) < recordHeaderV1Bytes+1 {
		return corrupt("record value is %d bytes, shorter than the smallest record", len(value))
	}
	if len(value) > recordValueBytesMax {
		return corrupt("record value is %d bytes, longer than the largest record", len(value))
	}
	stored := binary.BigEndian.Uint32(value)
	if computed := crc32.Checksum(value[recordChecksumBytes:], castagnoli); stored != computed {
		return corrupt("record checksum mismatch: stored %08x, computed %08x", stored, computed)
	}
	v := recordView{
		offset:            binary.BigEndian.Uint64(value[5:]),
		sequence:          binary.BigEndian.Uint64(value[13:]),
		timestampUnixNano: int64(binary.BigEndian.Uint64(value[21:])),
	}
	headerBytes := recordHeaderV1Bytes
	switch version := value[recordChecksumBytes]; version {
	case recordVersion1:
	case recordVersion2:
		headerBytes = recordHeaderV2Bytes
		if len(value) < headerBytes {
			return corrupt("version-2 record value is %d bytes, shorter than its header", len(value))
		}
		v.expireAtUnixNano = int64(binary.BigEndian.Uint64(value[recordHeaderV1Bytes:]))
	default:
		return corrupt("unknown record version %d", version)
	}
	tenantBytes := int(value[recordTenantLengthAt])
	if tenantBytes == 0 || headerBytes+tenantBytes > len(value) {
		return corrupt("record tenant length %d does not fit a %d-byte value", tenantBytes, len(value))
	}
	v.tenant = value[headerBytes : headerBytes+tenantBytes]
	v.body = value[headerBytes+tenantBytes:]
	if v.offset != keyOffset {
		return corrupt("record stores offset %d under the key of offset %d", v.offset, keyOffset)
	}
	if v.sequence == 0 {
		return corrupt("record stores tenant sequence 0")
	}
	return v, nil
}

// record returns a Record that owns copies of v's tenant and body.
func (v recordView) record() Record {
	return Record{
		Offset:            v.offset,
		Sequence:          v.sequence,
		Tenant:            string(v.tenant),
		TimestampUnixNano: v.timestampUnixNano,
		ExpireAtUnixNano:  v.expireAtUnixNano,
		Body:              append(make([]byte, 0, len(v.body)), v.body...),
	}
}
