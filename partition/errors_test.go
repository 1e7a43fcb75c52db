package partition

import (
	"errors"
	"log/slog"
	"testing"

	heraldlog "github.com/heraldlog/herald/log"
)

// The log's refusals and read errors become the partition's: each matches
// its partition sentinel, still matches the log's (the node may see
// through), and keeps the log's message word for word (the wire answers
// carry it).
func TestLogErrorsBecomeThePartitions(t *testing.T) {
	tests := []struct {
		name    string
		logErr  error
		convert func(error) error
		want    error
	}{
		{"out of order", &heraldlog.OutOfOrderError{Tenant: "acme", ProducerID: "p1", Expected: 3, Got: 5}, refusal, ErrOutOfOrder},
		{"fenced", &heraldlog.ProducerFencedError{Tenant: "acme", ProducerID: "p1", Epoch: 1, CurrentEpoch: 2}, refusal, ErrProducerFenced},
		{"too old", errors.Join(heraldlog.ErrSequenceTooOld), refusal, ErrSequenceTooOld},
		{"unknown producer", errors.Join(heraldlog.ErrUnknownProducer), refusal, ErrUnknownProducer},
		{"invalid tenant", errors.Join(heraldlog.ErrInvalidTenant), refusal, ErrInvalidRecord},
		{"record too large", errors.Join(heraldlog.ErrRecordTooLarge), refusal, ErrInvalidRecord},
		{"invalid argument", errors.Join(heraldlog.ErrInvalidArgument), refusal, ErrInvalidRecord},
		{"out of range", &heraldlog.OffsetOutOfRangeError{Partition: 7, Requested: 9, Low: 2, High: 5}, readError, ErrOffsetOutOfRange},
		{"corruption", &heraldlog.CorruptionError{Partition: 7, Offset: 3, Reason: "checksum"}, readError, ErrCorruption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.convert(tt.logErr)
			if !errors.Is(err, tt.want) {
				t.Fatalf("%v does not match %v", err, tt.want)
			}
			if !errors.Is(err, tt.logErr) {
				t.Fatalf("%v does not wrap the log's %v", err, tt.logErr)
			}
			if err.Error() != tt.logErr.Error() {
				t.Fatalf("message %q, want the log's %q", err.Error(), tt.logErr.Error())
			}
		})
	}

	var ooo *OutOfOrderError
	if err := refusal(&heraldlog.OutOfOrderError{ProducerID: "p1", Expected: 3, Got: 5}); !errors.As(err, &ooo) || ooo.ProducerID != "p1" || ooo.Expected != 3 || ooo.Got != 5 {
		t.Fatalf("out of order: %#v", err)
	}
	var fenced *ProducerFencedError
	if err := refusal(&heraldlog.ProducerFencedError{ProducerID: "p1", Epoch: 1, CurrentEpoch: 2}); !errors.As(err, &fenced) || fenced.Epoch != 1 || fenced.CurrentEpoch != 2 {
		t.Fatalf("fenced: %#v", err)
	}
	var oor *OffsetOutOfRangeError
	if err := readError(&heraldlog.OffsetOutOfRangeError{Requested: 9, Low: 2, High: 5}); !errors.As(err, &oor) || oor.Requested != 9 || oor.Low != 2 || oor.High != 5 {
		t.Fatalf("out of range: %#v", err)
	}
	var ce *CorruptionError
	if err := readError(&heraldlog.CorruptionError{Partition: 7, Offset: 3, Reason: "checksum"}); !errors.As(err, &ce) || ce.Partition != 7 || ce.Offset != 3 || ce.Reason != "checksum" {
		t.Fatalf("corruption: %#v", err)
	}
	if err := readError(nil); err != nil {
		t.Fatalf("readError(nil) = %v", err)
	}
	contract := &ContractChangedError{Checked: 1, Current: 2}
	if err := refusal(contract); err != contract {
		t.Fatalf("a partition refusal changed: %v", err)
	}
}

// The FSM hands a producer's refusal to the caller as the partition's
// error, with the log's details.
func TestFSMRefusalsArePartitionErrors(t *testing.T) {
	_, log := openLog(t, 1)
	f := NewFSM(1, log, slog.Default(), nil)
	applyRecords(t, f, 1, producerRecords("p", 1, 2)...)
	assigned := applyRecords(t, f, 2, producerRecords("p", 5, 1)...)
	var ooo *OutOfOrderError
	if !errors.As(assigned[0].Err, &ooo) || ooo.ProducerID != "p" || ooo.Expected != 3 || ooo.Got != 5 {
		t.Fatalf("a gap: %+v, want *OutOfOrderError expecting 3, got 5", assigned[0])
	}
}
