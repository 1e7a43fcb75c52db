// Package log is Herald's Pebble-backed partition log.
//
// One Pebble database per node holds the logs of many partitions. Every key
// starts with a partition prefix, so partitions share the database, its WAL
// and its block cache but never each other's keys. The package knows nothing
// of Raft or gRPC: a record carries an opaque body, and durability comes from
// the caller (the Raft log is the durability source; see [Batch.Commit] and
// [Partition.Snapshot]).
//
// # Key layout (version 1)
//
// All integers are big-endian, so byte order of keys is log order.
//
//	records:      'p' | pid(8) | 'e' | offset(8)                                -> record value
//	tenant index: 'p' | pid(8) | 't' | len(tenant)(1) | tenant | seq(8)         -> offset(8)
//	meta:         'p' | pid(8) | 'm' | name                                     -> see below
//	tenant next:  'p' | pid(8) | 'n' | tenant                                   -> next seq(8)
//
// Meta names: "applied" (last applied Raft index, 8 bytes), "next_offset"
// (high watermark, 8 bytes), "low_watermark" (first retained offset, 8
// bytes), "restoring" (present, empty, while a snapshot restore is under way).
// A missing meta value reads as zero.
//
// The kind letters 'd' (dedupe table), 'i' (event-id index) and 'x' (time
// index) are reserved for later use. Kind letters are persisted: they are
// append-only and are never given a new meaning.
//
// Tenant ids are 1..255 bytes. Offsets are dense from 0 per partition;
// tenant sequences are dense from 1 per tenant per partition.
//
// # Record value (version 1)
//
//	crc32c(4) | version(1)=1 | offset(8) | sequence(8) | timestamp_unix_nano(8) |
//	tenant_len(1) | tenant | body
//
// The CRC (Castagnoli) covers every byte after it. Every read checks the CRC,
// the version and that the stored offset equals the key's offset; a mismatch
// is a [*CorruptionError] naming the partition and offset, never a skipped
// record.
//
// # Snapshot stream (version 1)
//
// [Snapshot.WriteTo] writes, and [Partition.Restore] reads:
//
//	header:  magic "HLOGSNAP"(8) | version(1)=1 | applied index(8)
//	entry:   'E' | key_len(4) | key | value_len(4) | value     (repeated, key order)
//	trailer: 'T' | entry count(8) | crc32c(4)
//
// Keys in the stream are partition-relative (the kind byte onwards), so a
// snapshot can be restored under another partition id. The trailer CRC
// (Castagnoli) covers every byte of the stream before it. Key and value
// lengths are bounded; the stream must end right after the trailer.
//
// # Concurrency
//
// Each partition has a single writer: one goroutine (the Raft FSM) builds and
// commits batches and calls [Partition.Snapshot], [Partition.Restore] and
// [Partition.Drop]. Reads ([Partition.Read], [Partition.ReadTenant],
// [Partition.OffsetOfSequence], the watermark getters) and
// [Snapshot.WriteTo] may run on any goroutine concurrently with the writer.
// [DB.Close] waits for operations in progress; afterwards every operation
// returns [ErrClosed].
package log
