package log

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// retentionStepRecordsMax bounds one RetentionPoint call: it reads at most
// this many records, and never returns a point more than this many records
// above the low watermark, so that the truncation the leader proposes from
// it (whose apply is linear in the records removed) stays bounded too.
const retentionStepRecordsMax = 100_000

// RetentionPolicy says which records retention removes. A zero field
// disables its rule; the zero policy retains everything.
type RetentionPolicy struct {
	// MaxAge removes records whose stored timestamp is older than now-MaxAge.
	MaxAge time.Duration
	// MaxBytes removes the oldest records until SizeBytes() <= MaxBytes.
	MaxBytes uint64
	// MaxRecords removes the oldest records until at most MaxRecords remain.
	MaxRecords uint64
	// DropExpired removes the oldest records while their ExpireAtUnixNano
	// is set and at or before now (records expiring out of order wait
	// for the ones before them).
	DropExpired bool
}

// Validate reports every problem with policy at once (errors.Join); each
// matches ErrInvalidArgument.
func (policy RetentionPolicy) Validate() error {
	var errs []error
	if policy.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("%w: retention MaxAge is %v, want >= 0 (0 disables it)", ErrInvalidArgument, policy.MaxAge))
	}
	return errors.Join(errs...)
}

// RetentionPoint returns the offset the policy wants the log truncated
// before, for the leader to propose as a replicated TruncateBefore: the
// largest of the first offset whose timestamp is at or after
// now-MaxAge, the smallest cut that leaves SizeBytes() <= MaxBytes,
// HighWatermark()-MaxRecords, and with DropExpired the end of the prefix of
// records expired at now; never above the high watermark, and
// LowWatermark() when nothing is due.
//
// The work is bounded: it reads at most 100,000 records and never returns
// a point more than 100,000 records above the low watermark. When the
// policy wants more, it returns the best point found so far; the caller
// calls again after the truncation (a result above the low watermark means
// progress). Safe for concurrent use.
func (p *Partition) RetentionPoint(policy RetentionPolicy, nowUnixNano int64) (uint64, error) {
	if err := policy.Validate(); err != nil {
		return 0, err
	}
	if err := p.db.acquire(); err != nil {
		return 0, err
	}
	defer p.db.release()
	view := p.openReadViewLocked()
	defer view.close()
	low, high := view.low, view.high
	limit := high
	if high-low > retentionStepRecordsMax {
		limit = low + retentionStepRecordsMax
	}

	point := low
	if policy.MaxAge > 0 {
		cutoff := int64(math.MinInt64) // saturates instead of wrapping
		if nowUnixNano >= math.MinInt64+int64(policy.MaxAge) {
			cutoff = nowUnixNano - int64(policy.MaxAge)
		}
		cut, err := p.offsetForTimeLocked(view, cutoff)
		if err != nil {
			return 0, err
		}
		point = max(point, cut)
	}
	if policy.MaxRecords > 0 && high-low > policy.MaxRecords {
		point = max(point, high-policy.MaxRecords)
	}
	size := p.bytes.Load()
	var excessBytes uint64
	if policy.MaxBytes > 0 && size > policy.MaxBytes {
		excessBytes = size - policy.MaxBytes
	}
	if excessBytes > 0 || policy.DropExpired {
		cut, err := p.scanRetentionLocked(view, limit, excessBytes, policy.DropExpired, nowUnixNano)
		if err != nil {
			return 0, err
		}
		point = max(point, cut)
	}
	return min(point, limit), nil
}

// scanRetentionLocked reads records from view.low up to limit and returns
// the larger of: the smallest cut removing at least excessBytes of
// SizeBytes (as far as it got), and with dropExpired the end of the prefix
// of records expired at now. A chunk whose header says it is wholly
// expired, or whose retained size all goes toward excessBytes, is taken
// whole, without a look at its records' fields.
func (p *Partition) scanRetentionLocked(view readView, limit, excessBytes uint64, dropExpired bool, now int64) (uint64, error) {
	scanner := newRecordScanner(p.id, dbIters(view.snapshot), p.legacyHigh.Load(), view.low, limit)
	defer scanner.close()
	scanner.missing = func(offset uint64, reason string) error { return p.missing(view.epoch, view.low, offset, reason) }
	var removedBytes uint64
	bytesCut, expiredCut := view.low, view.low
	expiring := dropExpired
	for removedBytes < excessBytes || expiring {
		run, ok, err := scanner.run()
		if err != nil {
			return 0, err
		}
		if !ok {
			break
		}
		end := run.end()
		if run.chunk && run.views[0].offset >= view.low {
			// Whole-chunk shortcuts.
			if expiring && run.header.expiredAt(now) {
				expiredCut = end
				if removedBytes >= excessBytes {
					continue
				}
			}
			if removedBytes+uint64(run.valueBytes) < excessBytes && (!expiring || expiredCut == end) {
				removedBytes += uint64(run.valueBytes)
				bytesCut = end
				continue
			}
		}
		for i, v := range run.views {
			if v.offset < view.low {
				continue
			}
			if removedBytes < excessBytes {
				removedBytes += run.size(i)
				bytesCut = v.offset + 1
			}
			if expiring {
				if v.expireAtUnixNano != 0 && v.expireAtUnixNano <= now {
					expiredCut = v.offset + 1
				} else {
					expiring = false
				}
			}
			if removedBytes >= excessBytes && !expiring {
				break
			}
		}
	}
	return max(bytesCut, expiredCut), nil
}
