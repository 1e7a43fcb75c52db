// Package log is Herald's Pebble-backed partition log.
//
// One Pebble database per node holds the logs of many partitions. Every key
// starts with a partition prefix, so partitions share the database, its WAL
// and its block cache but never each other's keys. The package knows nothing
// of Raft or gRPC: a record carries an opaque body, and durability comes from
// the caller (the Raft log is the durability source; see [Batch.Commit] and
// [Partition.Snapshot]).
//
// # Key layout
//
// All integers are big-endian, so byte order of keys is log order. Signed
// timestamps inside keys (ts, until) are stored with the sign bit flipped,
// so that their byte order is their numeric order.
//
// Version 1:
//
//	records:         'p' | pid(8) | 'e' | offset(8)                            -> record value
//	tenant index:    'p' | pid(8) | 't' | len(tenant)(1) | tenant | seq(8)     -> offset(8)
//	meta:            'p' | pid(8) | 'm' | name                                 -> see below
//	tenant next:     'p' | pid(8) | 'n' | tenant                               -> next seq(8)
//
// Version 2 adds:
//
//	producer state:  'p' | pid(8) | 'd' | len(tenant)(1) | tenant | len(producer)(1) | producer
//	                                                      -> last producer_seq(8) | last seen ts(8)
//	producer window: 'p' | pid(8) | 'w' | len(tenant)(1) | tenant | len(producer)(1) | producer | producer_seq(8)
//	                                                      -> offset(8) | tenant seq(8)
//	event id:        'p' | pid(8) | 'i' | len(tenant)(1) | tenant | event_id -> offset(8) | tenant seq(8) | until(8)
//	event expiry:    'p' | pid(8) | 'j' | until(8) | len(tenant)(1) | tenant | event_id -> empty
//	time index:      'p' | pid(8) | 'x' | ts(8) | offset(8)                    -> empty
//
// Meta names: "applied" (last applied Raft index, 8 bytes), "next_offset"
// (high watermark, 8 bytes), "low_watermark" (first retained offset, 8
// bytes), "restoring" (present, empty, while a snapshot restore is under
// way); version 2: "last_ts" (stored timestamp of the newest record ever
// appended, int64 as 8 bytes) and "bytes" (sum of the retained records'
// value sizes, 8 bytes). A missing meta value reads as zero, except the
// version-2 ones, which a partition written before version 2 derives from
// its records (the last record's timestamp, the sum of the value sizes)
// until its next commit writes them.
//
// Kind letters are persisted: they are append-only and are never given a
// new meaning.
//
// Tenant ids, producer ids and event ids are 1..255 bytes. Offsets are
// dense from 0 per partition; tenant sequences are dense from 1 per tenant
// per partition (a truncation removes a prefix of them). Event ids and
// producers are scoped by tenant, so one tenant's ids never dedupe another
// tenant's records.
//
// Producer state and its window of the last [ProducerWindow] sequences
// give idempotent producers (see [Batch.AppendRecord]); window entries are
// deleted as the window moves. An event-id entry remembers an event until
// its until time; the expiry keys list the entries in until order for
// [Batch.ExpireDedupe], which forgets them and idle producers. All of this
// is inside the partition's key range, so snapshots carry it.
//
// The time index is sparse: a batch's first record whose stored timestamp
// is at least 100 ms after the newest point gets a point (offset 0 always
// does). Stored timestamps never decrease with the offset (each is raised
// to the previous one), so points sort by offset too; truncation deletes
// the points below the new low watermark. See [Partition.OffsetForTime].
//
// # Record value
//
// Version 1 (still read, no longer written):
//
//	crc32c(4) | version(1)=1 | offset(8) | sequence(8) | timestamp_unix_nano(8) |
//	tenant_len(1) | tenant | body
//
// Version 2 (written), the version-1 header followed by the expiry:
//
//	crc32c(4) | version(1)=2 | offset(8) | sequence(8) | timestamp_unix_nano(8) |
//	tenant_len(1) | expire_at_unix_nano(8) (0: never) | tenant | body
//
// The CRC (Castagnoli) covers every byte after it. Every read checks the CRC,
// the version and that the stored offset equals the key's offset; a mismatch
// is a [*CorruptionError] naming the partition and offset, never a skipped
// record. A version-1 record reads with ExpireAtUnixNano 0.
//
// # Retention
//
// Truncation is a replicated, deterministic operation: the leader computes
// a point ([Partition.RetentionPoint]) and proposes it; every replica
// applies [Batch.TruncateBefore], which deletes the records below it (one
// range delete), their tenant index entries (one range delete per tenant)
// and time index points, and moves the low watermark and the byte count.
// Dedupe state expires the same way ([Batch.ExpireDedupe] with the
// leader's clock in the command).
//
// # Snapshot stream
//
// [Snapshot.WriteTo] writes, and [Partition.Restore] reads:
//
//	header:  magic "HLOGSNAP"(8) | version(1) | applied index(8)
//	entry:   'E' | key_len(4) | key | value_len(4) | value     (repeated, key order)
//	trailer: 'T' | entry count(8) | crc32c(4)
//
// Version 2 is written; versions 1 and 2 are read. They frame entries the
// same way; version 2 may hold the version-2 kinds, meta and records (an
// older node refuses it by its version). Keys in the stream are
// partition-relative (the kind byte onwards), so a snapshot can be
// restored under another partition id. The trailer CRC (Castagnoli) covers
// every byte of the stream before it. Key and value lengths are bounded;
// the stream must end right after the trailer.
//
// # Concurrency
//
// Each partition has a single writer: one goroutine (the Raft FSM) builds and
// commits batches and calls [Partition.Snapshot], [Partition.Restore] and
// [Partition.Drop]. Reads ([Partition.Read], [Partition.ReadTenant],
// [Partition.OffsetOfSequence], [Partition.OffsetForTime],
// [Partition.RetentionPoint], [Partition.SizeBytes], the watermark
// getters) and [Snapshot.WriteTo] may run on any goroutine concurrently
// with the writer. A truncation publishes the new low watermark before it
// deletes, so a reader that loses a record to it gets an
// [*OffsetOutOfRangeError], never a [*CorruptionError].
// [DB.Close] waits for operations in progress; afterwards every operation
// returns [ErrClosed].
package log
