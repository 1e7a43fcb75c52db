package partition

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/heraldlog/herald/partition/partitionpb"
)

// benchAppendCommand is an append entry of 1,000 records of 128 bytes over
// 16 tenants, every record from an idempotent producer with an event id:
// what `herald bench produce` proposes.
func benchAppendCommand() *partitionpb.AppendCommand {
	body := bytes.Repeat([]byte("x"), 128)
	cmd := &partitionpb.AppendCommand{ProducedAtUnixNano: 1_700_000_000_000_000_000}
	for i := range 1000 {
		cmd.Records = append(cmd.Records, &partitionpb.AppendRecord{
			TenantId: fmt.Sprintf("tenant-%d", i%16), Event: body,
			ProducerId: "producer-1", ProducerSeq: uint64(i + 1), ProducerEpoch: 3,
			EventId: fmt.Sprintf("event-%d", i), DedupeWindowMs: 120_000,
			RequestRecords: 1, ContractVersion: 42,
		})
	}
	return cmd
}

// BenchmarkDecodeAppend decodes one append entry of 1,000 records, as every
// replica does for every entry it applies.
func BenchmarkDecodeAppend(b *testing.B) {
	data, err := encodeAppend(benchAppendCommand())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeCommand(data); err != nil {
			b.Fatal(err)
		}
	}
}
