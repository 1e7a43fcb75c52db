package wsclient

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"time"
)

// Defaults of Config.
const (
	DefaultHandshakeTimeout   = 5 * time.Second
	DefaultBackoffMin         = 50 * time.Millisecond
	DefaultBackoffMax         = 2 * time.Second
	DefaultHeartbeat          = 5 * time.Second
	DefaultReadBytesMax       = 16 << 20
	DefaultPublishInFlightMax = 64
	DefaultMaxRetries         = 16
)

// heartbeatMin is the gateway's lower bound for heartbeat_ms.
const heartbeatMin = 100 * time.Millisecond

// Config says where the nodes are and how to reach them. Only URLs is
// required; zero fields take the defaults above.
type Config struct {
	// URLs are the WebSocket endpoints of the nodes, ws://host:port/v1/ws
	// (the HTTP port of each node). A subscription that loses its node
	// goes on with the next one in this list.
	URLs []string
	// TLS configures the TLS of wss:// URLs (its RootCAs: the cluster CA;
	// its Certificates: a client certificate, when the cluster asks for
	// one). Nil: the system roots, no client certificate. Not used for
	// ws:// URLs.
	TLS *tls.Config
	// Origin, when set, is sent as the handshake's Origin header; services
	// leave it empty (the gateway then accepts any caller).
	Origin string
	// Token, when set, is sent as the handshake's "Authorization: Bearer"
	// header, for a cluster that checks credentials (docs/protocol.md,
	// "Credentials"); the gateway closes the connection with 4001 when it
	// expires. Over ws:// (not wss://) anyone on the path can read it.
	Token string
	// HandshakeTimeout bounds one connection attempt: the TCP and
	// WebSocket handshakes, and the wait for the answer to subscribe.
	HandshakeTimeout time.Duration
	// BackoffMin and BackoffMax bound the wait between two failed
	// connection attempts: it doubles from BackoffMin up to BackoffMax,
	// each wait drawn at random in its upper half. The first attempt after
	// a connection that worked does not wait.
	BackoffMin, BackoffMax time.Duration
	// Heartbeat is the interval at which the gateway sends a heartbeat to
	// an idle subscription (at least 100ms). A subscription that hears
	// nothing for three heartbeats and a HandshakeTimeout takes its
	// connection for dead and moves on.
	Heartbeat time.Duration
	// ReadBytesMax bounds one frame read from a node (the buffer of one
	// frame of events).
	ReadBytesMax int64
	// MaxRetries bounds the connection attempts of a subscription that
	// fail in a row after the first one, as the gRPC SDK's
	// Config.MaxRetries does for its streams: past it the subscription ends
	// with the last attempt's error (ErrRetriesExhausted). With the default
	// backoff, 16 ride out about 25 seconds without a node. 0 means
	// DefaultMaxRetries; negative means no retry.
	MaxRetries int
	// PublishInFlightMax bounds the publishes waiting for their ack on the
	// client's connection; Publish blocks beyond it.
	PublishInFlightMax int
}

// withDefaults returns cfg with its zero fields set to the defaults.
func (cfg Config) withDefaults() Config {
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin = min(DefaultBackoffMin, max(cfg.BackoffMax, 0))
		if cfg.BackoffMin == 0 {
			cfg.BackoffMin = DefaultBackoffMin
		}
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = max(DefaultBackoffMax, cfg.BackoffMin)
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.ReadBytesMax == 0 {
		cfg.ReadBytesMax = DefaultReadBytesMax
	}
	switch {
	case cfg.MaxRetries == 0:
		cfg.MaxRetries = DefaultMaxRetries
	case cfg.MaxRetries < 0:
		cfg.MaxRetries = 0
	}
	if cfg.PublishInFlightMax == 0 {
		cfg.PublishInFlightMax = DefaultPublishInFlightMax
	}
	return cfg
}

// Validate reports every problem of cfg at once; zero fields are fine
// (they take defaults).
func (cfg Config) Validate() error {
	var errs []error
	if len(cfg.URLs) == 0 {
		errs = append(errs, errors.New("wsclient: no URLs"))
	}
	for _, raw := range cfg.URLs {
		u, err := url.Parse(raw)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("wsclient: URL %q: %w", raw, err))
		case u.Scheme != "ws" && u.Scheme != "wss":
			errs = append(errs, fmt.Errorf("wsclient: URL %q: scheme must be ws or wss", raw))
		case u.Host == "":
			errs = append(errs, fmt.Errorf("wsclient: URL %q has no host", raw))
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"HandshakeTimeout", cfg.HandshakeTimeout}, {"BackoffMin", cfg.BackoffMin}, {"BackoffMax", cfg.BackoffMax}, {"Heartbeat", cfg.Heartbeat}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("wsclient: %s %s is negative", d.name, d.v))
		}
	}
	if cfg.BackoffMin > 0 && cfg.BackoffMax > 0 && cfg.BackoffMin > cfg.BackoffMax {
		errs = append(errs, fmt.Errorf("wsclient: BackoffMin %s is above BackoffMax %s", cfg.BackoffMin, cfg.BackoffMax))
	}
	if cfg.Heartbeat > 0 && cfg.Heartbeat < heartbeatMin {
		errs = append(errs, fmt.Errorf("wsclient: Heartbeat %s is below %s", cfg.Heartbeat, heartbeatMin))
	}
	if cfg.ReadBytesMax < 0 {
		errs = append(errs, fmt.Errorf("wsclient: ReadBytesMax %d is negative", cfg.ReadBytesMax))
	}
	if cfg.PublishInFlightMax < 0 {
		errs = append(errs, fmt.Errorf("wsclient: PublishInFlightMax %d is negative", cfg.PublishInFlightMax))
	}
	return errors.Join(errs...)
}
