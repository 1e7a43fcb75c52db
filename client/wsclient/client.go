package wsclient

import (
	"context"
	"fmt"
	"iter"
	"math/rand/v2"
	"sync"
)

// Client reaches a Herald cluster over the nodes' WebSocket gateways. Its
// methods are safe for concurrent use. It holds one connection for
// publishes (made by Dial, made again on the next node when it fails);
// each Subscription has a connection of its own.
type Client struct {
	cfg Config

	mu struct {
		sync.Mutex
		pub    *publisher // nil until made, and after it failed
		node   int        // index into cfg.URLs of the next node to dial
		closed bool
	}
}

// Dial validates cfg and connects to the first node that answers, trying
// each of cfg.URLs once (from a random one, to spread clients). The
// connection carries Publish; Subscribe makes its own.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg.withDefaults()}
	c.mu.node = rand.IntN(len(cfg.URLs))
	if _, err := c.publisher(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Subscribe starts a subscription and waits until a node took it: errors
// no node would take it with (a missing topic, a start out of range) come
// back here. ctx bounds this first subscription only: each Next takes its
// own. Close the subscription when done.
func (c *Client) Subscribe(ctx context.Context, opts SubscribeOptions) (*Subscription, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	closed, node := c.mu.closed, c.mu.node
	c.mu.node++
	c.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	s := newSubscription(&c.cfg, opts, node)
	if err := s.connect(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// Events subscribes and yields the events until the loop breaks, ctx ends
// (yielding ctx's error) or the subscription ends with a final error
// (yielded last); the subscription is closed when the loop ends.
func (c *Client) Events(ctx context.Context, opts SubscribeOptions) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		s, err := c.Subscribe(ctx, opts)
		if err != nil {
			yield(Event{}, err)
			return
		}
		defer s.Close()
		for e, err := range s.All(ctx) {
			if !yield(e, err) {
				return
			}
		}
	}
}

// Close closes the publish connection and waits for its reader to exit;
// publishes waiting for an ack fail with an unknown outcome. Subscriptions
// are closed by their own Close.
func (c *Client) Close() error {
	c.mu.Lock()
	pub := c.mu.pub
	c.mu.pub, c.mu.closed = nil, true
	c.mu.Unlock()
	if pub != nil {
		pub.close()
	}
	return nil
}

// publisher returns the publish connection, dialing the next nodes in
// turn when there is none (each once).
func (c *Client) publisher(ctx context.Context) (*publisher, error) {
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if p := c.mu.pub; p != nil && !p.failed() {
		c.mu.Unlock()
		return p, nil
	}
	first := c.mu.node
	c.mu.Unlock()
	var errs []error
	for i := range len(c.cfg.URLs) {
		url := c.cfg.URLs[(first+i)%len(c.cfg.URLs)]
		conn, err := dial(ctx, &c.cfg, url)
		if err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		p := newPublisher(conn, url, &c.cfg)
		c.mu.Lock()
		c.mu.node = first + i + 1
		if c.mu.closed {
			c.mu.Unlock()
			p.close()
			return nil, ErrClosed
		}
		old := c.mu.pub
		if old != nil && !old.failed() {
			// Another Publish connected meanwhile: use its connection.
			c.mu.Unlock()
			p.close()
			return old, nil
		}
		c.mu.pub = p
		c.mu.Unlock()
		if old != nil {
			old.close()
		}
		return p, nil
	}
	return nil, fmt.Errorf("wsclient: no node answered: %w", joinErrors(errs))
}
