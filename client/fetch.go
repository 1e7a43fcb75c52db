package client

import (
	"context"
	"fmt"

	"github.com/heraldlog/herald/client/heraldpb"
)

// Fetch reads one page of a partition: from an offset, a tenant sequence
// (with TenantId) or a position, optionally only one tenant's events. Use
// the response's NextOffset or NextSequence to continue.
//
// A read from Latest goes to the partition's leader, which alone knows the
// newest committed offset; other reads go to the cached leader too when it
// is known, and to any node otherwise (any replica serves what it has
// applied). Reads are safe to repeat, so transient failures are retried
// with backoff on another node, at most Config.MaxRetries times and while
// ctx lasts. An offset the partition no longer (or not yet) holds gives an
// *OffsetOutOfRangeError.
//
// Fetch is safe for concurrent use; req is not modified.
func (c *Client) Fetch(ctx context.Context, req *FetchRequest) (*FetchResponse, error) {
	if req.GetTopic() == "" {
		return nil, InvalidArgument("topic", "a topic name is required")
	}
	if _, ok := req.GetStart().(*FetchFromSequence); ok && req.GetTenantId() == "" {
		return nil, InvalidArgument("tenant_id", "a read from a tenant sequence needs the tenant id")
	}
	if _, known := c.meta.partitions(req.GetTopic()); !known {
		// Learn the leaders if we can; the server has the last word on
		// whether the topic exists.
		c.refresh(ctx, req.GetTopic())
	}
	resp, err := invoke(ctx, c, call{
		op:    fmt.Sprintf("fetch from %s/%d", req.GetTopic(), req.GetPartition()),
		topic: req.GetTopic(), partition: req.GetPartition(), bound: true,
	}, heraldpb.HeraldClient.Fetch, req)
	if err != nil {
		return nil, err
	}
	return resp, nil
}
