package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/heraldlog/herald/client/heraldpb"
)

// Client is a connection to a Herald cluster: a metadata cache that routes
// each request to the node that can serve it, one gRPC connection per node,
// and retries with backoff where they are safe.
//
// A Client is safe for concurrent use by many goroutines. Close it when
// done; it starts no goroutine of its own (gRPC's connection goroutines end
// with Close).
type Client struct {
	cfg     Config
	log     *slog.Logger
	backoff backoff
	pool    *pool
	meta    *metadataCache
	// pacer holds the partitions' pauses (throttle_ms, retry-after).
	pacer *pacer
	// pending counts the bytes of unanswered produce calls.
	pending *pending
}

// New validates cfg, connects to the cluster and loads its metadata from
// the first of cfg.Servers that answers, giving each DialTimeout. When none
// answers it returns an *UnreachableError (matching ErrUnavailable) naming
// the addresses tried. A server that answers NO_LEADER (the controller is
// electing) counts as an answer: the metadata is then loaded on first use.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	c := &Client{
		cfg:     cfg,
		log:     cfg.Logger,
		backoff: newBackoff(cfg.BackoffMin, cfg.BackoffMax),
		pool:    newPool(cfg),
		meta:    newMetadataCache(cfg.Servers),
		pacer:   newPacer(cfg.Logger),
		pending: newPending(cfg.MaxPendingBytes, cfg.Logger),
	}
	unreachable := &UnreachableError{}
	for _, addr := range cfg.Servers {
		err := c.bootstrap(ctx, addr)
		if err == nil {
			return c, nil
		}
		if !isUnreachable(err) {
			_ = c.pool.close()
			return nil, err
		}
		unreachable.Servers = append(unreachable.Servers, addr)
		unreachable.Errs = append(unreachable.Errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	_ = c.pool.close()
	return nil, unreachable
}

// bootstrap loads the metadata from addr in one attempt bounded by
// DialTimeout.
func (c *Client) bootstrap(ctx context.Context, addr string) error {
	hc, err := c.pool.client(addr)
	if err != nil {
		return err
	}
	dialCtx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	resp, err := hc.Metadata(dialCtx, &heraldpb.MetadataRequest{})
	switch err = FromStatus(err); {
	case err == nil:
		c.meta.update(resp, nil)
		return nil
	case errors.Is(err, ErrNoLeader):
		c.log.DebugContext(ctx, "herald: metadata deferred", "addr", addr, "err", err)
		return nil
	case isUnreachable(err):
		return err
	default:
		return fmt.Errorf("client: metadata from %s: %w", addr, err)
	}
}

// isUnreachable reports whether err says that no server answered.
func isUnreachable(err error) bool {
	if errorReason(err) != heraldpb.ErrorReason_ERROR_REASON_UNSPECIFIED {
		return false
	}
	return errors.Is(err, ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// Close closes every connection. Calls in flight fail; later calls return
// ErrClosed. Close is idempotent.
func (c *Client) Close() error {
	return c.pool.close()
}

// Metadata asks the cluster for the nodes, the controller leader and the
// given topics (all topics when none is given), and refreshes the cache
// with the answer. It retries transient failures.
func (c *Client) Metadata(ctx context.Context, topics ...string) (*MetadataResponse, error) {
	req := &heraldpb.MetadataRequest{Topics: topics}
	resp, err := invoke(ctx, c, call{op: "metadata"}, heraldpb.HeraldClient.Metadata, req)
	if err != nil {
		return nil, err
	}
	c.meta.update(resp, topics)
	return resp, nil
}

// refresh reloads the metadata of topic (all topics when "") in one
// attempt, best effort: a failure leaves the cache as it was, and the
// caller's retry loop goes on.
func (c *Client) refresh(ctx context.Context, topic string) {
	var topics []string
	if topic != "" {
		topics = []string{topic}
	}
	_, err := c.attempt(ctx, c.meta.nextServer(""), func(ctx context.Context, hc heraldpb.HeraldClient) error {
		resp, err := hc.Metadata(ctx, &heraldpb.MetadataRequest{Topics: topics})
		if err == nil {
			c.meta.update(resp, topics)
		}
		return err
	})
	if err != nil {
		c.log.DebugContext(ctx, "herald: metadata refresh failed", "topic", topic, "err", err)
	}
}

// shape returns the topic's partition count and ordering, from the cache
// or else from the cluster; a topic the cluster does not list is
// TopicNotFound.
func (c *Client) shape(ctx context.Context, topic string) (topicShape, error) {
	if s, ok := c.meta.shape(topic); ok {
		return s, nil
	}
	if _, err := c.Metadata(ctx, topic); err != nil {
		return topicShape{}, err
	}
	if s, ok := c.meta.shape(topic); ok {
		return s, nil
	}
	return topicShape{}, TopicNotFound(topic)
}

// PendingBytes returns the encoded bytes of the events in this Client's
// produce calls (Produce and every Producer's Send) not yet answered:
// waiting for a lane, for a partition's pause, for a retry or for their
// reply. A call's bytes count from when it is admitted under
// Config.MaxPendingBytes (a call still waiting for room is not counted)
// until each of its partitions' groups is answered.
func (c *Client) PendingBytes() int64 { return c.pending.load() }
