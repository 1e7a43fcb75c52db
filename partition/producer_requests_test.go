package partition

import (
	"errors"
	"log/slog"
	"testing"

	hraft "github.com/hashicorp/raft"

	heraldlog "github.com/heraldlog/herald/log"
	"github.com/heraldlog/herald/partition/partitionpb"
)

// producerRecords returns one call's records of producer id (epoch 1),
// sequences first.., with request_records on the first.
func producerRecords(id string, first uint64, n int) []*partitionpb.AppendRecord {
	records := make([]*partitionpb.AppendRecord, n)
	for i := range records {
		records[i] = &partitionpb.AppendRecord{TenantId: "acme", Event: []byte(id), ProducerId: id, ProducerEpoch: 1, ProducerSeq: first + uint64(i)}
	}
	records[0].RequestRecords = uint32(n)
	return records
}

func applyRecords(t *testing.T, f *FSM, index uint64, records ...*partitionpb.AppendRecord) []Assigned {
	t.Helper()
	data, err := encodeAppend(&partitionpb.AppendCommand{ProducedAtUnixNano: 1000, Records: records})
	if err != nil {
		t.Fatal(err)
	}
	return f.ApplyBatch([]*hraft.Log{{Index: index, Term: 1, Type: hraft.LogCommand, Data: data}})[0].(*appendResult).assigned
}

// The FSM decides the producer rules for each call of an entry as a whole
// before appending any of it: a call with one refused producer appends
// nothing, and the other calls of the entry are not affected (issue 9,
// defect 6).
func TestFSMRefusesAProducerCallAsAWhole(t *testing.T) {
	_, log := openLog(t, 1)
	f := NewFSM(1, log, slog.Default(), nil)
	applyRecords(t, f, 1, producerRecords("victim", 1, 2)...)

	hijack := append(producerRecords("hijacker", 1, 1), producerRecords("victim", 2, 1)[0]) // a resend of the victim's 2 ...
	hijack[1].ProducerEpoch = 0                                                             // ... under a forged epoch
	hijack[0].RequestRecords = 2
	records := append(hijack, producerRecords("victim", 3, 2)...)
	assigned := applyRecords(t, f, 2, records...)
	for j := range 2 {
		if !errors.Is(assigned[j].Err, heraldlog.ErrProducerFenced) {
			t.Fatalf("hijacking call, record %d: %+v, want fenced", j, assigned[j])
		}
	}
	for j := 2; j < 4; j++ {
		if assigned[j].Err != nil || assigned[j].Duplicate || assigned[j].Offset != uint64(j) {
			t.Fatalf("victim's call, record %d: %+v, want appended at offset %d", j, assigned[j], j)
		}
	}
	if got := log.HighWatermark(); got != 4 {
		t.Fatalf("high watermark %d, want 4: nothing of the refused call appended", got)
	}
}

// An entry written before producer fencing (no request_records) is
// decided by the rules it was first applied with, so that replaying it
// after an upgrade gives the same log: an unknown producer may start at
// any sequence.
func TestFSMAppliesEntriesFromBeforeFencingByTheOldRules(t *testing.T) {
	_, log := openLog(t, 1)
	f := NewFSM(1, log, slog.Default(), nil)
	legacy := producerRecords("old", 500, 2)
	legacy[0].RequestRecords = 0
	legacy[0].ProducerEpoch, legacy[1].ProducerEpoch = 0, 0
	assigned := applyRecords(t, f, 1, legacy...)
	for j, a := range assigned {
		if a.Err != nil || a.Duplicate || a.Offset != uint64(j) {
			t.Fatalf("legacy record %d: %+v, want appended at %d", j, a, j)
		}
	}
	fenced := producerRecords("new", 500, 1)
	if a := applyRecords(t, f, 2, fenced...); !errors.Is(a[0].Err, heraldlog.ErrUnknownProducer) {
		t.Fatalf("a current entry from an unknown producer at 500: %+v, want ErrUnknownProducer", a[0])
	}
}
