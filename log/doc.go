// Package log is Herald's Pebble-backed partition log.
//
// One Pebble database per node holds the logs of many partitions. Every key
// starts with a partition prefix, so partitions share the database and its
// block cache but never each other's keys. The package knows nothing
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
// Version 1 (records and tenant index still read and truncated, no longer
// written since version 3):
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
// Version 3 (written) stores records in chunks, with a sparse tenant index,
// instead of one 'e' key and one 't' key per record:
//
//	chunk:           'p' | pid(8) | 'b' | base offset(8)                       -> chunk value
//	sparse index:    'p' | pid(8) | 's' | len(tenant)(1) | tenant | first seq(8)
//	                                                      -> base offset(8) | count(4)
//
// A chunk holds consecutive records from its base offset. A Batch fills
// one chunk at a time and writes it as one key when it holds 1,024 records
// or 256 KiB of encoded records (a record that would take it past that
// starts the next chunk, so a larger record is a chunk of its own), and at
// Commit: chunks never span two commits. Each chunk has one sparse index
// entry per tenant in it: the tenant's first sequence in the chunk, the
// chunk's base and how many of the tenant's records it holds (they are
// consecutive sequences). Records written before version 3 always have
// lower offsets than chunks, so a partition's log is its 'e' records
// followed by its chunks; a read takes each from its place.
//
// Version 4 (written) changes the producer state value ('d') to
//
//	last producer_seq(8) | last seen ts(8) | epoch(8) | window first seq(8)
//
// (32 bytes). A version-2 value (16 bytes) is still read, as epoch 0 with
// a window of the last [ProducerWindow] sequences; the next write of that
// producer replaces it. The window first seq is the lowest sequence whose
// window entry ('w') is kept: the window holds the last ProducerWindow
// sequences and every sequence of the producer's last request, so a
// resend of a whole request of any size finds its positions.
//
// An idempotent producer's state ('d') is buffered in the Batch and
// written once per batch, at Commit; its window entries ('w') are still
// written per record.
//
// Version 5 adds the consumer groups (group.go; values in group_value.go):
//
//	group header:    'p' | pid(8) | 'g' | len(group)(1) | group            -> header value
//	group pending:   'p' | pid(8) | 'q' | len(group)(1) | group | offset(8) -> pending value
//	group due:       'p' | pid(8) | 'r' | len(group)(1) | group | not_before(8) | offset(8) -> empty
//
// A group's header holds its floor, cursor, assignment, pending count and
// config; each pending delivery has one 'q' key and one 'r' key at its
// not-before (sign-flipped), so that the due deliveries are read in
// not-before order. An offset between the floor and the cursor with no 'q'
// key is done. Both values carry a CRC32C and a version byte.
//
// Version 6 adds the processed marks of consumer groups (the idempotent
// consumer; group_marks.go):
//
//	group mark:        'p' | pid(8) | 'k' | len(group)(1) | group | len(key)(1) | key -> mark value
//	group mark offset: 'p' | pid(8) | 'o' | len(group)(1) | group | offset(8) | len(key)(1) | key -> empty
//	group mark count:  'p' | pid(8) | 'u' | len(group)(1) | group -> count(8)
//
// A mark value is crc32c(4) | version(1)=1 | sequence(8) | offset(8): the
// highest tenant sequence processed under the key and that event's offset.
// The 'o' keys list a group's marks in offset order, for eviction of the
// lowest offsets beyond [GroupMarksMax]. A snapshot holding marks was
// stream version 5 (version 6 since key layout version 7).
//
// Version 7 stores a group's pending deliveries as runs (group_runs.go):
// the 'q' key's offset is the first of a run of consecutive pending
// offsets that share their delivery count, times and member, and its value
// (pending value version 2) names the run's last offset; the run has one
// due key ('r') at its not-before, keyed by its first offset:
//
//	group pending:   'p' | pid(8) | 'q' | len(group)(1) | group | first(8) -> pending value (run)
//	group due:       'p' | pid(8) | 'r' | len(group)(1) | group | not_before(8) | first(8) -> empty
//
// A delivery of N new offsets writes one run (two keys) instead of N
// pending and N due keys, and a cumulative acknowledgement deletes whole
// runs and trims at most one. A command that names offsets one by one
// splits the runs holding them (see group_runs.go for the bounds). A run
// of one offset is still written as pending value version 1, which is
// exactly what version 5 wrote for every offset: a data directory or a
// snapshot written before version 7 is read as it is, its per-offset keys
// being runs of one offset, with no conversion; they are rewritten as
// runs only as commands touch them. A snapshot of a partition with a
// consumer group is stream version 6, so a node that predates runs refuses
// it by its version.
//
// Meta names: "applied" (last applied Raft index, 8 bytes), "next_offset"
// (high watermark, 8 bytes), "low_watermark" (first retained offset, 8
// bytes), "restoring" (present, empty, while a snapshot restore is under
// way); version 2: "last_ts" (stored timestamp of the newest record ever
// appended, int64 as 8 bytes) and "bytes" (the stored size of the
// retained records, see [Partition.SizeBytes], 8 bytes). A missing meta value reads as zero, except the
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
// Producer state (with its epoch, for fencing) and its window give
// idempotent producers (see [Batch.AppendRecord] and
// [Batch.CheckProducerRequest]); window entries are deleted as the window
// moves, and all of them when a new epoch starts. An event-id entry remembers an event until
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
// Records stored under their own 'e' key (no longer written since
// version 3).
//
// Version 1:
//
//	crc32c(4) | version(1)=1 | offset(8) | sequence(8) | timestamp_unix_nano(8) |
//	tenant_len(1) | tenant | body
//
// Version 2, the version-1 header followed by the expiry:
//
//	crc32c(4) | version(1)=2 | offset(8) | sequence(8) | timestamp_unix_nano(8) |
//	tenant_len(1) | expire_at_unix_nano(8) (0: never) | tenant | body
//
// The CRC (Castagnoli) covers every byte after it. Every read checks the CRC,
// the version and that the stored offset equals the key's offset; a mismatch
// is a [*CorruptionError] naming the partition and offset, never a skipped
// record. A version-1 record reads with ExpireAtUnixNano 0.
//
// # Chunk value
//
// Version 1 (written):
//
//	crc32c(4) | version(1)=1 | count(4) | first_timestamp(8) | last_timestamp(8) |
//	expire_at_max(8) | record * count
//	record: offset(8) | sequence(8) | timestamp_unix_nano(8) | expire_at_unix_nano(8) |
//	        tenant_len(1) | body_len(4) | tenant | body
//
// The CRC (Castagnoli) covers every byte after it. expire_at_max is the
// latest expiry of the records, or 0 when one of them never expires, so
// that the chunk is wholly expired at now when it is not 0 and at or
// before now. Every record carries its own offset, sequence, tenant,
// timestamp and expiry, so a decoded chunk checks itself: every read of a
// chunk checks the CRC, the version, that the offsets run from the key's
// base without a gap, that the count, the timestamps and expire_at_max
// agree with the records, and that no byte is left over; a failure is a
// [*CorruptionError] naming the partition and the chunk's base offset (or
// the offset of the record that failed). A read of one record decodes its
// whole chunk.
//
// # Retention
//
// Truncation is a replicated, deterministic operation: the leader computes
// a point ([Partition.RetentionPoint]) and proposes it; every replica
// applies [Batch.TruncateBefore], which deletes the chunks wholly below it
// (one range delete), their sparse index entries (one range delete per
// tenant), the 'e' records below it with their 't' entries, and the time
// index points below it, and moves the low watermark and the byte count.
// A chunk that straddles the low watermark stays until it is wholly below
// it; no read returns or counts its records below the low watermark.
// [Partition.SizeBytes] counts each retained record's encoded size in its
// chunk (the chunk header with the chunk's first record), or the value
// size of an 'e' record.
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
// Versions 3 and 6 are written; versions 1 to 6 are read. They frame
// entries the same way; version 2 may hold the version-2 kinds, meta and
// records, version 3 also chunks and sparse index entries, version 4 also
// consumer group keys, version 5 also processed marks, version 6 also
// pending runs (an older node refuses a newer stream by its version).
// Version 6 is written only for a partition that has a consumer group
// (versions 4 and 5 were, before runs), so a node that predates groups
// still takes the others. Keys in the stream are
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
