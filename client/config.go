package client

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
)

// Defaults for the zero fields of Config.
const (
	DefaultDialTimeout    = 5 * time.Second
	DefaultRequestTimeout = 10 * time.Second
	DefaultMaxRetries     = 16
	DefaultBackoffMin     = 20 * time.Millisecond
	DefaultBackoffMax     = 2 * time.Second
	// DefaultMaxThrottleRetries bounds the resends of one request refused
	// by backpressure (ErrThrottled); each waits at least the refusal's
	// retry-after.
	DefaultMaxThrottleRetries = 100
)

// maxRetriesMax bounds Config.MaxRetries: past it a caller wants a context
// deadline, not a retry count.
const maxRetriesMax = 1000

// Config configures a Client. Zero fields take the defaults above; only
// Servers is required. A Config is read once by New and not retained.
type Config struct {
	// Servers are seed addresses ("host:port"); New asks them, in order,
	// for the cluster's metadata, which then names every node.
	Servers []string
	// DialTimeout bounds establishing a connection, and each seed's answer
	// in New. Default 5s.
	DialTimeout time.Duration
	// RequestTimeout bounds each attempt of a request (retries get a fresh
	// one); the caller's context bounds the whole call. Default 10s.
	RequestTimeout time.Duration
	// MaxRetries bounds the retries after the first attempt. 0 means the
	// default (16); a negative value disables retries.
	MaxRetries int
	// BackoffMin and BackoffMax bound the delay before a retry: exponential
	// from BackoffMin, capped at BackoffMax, with full jitter. Defaults 20ms
	// and 2s.
	BackoffMin, BackoffMax time.Duration
	// Backpressure says whether produce calls wait when the cluster asks
	// them to slow down (BackpressureBlock, the default) or fail at once
	// with ErrThrottled (BackpressureFailFast); BackpressureIgnore is for
	// tools that play a producer ignoring the hints. See Backpressure.
	Backpressure Backpressure
	// MaxThrottleRetries bounds the resends of one request after
	// backpressure refusals (THROTTLED, QUEUE_FULL), apart from
	// MaxRetries: each waits the refusal's retry-after plus jitter, and
	// nothing was written by the refused attempts. 0 means the default
	// (100); a negative value disables them (the refusal is returned).
	MaxThrottleRetries int
	// MaxPendingBytes bounds the encoded bytes of the events in produce
	// calls not yet answered (PendingBytes): a call that would pass it
	// waits for room (BackpressureBlock) or fails with ErrThrottled
	// (BackpressureFailFast), unless nothing is pending, so that one call
	// larger than the bound still goes. 0 means no bound.
	MaxPendingBytes int64
	// Logger receives retries at DEBUG. Nil means slog.Default().
	Logger *slog.Logger
	// TLS, when set, makes every connection TLS with this configuration
	// (its RootCAs: the cluster CA; its Certificates: a client certificate,
	// when the cluster asks for one). Nil: plaintext. The WebSocket client
	// uses it for wss.
	TLS *tls.Config
	// Token is the signed credential sent with every request (gRPC
	// metadata "authorization: Bearer <token>"; the WebSocket client sends
	// it when it connects), for a cluster that checks them
	// (docs/security.md). Empty: none sent. It is sent over plaintext
	// connections too (a development cluster without TLS), where anyone
	// on the path can read it and use it until it expires: set TLS
	// wherever the network is not trusted.
	Token string
	// DialOptions are appended after the SDK's own (transport credentials
	// from TLS, or plaintext; message size limits, connect backoff), so
	// they override them.
	DialOptions []grpc.DialOption
}

// Validate reports every problem with the configuration at once. It
// accepts zero fields, which New replaces with defaults.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Servers) == 0 {
		errs = append(errs, errors.New("client: at least one server address is required"))
	}
	for _, addr := range c.Servers {
		// An empty host means the local host, as for net.Dial.
		if _, port, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("client: server %q: %w", addr, err))
		} else if port == "" {
			errs = append(errs, fmt.Errorf("client: server %q: missing port", addr))
		}
	}
	if c.DialTimeout < 0 {
		errs = append(errs, fmt.Errorf("client: dial timeout %s is negative", c.DialTimeout))
	}
	if c.RequestTimeout < 0 {
		errs = append(errs, fmt.Errorf("client: request timeout %s is negative", c.RequestTimeout))
	}
	if c.MaxRetries > maxRetriesMax {
		errs = append(errs, fmt.Errorf("client: max retries %d is over %d; bound the call with a context deadline instead", c.MaxRetries, maxRetriesMax))
	}
	if c.MaxThrottleRetries > maxRetriesMax {
		errs = append(errs, fmt.Errorf("client: max throttle retries %d is over %d; bound the call with a context deadline instead", c.MaxThrottleRetries, maxRetriesMax))
	}
	if c.Backpressure != BackpressureBlock && c.Backpressure != BackpressureFailFast && c.Backpressure != BackpressureIgnore {
		errs = append(errs, fmt.Errorf("client: unknown backpressure mode %s", c.Backpressure))
	}
	if c.MaxPendingBytes < 0 {
		errs = append(errs, fmt.Errorf("client: max pending bytes %d is negative", c.MaxPendingBytes))
	}
	if c.BackoffMin < 0 {
		errs = append(errs, fmt.Errorf("client: backoff min %s is negative", c.BackoffMin))
	}
	if c.BackoffMax < 0 {
		errs = append(errs, fmt.Errorf("client: backoff max %s is negative", c.BackoffMax))
	}
	if minimum, maximum := orDefault(c.BackoffMin, DefaultBackoffMin), orDefault(c.BackoffMax, DefaultBackoffMax); c.BackoffMin >= 0 && c.BackoffMax >= 0 && minimum > maximum {
		errs = append(errs, fmt.Errorf("client: backoff min %s is above backoff max %s", minimum, maximum))
	}
	return errors.Join(errs...)
}

// withDefaults returns a copy of c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	c.Servers = append([]string(nil), c.Servers...)
	c.DialTimeout = orDefault(c.DialTimeout, DefaultDialTimeout)
	c.RequestTimeout = orDefault(c.RequestTimeout, DefaultRequestTimeout)
	c.BackoffMin = orDefault(c.BackoffMin, DefaultBackoffMin)
	c.BackoffMax = orDefault(c.BackoffMax, DefaultBackoffMax)
	switch {
	case c.MaxRetries == 0:
		c.MaxRetries = DefaultMaxRetries
	case c.MaxRetries < 0:
		c.MaxRetries = 0
	}
	switch {
	case c.MaxThrottleRetries == 0:
		c.MaxThrottleRetries = DefaultMaxThrottleRetries
	case c.MaxThrottleRetries < 0:
		c.MaxThrottleRetries = 0
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.DialOptions = append([]grpc.DialOption(nil), c.DialOptions...)
	return c
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}
