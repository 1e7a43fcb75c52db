package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/heraldlog/herald/client"
)

// Client-verb defaults.
const (
	defaultServer  = "127.0.0.1:7701"
	serverEnv      = "HERALD_SERVER"
	defaultTimeout = 10 * time.Second
	// retriesMax bounds --retries; past it, a caller wants a deadline.
	retriesMax = 100
)

// clientOptions are the flags every client verb takes.
type clientOptions struct {
	servers string
	timeout time.Duration
	retries int
}

// register adds --server and --timeout to flags; --server defaults to
// $HERALD_SERVER when set.
func (o *clientOptions) register(flags *pflag.FlagSet, env environment) {
	def := defaultServer
	if v := env.getenv(serverEnv); v != "" {
		def = v
	}
	flags.StringVar(&o.servers, "server", def, "comma-separated node addresses (host:port); env "+serverEnv)
	flags.DurationVar(&o.timeout, "timeout", defaultTimeout, "timeout of each request to the cluster")
	flags.IntVar(&o.retries, "retries", client.DefaultMaxRetries, "retries of a failed request, with backoff (0: none)")
}

// serverList returns the --server addresses.
func (o *clientOptions) serverList() ([]string, error) {
	var servers []string
	for _, s := range strings.Split(o.servers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			servers = append(servers, s)
		}
	}
	if len(servers) == 0 {
		return nil, usagef("--server: at least one address is required")
	}
	if o.timeout <= 0 {
		return nil, usagef("--timeout must be positive, got %s", o.timeout)
	}
	if o.retries < 0 || o.retries > retriesMax {
		return nil, usagef("--retries %d: want 0 to %d", o.retries, retriesMax)
	}
	return servers, nil
}

// connect opens a client; when no node answers the error is an
// *client.UnreachableError, which run prints as "no node answered at ...".
// SDK logs (retries, at DEBUG) are dropped; warnings go to stderr.
func (o *clientOptions) connect(ctx context.Context, stderr io.Writer) (*client.Client, error) {
	servers, err := o.serverList()
	if err != nil {
		return nil, err
	}
	retries := o.retries
	if retries == 0 {
		retries = -1 // the SDK's "none"; its 0 means the default
	}
	return client.New(ctx, client.Config{
		Servers:        servers,
		DialTimeout:    o.timeout,
		RequestTimeout: o.timeout,
		MaxRetries:     retries,
		Logger:         slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
}
