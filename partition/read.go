package partition

import heraldlog "github.com/heraldlog/herald/log"

// Reads. Any replica may serve them: only committed entries are ever
// applied, so everything below a replica's high watermark is committed.
// Where the partition ends is another matter: a follower, or a leader that
// has not caught up (CatchUp), may not have applied everything
// acknowledged yet, so only a caught-up leader may answer "out of range"
// above its high watermark (the node's fetch path decides).
//
// They return the partition's errors (*OffsetOutOfRangeError,
// *CorruptionError) in place of the log's; the records are the log's
// (heraldlog.Record), handed on without a copy. All are safe for
// concurrent use, with each other and with applies.

// Read returns the records with offset >= from in offset order, up to
// maxRecords records and maxBytes of bodies (at least one record when one
// exists); from == HighWatermark() returns none. See log.Partition.Read.
func (r *Replica) Read(from uint64, maxRecords, maxBytes int) ([]heraldlog.Record, error) {
	recs, err := r.cfg.Log.Read(from, maxRecords, maxBytes)
	return recs, readError(err)
}

// ReadTenant returns tenant's records with sequence >= fromSeq in sequence
// order, with Read's limits. See log.Partition.ReadTenant.
func (r *Replica) ReadTenant(tenant string, fromSeq uint64, maxRecords, maxBytes int) ([]heraldlog.Record, error) {
	recs, err := r.cfg.Log.ReadTenant(tenant, fromSeq, maxRecords, maxBytes)
	return recs, readError(err)
}

// OffsetForTime returns the first retained offset produced at or after
// unixNano. See log.Partition.OffsetForTime.
func (r *Replica) OffsetForTime(unixNano int64) (uint64, error) {
	offset, err := r.cfg.Log.OffsetForTime(unixNano)
	return offset, readError(err)
}

// NextSequence returns the next sequence tenant's next event will get (1
// for a tenant with no events), as applied here.
func (r *Replica) NextSequence(tenant string) (uint64, error) {
	seq, err := r.cfg.Log.NextSequence(tenant)
	return seq, readError(err)
}

// HighWatermark is the offset the next applied record will get here.
func (r *Replica) HighWatermark() uint64 { return r.cfg.Log.HighWatermark() }

// LowWatermark is the first offset retained here.
func (r *Replica) LowWatermark() uint64 { return r.cfg.Log.LowWatermark() }
