package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/wsclient"
)

// wsURLsFromStatus returns the WebSocket URL of every reachable node, from
// the HTTP addresses the nodes report in the cluster status. A node that
// listens on every interface (":7801", "0.0.0.0:7801") is reached at the
// host of its gRPC address.
func wsURLsFromStatus(st *client.ClusterStatusResponse, scheme string) ([]string, error) {
	var urls []string
	for _, n := range st.GetNodes() {
		addr := n.GetHttpAddr()
		if !n.GetReachable() || addr == "" {
			continue
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			continue
		}
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			if gh, _, err := net.SplitHostPort(n.GetGrpcAddr()); err == nil {
				host = gh
			}
		}
		urls = append(urls, scheme+"://"+net.JoinHostPort(host, port)+"/v1/ws")
	}
	if len(urls) == 0 {
		return nil, fmt.Errorf("no node reports an HTTP address in the cluster status (nodes older than this version?): give --ws-url ws://host:http-port/v1/ws,...")
	}
	return urls, nil
}

// wsSubscribeOptions translates consume's start into a subscription of
// partition, filtered to tenant when set. fromText is the --from flag,
// already checked by parseFrom (it gives the time of a time start).
func wsSubscribeOptions(topic string, partition uint32, tenant string, from client.Start, fromText string) (wsclient.SubscribeOptions, error) {
	o := wsclient.SubscribeOptions{Topic: topic, Partition: partition, TenantID: tenant}
	if n, ok := from.Offset(); ok {
		o.Start, o.Offset = wsclient.StartOffset, n
		return o, nil
	}
	if n, ok := from.Sequence(); ok {
		o.Start, o.Sequence = wsclient.StartSequence, n
		return o, nil
	}
	switch from {
	case client.FromEarliest():
		o.Start = wsclient.StartEarliest
	case client.FromLatest():
		o.Start = wsclient.StartLatest
	default:
		at, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(fromText, "time:"))
		if err != nil {
			return o, usagef("--from %q: %v", fromText, err)
		}
		o.Start, o.Time = wsclient.StartTime, at
	}
	return o, nil
}

// consumeWS prints the events of a WebSocket subscription as consume's
// JSON lines, following the log (the subscription does) until limit
// events (0: no limit) or ctx ends (Ctrl-C: nil). When its node goes, the
// subscription resumes on the next one by itself; each node it reads from
// is named on stderr.
func consumeWS(ctx context.Context, cfg wsclient.Config, opts wsclient.SubscribeOptions, limit int, defaultTTLMs int64, out *jsonWriter, stderr io.Writer) error {
	c, err := wsclient.Dial(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	s, err := c.Subscribe(ctx, opts)
	if err != nil {
		return err
	}
	defer s.Close()
	// announce names the node read from when it changed; next is the
	// offset it was subscribed at (or, after a move, the first it sent).
	lastURL := ""
	announce := func(next uint64) {
		if u := s.URL(); u != lastURL && u != "" {
			_, epoch, _ := s.Position()
			fmt.Fprintf(stderr, "consume: reading %s/%d from %s at offset %d (epoch %d)\n", opts.Topic, opts.Partition, u, next, epoch)
			lastURL = u
		}
	}
	next, _, _ := s.Position()
	announce(next)
	printed := 0
	for {
		e, err := s.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		announce(e.Offset)
		if err := out.write(renderEvent(e.Partition, wsEventAsEvent(&e), defaultTTLMs)); err != nil {
			return err
		}
		printed++
		if limit > 0 && printed >= limit {
			return nil
		}
	}
}

// wsEventAsEvent gives the fields consume prints of e in the SDK's event.
func wsEventAsEvent(e *wsclient.Event) *client.Event {
	ev := &client.Event{EventId: e.EventID, TenantId: e.TenantID, Partition: e.Partition, Offset: e.Offset, Sequence: e.Sequence,
		Key: e.Key, Headers: e.Headers, Payload: e.Payload, CausationId: e.CausationID, TtlMs: e.TTLMs}
	if !e.Time.IsZero() {
		ev.ProducedAtUnixNano = e.Time.UnixNano()
	}
	return ev
}
