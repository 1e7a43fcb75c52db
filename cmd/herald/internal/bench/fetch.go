package bench

import (
	"context"
	"fmt"

	"github.com/heraldlog/herald/client"
)

// Fetch page bounds: the server's largest page (herald.proto caps
// max_events at 10,000 and max_bytes at 16 MiB).
const (
	fetchEventsMax = 10_000
	fetchBytesMax  = 16 << 20
)

// highWatermarks returns each partition's next offset to be assigned, as
// its leader knows it.
func highWatermarks(ctx context.Context, cl *client.Client, topic string, partitions int) ([]uint64, error) {
	marks := make([]uint64, partitions)
	for p := range marks {
		resp, err := cl.Fetch(ctx, &client.FetchRequest{
			Topic: topic, Partition: uint32(p), MaxEvents: 1,
			Start: &client.FetchFromPosition{Position: client.Latest},
		})
		if err != nil {
			return nil, fmt.Errorf("bench: high watermark of %s/%d: %w", topic, p, err)
		}
		marks[p] = resp.GetHighWatermark()
	}
	return marks, nil
}

// pageReader configures a partition read of the largest pages from start.
func pageReader(topic string, partition int, start client.Start) client.ReaderConfig {
	return client.ReaderConfig{
		Topic: topic, Partition: uint32(partition), Start: start,
		PageEventsMax: fetchEventsMax, PageBytesMax: fetchBytesMax,
	}
}
