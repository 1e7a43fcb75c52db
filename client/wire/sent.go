package wire

import (
	"context"
	"sync/atomic"

	"google.golang.org/grpc/stats"
)

// A write whose outcome is ambiguous must not be resent blindly, but a
// write that never left this process is safe to send elsewhere.
// sentTracker tells the two apart: gRPC reports an OutPayload event once
// the request message has been handed to a transport, and an attempt that
// failed without one never reached a server.
//
// The tracker is installed on every connection of the SDK's pool and of a
// node's peer connections; an attempt opts in by putting a *sentFlag in its
// context (TrackSent).
type sentTracker struct{}

var _ stats.Handler = sentTracker{}

// sentFlag records that an attempt's request was handed to a transport.
type sentFlag struct{ atomic.Bool }

type sentFlagKey struct{}

// TagRPC implements stats.Handler.
func (sentTracker) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

// HandleRPC implements stats.Handler. It runs on the RPC's goroutine.
func (sentTracker) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if p, ok := s.(*stats.OutPayload); ok && p.IsClient() {
		if f, ok := ctx.Value(sentFlagKey{}).(*sentFlag); ok {
			f.Store(true)
		}
	}
}

// TagConn implements stats.Handler.
func (sentTracker) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

// HandleConn implements stats.Handler.
func (sentTracker) HandleConn(context.Context, stats.ConnStats) {}

// SentTracker returns the stats handler that lets TrackSent tell whether a
// request left this process. Install it on a connection with
// grpc.WithStatsHandler; the SDK does on every connection, nodes on the
// connections they forward writes over.
func SentTracker() stats.Handler { return sentTracker{} }

// TrackSent returns a context for one RPC on a connection with SentTracker
// installed, and a function that reports whether that RPC's request was
// handed to a transport. An RPC that failed with sent() == false never
// reached a server, so resending it elsewhere cannot duplicate it. sent may
// be called from any goroutine.
func TrackSent(ctx context.Context) (_ context.Context, sent func() bool) {
	f := new(sentFlag)
	return context.WithValue(ctx, sentFlagKey{}, f), f.Load
}
