package wsclient

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/heraldlog/herald/client/wire"
)

// dial opens one WebSocket connection to url within the handshake timeout.
func dial(ctx context.Context, cfg *Config, url string) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.HandshakeTimeout)
	defer cancel()
	d := websocket.Dialer{HandshakeTimeout: cfg.HandshakeTimeout, Proxy: http.ProxyFromEnvironment}
	if cfg.TLS != nil {
		d.TLSClientConfig = cfg.TLS.Clone()
	}
	h := http.Header{}
	if cfg.Origin != "" {
		h.Set("Origin", cfg.Origin)
	}
	if cfg.Token != "" {
		h.Set("Authorization", "Bearer "+cfg.Token)
	}
	conn, resp, err := d.DialContext(ctx, url, h)
	if err != nil && resp != nil && resp.StatusCode == http.StatusUnauthorized {
		// A refused token: final, as the same token would be refused
		// again (a new one needs a new Client).
		err = unauthenticated(resp)
	}
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("wsclient: dial %s: %w (HTTP %s)", url, err, resp.Status)
		}
		return nil, fmt.Errorf("wsclient: dial %s: %w", url, err)
	}
	conn.SetReadLimit(cfg.ReadBytesMax)
	return conn, nil
}

// unauthenticated reads a handshake's 401 answer (its JSON body names
// why, docs/protocol.md "Credentials") as the gRPC SDK's
// ErrUnauthenticated.
func unauthenticated(resp *http.Response) error {
	var body struct {
		What    string `json:"what"`
		Message string `json:"message"`
	}
	if resp.Body != nil {
		_ = json.NewDecoder(io.LimitReader(resp.Body, 4<<10)).Decode(&body)
	}
	if body.Message == "" {
		body.Message = resp.Status
	}
	return wire.Unauthenticated(body.What, strings.TrimPrefix(body.Message, "herald: unauthenticated: "))
}

// writeJSON writes v as one text frame within timeout. The caller is the
// connection's only writer (gorilla allows one).
func writeJSON(conn *websocket.Conn, timeout time.Duration, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_ = conn.SetWriteDeadline(time.Now().Add(timeout))
	return conn.WriteMessage(websocket.TextMessage, data)
}

// readFrame reads one message, giving up at deadline or when ctx ends
// (which breaks the connection: gorilla's reads do not recover from a
// timeout, so the caller then drops it).
func readFrame(ctx context.Context, conn *websocket.Conn, deadline time.Time) ([]byte, error) {
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetReadDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	for {
		typ, data, err := conn.ReadMessage()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		}
		if typ == websocket.TextMessage {
			return data, nil
		}
	}
}

// closeConn ends conn with a normal close frame, best effort.
func closeConn(conn *websocket.Conn) {
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""),
		time.Now().Add(100*time.Millisecond))
	_ = conn.Close()
}

// backoff is the wait before connection attempt failures+1 after
// failures failed ones: doubling from BackoffMin, at most BackoffMax,
// drawn in the upper half so that clients cut by one node's death do not
// come back in step.
func backoff(cfg *Config, failures int) time.Duration {
	if failures <= 0 {
		return 0
	}
	d := cfg.BackoffMin
	for i := 1; i < failures && d < cfg.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, cfg.BackoffMax)
	return d/2 + rand.N(d/2+1)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
