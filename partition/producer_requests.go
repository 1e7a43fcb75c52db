package partition

import (
	"errors"
	"time"

	heraldlog "github.com/heraldlog/herald/log"
	"github.com/heraldlog/herald/partition/partitionpb"
)

// appendRequests turns the records of an append command into log append
// requests, with the command's timestamp: everything in them comes from
// the replicated entry, so that every replica decides the same.
func appendRequests(cmd *partitionpb.AppendCommand) []heraldlog.AppendRequest {
	at := cmd.ProducedAtUnixNano
	reqs := make([]heraldlog.AppendRequest, len(cmd.Records))
	for j, rec := range cmd.Records {
		req := heraldlog.AppendRequest{
			Tenant:            rec.TenantId,
			TimestampUnixNano: at,
			Body:              rec.Event,
			ProducerID:        rec.ProducerId,
			ProducerSeq:       rec.ProducerSeq,
			ProducerEpoch:     rec.ProducerEpoch,
			EventID:           rec.EventId,
		}
		if rec.TtlMs > 0 {
			req.ExpireAtUnixNano = at + rec.TtlMs*int64(time.Millisecond)
		}
		if rec.DedupeWindowMs > 0 && rec.EventId != "" {
			req.DedupeUntilUnixNano = at + rec.DedupeWindowMs*int64(time.Millisecond)
		}
		reqs[j] = req
	}
	return reqs
}

// producerRequests walks the produce calls of an append command (the
// records from one with request_records set are one call) and decides the
// producer rules for each call as a whole before any of it is appended.
type producerRequests struct {
	records []*partitionpb.AppendRecord
	reqs    []heraldlog.AppendRequest
	// end is the index after the current call; refused is its refusal.
	end     int
	refused error
	// contract is the partition's contract version: a call checked
	// against an older contract is refused whole.
	contract uint64
}

// refusal returns the refusal of the call record j belongs to (nil: go
// on and append it), checking the call when j starts one. It must be
// called for every record in order, just before record j is appended, so
// that the check sees the records appended before. A storage failure is
// returned as fatal.
func (p *producerRequests) refusal(batch *heraldlog.Batch, j int) (refused, fatal error) {
	if j >= p.end {
		p.refused = nil
		p.end = j + 1
		switch n := int(p.records[j].RequestRecords); {
		case n == 0:
			// Written before call boundaries (and producer fencing):
			// decided by the rules it was first applied with.
			p.reqs[j].ProducerLegacy = true
		case n > 1:
			p.end = min(j+n, len(p.records))
		}
		if n := p.records[j].RequestRecords; n > 0 && p.records[j].ContractVersion < p.contract {
			p.refused = &ContractChangedError{Checked: p.records[j].ContractVersion, Current: p.contract}
			return p.refused, nil
		}
		err := batch.CheckProducerRequest(p.reqs[j:p.end])
		switch {
		case err == nil:
		case isDeterministicRefusal(err):
			p.refused = refusal(err)
		default:
			return nil, err
		}
	}
	return p.refused, nil
}

// isDeterministicRefusal reports a refusal decided by the entry and the
// replicated state alone: every replica refuses it the same way and
// nothing is written.
func isDeterministicRefusal(err error) bool {
	return errors.Is(err, heraldlog.ErrOutOfOrder) || errors.Is(err, heraldlog.ErrSequenceTooOld) ||
		errors.Is(err, heraldlog.ErrUnknownProducer) || errors.Is(err, heraldlog.ErrProducerFenced) ||
		errors.Is(err, heraldlog.ErrInvalidArgument) || errors.Is(err, heraldlog.ErrInvalidTenant) ||
		errors.Is(err, heraldlog.ErrRecordTooLarge) || errors.Is(err, ErrContractChanged)
}
