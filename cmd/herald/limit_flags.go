package main

import (
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"github.com/heraldlog/herald/server"
)

// nodeLimitFlags are the node-limit flags of `herald serve`
// (server.NodeLimits, docs/operations.md "Node limits"), which `herald dev`
// takes too and passes on to its nodes.
type nodeLimitFlags struct {
	limits          server.NodeLimits
	publishPauseMax time.Duration
}

// register adds the flags to f.
func (l *nodeLimitFlags) register(f *pflag.FlagSet) {
	f.Int64Var(&l.limits.ProduceBytesMax, "limit-produce-bytes", 0, "bytes of produce requests (WebSocket publishes included) a node serves at once; more are refused THROTTLED node_limit produce_bytes (0: the default, 256 MiB)")
	f.Int64Var(&l.limits.FetchBytesMax, "limit-fetch-bytes", 0, "bytes fetches (their max_bytes) and subscription sends read at once on a node; a fetch beyond is refused THROTTLED node_limit fetch_bytes (0: the default, 256 MiB)")
	f.IntVar(&l.limits.LongPollsMax, "limit-long-polls", 0, "fetches with max_wait_ms served at once by a node (0: the default, 4096)")
	f.IntVar(&l.limits.LongPollsPerConnectionMax, "limit-long-polls-per-conn", 0, "fetches with max_wait_ms served at once for one client connection (0: the default, 256)")
	f.IntVar(&l.limits.StreamsMax, "limit-streams", 0, "Subscribe and GroupConsume streams and WebSocket subscriptions served at once by a node (0: the default, 4096)")
	f.IntVar(&l.limits.StreamsPerConnectionMax, "limit-streams-per-conn", 0, "Subscribe and GroupConsume streams of one client connection (0: the default, 256)")
	f.DurationVar(&l.limits.LimitWait, "limit-wait", 0, "how long a produce or fetch waits for room under --limit-produce-bytes or --limit-fetch-bytes before it is refused (0: the default, 100ms)")
	f.DurationVar(&l.limits.RetryAfter, "limit-retry-after", 0, "retry hint (retry_after_ms) of a refusal at a node limit (0: the default, 200ms)")
	f.IntVar(&l.limits.GRPCConnsPerAddrMax, "limit-conns-per-addr", 0, "concurrent gRPC connections from one remote IP address; more are closed as soon as accepted (0: the default, 1024)")
	f.IntVar(&l.limits.HTTPConnsPerAddrMax, "limit-ws-conns-per-addr", 0, "concurrent connections from one remote IP address to the HTTP listener (WebSocket, metrics, health); more are closed as soon as accepted (0: the default, 4096)")
	f.DurationVar(&l.publishPauseMax, "ws-publish-pause-max", 0, "longest pause of a WebSocket connection's reader after a throttled publish (0: the default, 5s)")
}

// apply sets the flags' values in cfg.
func (l *nodeLimitFlags) apply(cfg *server.Config) {
	cfg.Limits = l.limits
	cfg.WebSocket.PublishPauseMax = l.publishPauseMax
}

// serveArgs returns the `serve` flags for the values set (not zero).
func (l *nodeLimitFlags) serveArgs() []string {
	var args []string
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"limit-produce-bytes", l.limits.ProduceBytesMax}, {"limit-fetch-bytes", l.limits.FetchBytesMax},
		{"limit-long-polls", int64(l.limits.LongPollsMax)}, {"limit-long-polls-per-conn", int64(l.limits.LongPollsPerConnectionMax)},
		{"limit-streams", int64(l.limits.StreamsMax)}, {"limit-streams-per-conn", int64(l.limits.StreamsPerConnectionMax)},
		{"limit-conns-per-addr", int64(l.limits.GRPCConnsPerAddrMax)}, {"limit-ws-conns-per-addr", int64(l.limits.HTTPConnsPerAddrMax)},
	} {
		if f.v != 0 {
			args = append(args, "--"+f.name+"="+strconv.FormatInt(f.v, 10))
		}
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{
		{"limit-wait", l.limits.LimitWait}, {"limit-retry-after", l.limits.RetryAfter}, {"ws-publish-pause-max", l.publishPauseMax},
	} {
		if f.v != 0 {
			args = append(args, "--"+f.name+"="+f.v.String())
		}
	}
	return args
}
