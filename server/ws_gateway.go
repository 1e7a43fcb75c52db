package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// wsPath is where each node serves the gateway on its HTTP port.
const wsPath = "/v1/ws"

const (
	// wsCloseGrace is how long a closing connection waits for the
	// client's close frame (and, when the node stops, for a write in
	// progress) before dropping the socket.
	wsCloseGrace = time.Second
	// wsPublishTimeout bounds one publish, as a gRPC client's deadline
	// would.
	wsPublishTimeout = 30 * time.Second
	// wsFrameBytesMin is the smallest page a subscription reads for one
	// events frame, whatever the send queue's byte bound.
	wsFrameBytesMin = 16 << 10
)

// wsGateway serves the WebSocket protocol (docs/protocol.md, "WebSocket")
// at /v1/ws: JSON frames over one connection carrying many subscriptions
// (the engine of subscribe_core.go, with its own JSON tail per replica)
// and publishes (the gRPC Produce path, forwarding included).
//
// Each connection is served by a goroutine that reads its frames (started
// by the HTTP handler, which returns), a writer goroutine only while frames wait to be written (an
// idle connection has none; pings are queued by a timer), one goroutine
// per subscription and one per publish in flight (at most
// PublishesInflightMax), and, once the connection's context ends, one that
// closes it; the handler owns the others and returns after all of them
// have ended. Every one of them ends when the connection's context is
// cancelled: the client goes, the node stops (n.ctx), or the server closes
// it (slow consumer). Write buffers are pooled, held only while a frame is
// written.
type wsGateway struct {
	n        *Node
	cfg      WebSocketConfig
	upgrader websocket.Upgrader
	conns    atomic.Uint64 // connection ids, for the logs
	// hub serves the subscriptions that have caught up (ws_hub.go).
	hub wsHub
	// groupsClient reaches the cluster for group subscriptions
	// (ws_group.go).
	groupsClient wsGroupClient
}

func newWSGateway(n *Node) *wsGateway {
	cfg := n.cfg.WebSocket
	cfg.EnsureDefaults()
	g := &wsGateway{n: n, cfg: cfg}
	g.hub.n = n
	g.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   1 << 10,
		WriteBufferSize:  4 << 10,
		WriteBufferPool:  &sync.Pool{},
		// ServeHTTP checks the origin (originAllowed) before upgrading.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	return g
}

// originAllowed allows a request without an Origin header (not a
// browser), one from the node's own origin (same host and port as the
// request), and the configured origins ("*": any). Others are refused
// with 403 before the upgrade.
func (g *wsGateway) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	for _, o := range g.cfg.AllowedOrigins {
		if o == "*" || strings.EqualFold(strings.TrimSuffix(o, "/"), origin) {
			return true
		}
	}
	if u, err := url.Parse(origin); err == nil && strings.EqualFold(u.Host, r.Host) {
		return true
	}
	return false
}

func (g *wsGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := g.n
	select {
	case <-n.stop:
		n.metrics.wsRefused.WithLabelValues("stopping").Inc()
		http.Error(w, "node stopping", http.StatusServiceUnavailable)
		return
	default:
	}
	if !g.originAllowed(r) {
		n.metrics.wsRefused.WithLabelValues("origin").Inc()
		n.logger.Info("websocket: origin refused", "origin", r.Header.Get("Origin"), "remote", r.RemoteAddr)
		http.Error(w, "websocket: origin not allowed", http.StatusForbidden)
		return
	}
	creds, err := g.authenticate(r)
	if err != nil {
		g.refuseHandshake(w, r, err)
		return
	}
	// The node waits for the connection when it closes: added before the
	// upgrade, while http.Server.Shutdown still tracks the request.
	if !n.track() {
		n.metrics.wsRefused.WithLabelValues("stopping").Inc()
		http.Error(w, "node stopping", http.StatusServiceUnavailable)
		return
	}
	conn, err := g.upgrader.Upgrade(w, r, nil)
	if err != nil {
		n.wg.Done()
		n.metrics.wsRefused.WithLabelValues("handshake").Inc()
		return // the upgrader answered the request
	}
	if tc, ok := tcpConnOf(conn.NetConn()); ok && g.cfg.SocketSendBufferBytes > 0 {
		if err := tc.SetWriteBuffer(g.cfg.SocketSendBufferBytes); err != nil {
			n.logger.Warn("websocket: cannot set the socket send buffer", "err", err)
		}
	}
	// The connection is served by a goroutine of its own, so that this
	// handler returns: net/http then lets go of the request and of the
	// hijacked connection's 4 KiB read and write buffers, which a handler
	// blocked in serve would keep for the connection's life (about 10 KiB
	// of every idle connection).
	c := newWSConn(g, conn, r.RemoteAddr, creds)
	go func() {
		defer n.wg.Done()
		c.serve()
	}()
}

// wsCloseCause is why a connection ended: the close code (sent to the
// client when send is set; 1006 when the socket broke) and a reason.
type wsCloseCause struct {
	code   int
	reason string
	send   bool
}

func (e *wsCloseCause) Error() string {
	return fmt.Sprintf("websocket closed (%d): %s", e.code, e.reason)
}

// errWSUnsubscribed ends a subscription the client unsubscribed.
var errWSUnsubscribed = errors.New("server: unsubscribed")

// wsConn is one client connection.
type wsConn struct {
	g      *wsGateway
	n      *Node
	cfg    *WebSocketConfig
	conn   *websocket.Conn
	logger *slog.Logger
	opened time.Time

	// ctx ends with the connection; its cause is a *wsCloseCause.
	ctx       context.Context
	cancel    context.CancelCauseFunc
	closeOnce sync.Once

	queue *wsSendQueue
	// writers counts the writer goroutine (at most one runs).
	writers sync.WaitGroup
	// ping queues the next ping frame.
	ping *time.Timer
	// closed is closed once the socket has been closed.
	closed chan struct{}
	// publishes is a semaphore of the publishes in flight.
	publishes chan struct{}
	// wg counts the subscription and publish goroutines.
	wg sync.WaitGroup
	// readerDone is closed when the handler stops reading.
	readerDone chan struct{}

	// groups are the connection's group subscriptions (ws_group.go).
	groups *wsConnGroups
	// creds are the connection's token and claims (ws_auth.go), checked
	// at the handshake; zero when the node does not check credentials.
	creds wsCredentials

	mu struct {
		sync.Mutex
		subs map[string]*wsSub
		// readPausedUntil is when the reader may read again after a
		// throttled publish (pauseReading).
		readPausedUntil time.Time
	}
}

// wsSub is a running subscription of a connection.
type wsSub struct {
	cancel context.CancelCauseFunc
	// release gives back its place among the node's streams.
	release func()
}

func newWSConn(g *wsGateway, conn *websocket.Conn, remote string, creds wsCredentials) *wsConn {
	c := &wsConn{g: g, n: g.n, cfg: &g.cfg, conn: conn, opened: time.Now(), creds: creds,
		queue:      newWSSendQueue(g.cfg.SendQueueFramesMax, g.cfg.SendQueueBytesMax, g.n.metrics.wsQueueBytes),
		publishes:  make(chan struct{}, g.cfg.PublishesInflightMax),
		readerDone: make(chan struct{}), closed: make(chan struct{}), groups: newWSConnGroups()}
	c.logger = g.n.logger.With("ws_conn", g.conns.Add(1), "remote", remote)
	// The connection's calls into the node's handlers carry its token
	// as an incoming call's would (forwarded calls carry it on).
	c.ctx, c.cancel = context.WithCancelCause(withToken(context.Background(), creds.token))
	c.mu.subs = make(map[string]*wsSub)
	return c
}

// serve runs the connection until it ends, then waits for everything it
// started.
func (c *wsConn) serve() {
	m := c.n.metrics
	m.wsConnections.Inc()
	c.logger.Info("websocket: open")
	// The node stopping closes the connection at once, whatever its
	// goroutines are blocked on (n.ctx is cancelled with n.stop).
	stopWatch := context.AfterFunc(c.n.ctx, func() {
		c.closeWith(&wsCloseCause{code: websocket.CloseGoingAway, reason: "node stopping", send: true})
	})
	defer stopWatch()
	stopExpiry := c.watchExpiry()
	defer stopExpiry()
	// Once the context ends, the socket is closed (after the close frame,
	// when the cause sends one), which also ends a blocked reader.
	stopClose := context.AfterFunc(c.ctx, c.closeSocket)
	c.ping = time.AfterFunc(c.cfg.PingInterval, c.queuePing)
	c.readLoop()
	close(c.readerDone)
	c.closeWith(&wsCloseCause{code: websocket.CloseAbnormalClosure, reason: "reader stopped"})
	c.ping.Stop()
	c.wg.Wait()
	c.queue.close() // no writer starts after this
	c.writers.Wait()
	if !stopClose() {
		<-c.closed // closeSocket ran, or runs
	}
	cause := c.closeCause()
	m.wsConnections.Dec()
	m.wsCloses.WithLabelValues(strconv.Itoa(cause.code)).Inc()
	c.logger.Info("websocket: close", "code", cause.code, "reason", cause.reason,
		"duration", time.Since(c.opened).Round(time.Millisecond))
}

// closeWith ends the connection with cause (the first cause wins).
func (c *wsConn) closeWith(cause *wsCloseCause) {
	c.closeOnce.Do(func() {
		c.cancel(cause)
		switch cause.code {
		case wsCloseSlowConsumer:
			// What is queued will not be sent: free it now. The writer
			// may still be blocked on the socket; the close frame follows
			// if the client reads again within the write timeout.
			dropped := c.queue.close()
			c.n.metrics.wsQueueDrops.WithLabelValues("slow_consumer").Add(float64(dropped + 1))
		case websocket.CloseGoingAway:
			// The node is stopping: a write blocked on a client that does
			// not read must not hold it up past the grace.
			_ = c.conn.NetConn().SetWriteDeadline(time.Now().Add(wsCloseGrace))
		}
	})
}

func (c *wsConn) closeCause() *wsCloseCause {
	var cause *wsCloseCause
	if errors.As(context.Cause(c.ctx), &cause) {
		return cause
	}
	return &wsCloseCause{code: websocket.CloseAbnormalClosure, reason: "unknown"}
}

// readLoop reads and handles the client's frames until the connection
// ends.
func (c *wsConn) readLoop() {
	c.conn.SetReadLimit(c.cfg.ReadBytesMax)
	extend := func() { _ = c.conn.SetReadDeadline(time.Now().Add(c.cfg.PongTimeout)) }
	extend()
	c.conn.SetPongHandler(func(string) error { extend(); return nil })
	for {
		if !c.waitReadPause() {
			return
		}
		typ, data, err := c.conn.ReadMessage()
		if err != nil {
			c.closeWith(wsReadCloseCause(err, c.cfg.ReadBytesMax, c.cfg.PongTimeout))
			if errors.Is(err, websocket.ErrReadLimit) {
				// Read the rest of the oversized frame (a bounded amount,
				// for the grace at most): closing a socket with unread data
				// resets it, and the client would lose the 1009 close
				// frame the library has sent.
				_ = c.conn.NetConn().SetReadDeadline(time.Now().Add(wsCloseGrace))
				_, _ = io.CopyN(io.Discard, c.conn.NetConn(), 2*c.cfg.ReadBytesMax)
			}
			return
		}
		// A throttle that arrived while the read was blocked holds the
		// frame just read (one frame) until the pause is over; the next
		// ones wait in the socket.
		if !c.waitReadPause() {
			return
		}
		extend()
		if typ != websocket.TextMessage {
			c.n.metrics.wsMessages.WithLabelValues("in", "invalid").Inc()
			c.sendError(wsErrorOf("", "frame", wire.InvalidArgument("frame", "binary frames are not accepted: send JSON in text frames")))
			continue
		}
		c.handle(data)
		if c.ctx.Err() != nil {
			return
		}
	}
}

// pauseReading stops the reader for d (at most PublishPauseMax) from
// now, unless it is paused longer already: a publish was throttled, and
// the client's next frames wait in its socket (TCP backpressure) rather
// than in the gateway. Any goroutine may call it.
func (c *wsConn) pauseReading(d time.Duration) {
	d = min(d, c.cfg.PublishPauseMax)
	if d <= 0 {
		return
	}
	until := time.Now().Add(d)
	c.mu.Lock()
	defer c.mu.Unlock()
	if until.After(c.mu.readPausedUntil) {
		c.mu.readPausedUntil = until
	}
}

// waitReadPause waits, before the reader's next read, for the pause a
// throttled publish asked for; false when the connection ended meanwhile.
// The pings go on (their timer queues them), and the read deadline is
// moved past the pause: the client's pongs wait unread with its frames.
func (c *wsConn) waitReadPause() bool {
	for {
		c.mu.Lock()
		d := time.Until(c.mu.readPausedUntil)
		c.mu.Unlock()
		if d <= 0 {
			return true
		}
		c.n.metrics.wsPublishPauses.Inc()
		timer := time.NewTimer(d)
		select {
		case <-timer.C:
		case <-c.ctx.Done():
			timer.Stop()
			return false
		}
		_ = c.conn.SetReadDeadline(time.Now().Add(c.cfg.PongTimeout))
	}
}

// publishThrottle is how long a publish's answer asks the client to wait:
// the ack's throttle_ms, or a THROTTLED or QUEUE_FULL refusal's retry
// hint; 0 when it does not.
func publishThrottle(resp *heraldpb.ProduceResponse, err error) time.Duration {
	if err != nil {
		if !errors.Is(err, wire.ErrThrottled) {
			return 0
		}
		d, _, _ := wire.RetryAfter(err)
		return d
	}
	return time.Duration(resp.GetThrottleMs()) * time.Millisecond
}

// wsReadCloseCause classifies the error that ended the reader.
func wsReadCloseCause(err error, readBytesMax int64, pongTimeout time.Duration) *wsCloseCause {
	var ce *websocket.CloseError
	var ne net.Error
	switch {
	case errors.Is(err, websocket.ErrReadLimit):
		// The library has sent 1009 already.
		return &wsCloseCause{code: websocket.CloseMessageTooBig, reason: fmt.Sprintf("frame above the read limit of %d bytes", readBytesMax)}
	case errors.As(err, &ce):
		// The library has answered the client's close frame.
		return &wsCloseCause{code: ce.Code, reason: "client closed: " + ce.Text}
	case errors.As(err, &ne) && ne.Timeout():
		return &wsCloseCause{code: websocket.CloseAbnormalClosure, reason: fmt.Sprintf("nothing from the client for %s", pongTimeout)}
	}
	return &wsCloseCause{code: websocket.CloseAbnormalClosure, reason: "read: " + err.Error()}
}

// wsTypePing is the queue's name for a ping control frame (in the
// metrics of frames out).
const wsTypePing = "ping"

// startWriter starts the writer goroutine (the queue calls it when a
// frame arrives and none runs).
func (c *wsConn) startWriter() {
	c.writers.Add(1)
	go func() {
		defer c.writers.Done()
		c.writeLoop()
	}()
}

// writeLoop writes queued frames until the queue is empty or the
// connection ends.
func (c *wsConn) writeLoop() {
	for c.ctx.Err() == nil {
		f, ok := c.queue.take()
		if !ok {
			return
		}
		var err error
		if f.typ == wsTypePing {
			err = c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.cfg.WriteTimeout))
		} else {
			_ = c.conn.SetWriteDeadline(time.Now().Add(c.cfg.WriteTimeout))
			err = c.conn.WriteMessage(websocket.TextMessage, f.data)
		}
		if err != nil {
			c.closeWith(&wsCloseCause{code: websocket.CloseAbnormalClosure, reason: "write " + f.typ + ": " + err.Error()})
			return
		}
		c.n.metrics.wsMessages.WithLabelValues("out", f.typ).Inc()
	}
}

// queuePing queues a ping (unless the queue is full: the client has
// frames to read, and the pong timeout is the reader's) and arms the next.
func (c *wsConn) queuePing() {
	if c.ctx.Err() != nil {
		return
	}
	_ = c.queue.put(c.ctx, wsFrame{typ: wsTypePing}, 0, c.startWriter)
	c.ping.Reset(c.cfg.PingInterval)
}

// closeSocket closes the connection once its context has ended: the close
// frame first when the cause sends one, the client's answer awaited for a
// moment, then the socket. WriteControl may run beside a writer: it waits
// for a write in progress, for the write timeout at most (a slow consumer
// that reads again gets its close frame after what it was being sent) or,
// when the node stops, for the grace.
func (c *wsConn) closeSocket() {
	defer close(c.closed)
	if cause := c.closeCause(); cause.send {
		wait := c.cfg.WriteTimeout
		if cause.code == websocket.CloseGoingAway {
			wait = wsCloseGrace
		}
		_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(cause.code, cause.reason),
			time.Now().Add(wait))
		timer := time.NewTimer(wsCloseGrace)
		select {
		case <-c.readerDone:
		case <-timer.C:
		}
		timer.Stop()
	}
	_ = c.conn.Close()
}

// send queues one frame of type typ, waiting for room as long as the
// client reads; a client that does not is closed as a slow consumer.
func (c *wsConn) send(ctx context.Context, typ string, data []byte) error {
	err := c.queue.put(ctx, wsFrame{typ: typ, data: data}, c.cfg.SlowConsumerTimeout, c.startWriter)
	if errors.Is(err, errWSSlowConsumer) {
		c.closeWith(&wsCloseCause{code: wsCloseSlowConsumer, send: true,
			reason: fmt.Sprintf("slow consumer: send queue full for %s", c.cfg.SlowConsumerTimeout)})
	}
	return err
}

func (c *wsConn) sendJSON(ctx context.Context, typ string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.send(ctx, typ, data)
}

func (c *wsConn) sendError(e *wsError) {
	_ = c.sendJSON(c.ctx, wsTypeError, e)
}

// handle acts on one client frame. A bad frame is answered with an error
// frame; the connection and its other subscriptions go on.
func (c *wsConn) handle(data []byte) {
	msg, err := wsParse(data)
	typ := msg.Type
	switch typ {
	case wsTypeSubscribe, wsTypeUnsubscribe, wsTypePublish,
		wsTypeGroupSubscribe, wsTypeGroupUnsubscribe, wsTypeGroupAck, wsTypeGroupNack:
	default:
		typ = "invalid"
	}
	c.n.metrics.wsMessages.WithLabelValues("in", typ).Inc()
	if err != nil {
		forType := typ
		if forType == "invalid" {
			forType = "frame"
		}
		c.sendError(wsErrorOf(msg.ID, forType, err))
		return
	}
	switch msg.Type {
	case wsTypeSubscribe:
		c.subscribe(msg)
	case wsTypeUnsubscribe:
		c.unsubscribe(msg)
	case wsTypePublish:
		c.publish(msg)
	case wsTypeGroupSubscribe:
		c.groupSubscribe(msg)
	case wsTypeGroupUnsubscribe:
		c.groupUnsubscribe(msg)
	case wsTypeGroupAck:
		c.groupSettle(msg, false)
	case wsTypeGroupNack:
		c.groupSettle(msg, true)
	}
}

func (c *wsConn) subscribe(msg *wsClientMessage) {
	start, err := msg.subscribeStart()
	if err != nil {
		c.sendError(wsErrorOf(msg.ID, wsTypeSubscribe, err))
		return
	}
	if !c.authorize("Subscribe", &heraldpb.SubscribeRequest{Msg: &heraldpb.SubscribeRequest_Start{Start: start}}, msg.ID, wsTypeSubscribe) {
		return
	}
	c.mu.Lock()
	if _, dup := c.mu.subs[msg.ID]; dup {
		c.mu.Unlock()
		c.sendError(wsErrorOf(msg.ID, wsTypeSubscribe, wire.InvalidArgument("id",
			"subscription id %q is in use on this connection (the running subscription goes on)", msg.ID)))
		return
	}
	if len(c.mu.subs) >= c.cfg.SubscriptionsMax {
		c.mu.Unlock()
		c.sendError(wsErrorOf(msg.ID, wsTypeSubscribe, wire.InvalidArgument("id",
			"a connection holds at most %d subscriptions", c.cfg.SubscriptionsMax)))
		return
	}
	// The connection bounds its own subscriptions (above); the node
	// counts them among its streams.
	release, err := c.n.limits.acquireStream(c.ctx)
	if err != nil {
		c.mu.Unlock()
		c.sendError(wsErrorOf(msg.ID, wsTypeSubscribe, err))
		return
	}
	ctx, cancel := context.WithCancelCause(c.ctx)
	sub := &wsSub{cancel: cancel, release: release}
	c.mu.subs[msg.ID] = sub
	c.mu.Unlock()
	c.wg.Add(1)
	go c.runSubscription(ctx, msg.ID, sub, start)
}

// runSubscription opens one subscription and serves it (followSubscription);
// it says why when it cannot open it.
func (c *wsConn) runSubscription(ctx context.Context, id string, sub *wsSub, start *heraldpb.SubscribeStart) {
	s, err := c.n.openSubscription(ctx, start, tailJSON)
	if err != nil {
		c.endSubscription(ctx, &wsHubSub{c: c, ctx: ctx, id: id, sub: sub}, err)
		return
	}
	hs := &wsHubSub{c: c, ctx: ctx, id: id, sub: sub, s: s,
		pos:   &wsPosition{ID: id, Topic: s.topic, Partition: s.index, Epoch: s.epoch},
		plain: s.filter.tenant == "" && !s.filter.hasKey && len(s.filter.headers) == 0 && s.filter.minSeq == 0}
	subscribed := *hs.pos
	subscribed.Type, subscribed.NextOffset = wsTypeSubscribed, s.next
	subscribed.HighWatermark, subscribed.LowWatermark = s.r.HighWatermark(), s.r.LowWatermark()
	if err := c.sendJSON(ctx, wsTypeSubscribed, &subscribed); err != nil {
		c.endSubscription(ctx, hs, err)
		return
	}
	c.followSubscription(hs)
}

// followSubscription serves hs in this goroutine until it ends, or until
// it has caught up and the gateway's hub takes it (ws_hub.go); the hub
// calls it too, in a new goroutine, for a subscription it gives back.
func (c *wsConn) followSubscription(hs *wsHubSub) {
	sink := &wsSubscribeSink{c: c, ctx: hs.ctx, s: hs.s, id: hs.id}
	err := hs.s.run(hs.ctx, sink, func() bool { return c.g.hub.attach(hs) })
	if errors.Is(err, errHandedOver) {
		return
	}
	c.endSubscription(hs.ctx, hs, err)
}

// endSubscription closes an ended subscription and says why: unsubscribed,
// or an error frame (unless the connection is closing).
func (c *wsConn) endSubscription(ctx context.Context, hs *wsHubSub, err error) {
	defer c.wg.Done()
	defer hs.sub.release()
	defer hs.sub.cancel(nil)
	pos := hs.pos
	if hs.s != nil {
		pos.NextOffset = hs.s.next
		pos.HighWatermark, pos.LowWatermark = hs.s.r.HighWatermark(), hs.s.r.LowWatermark()
		hs.s.close()
	}
	id, sub := hs.id, hs.sub
	// Free the id before saying so, so that the client may reuse it at once.
	c.mu.Lock()
	if c.mu.subs[id] == sub {
		delete(c.mu.subs, id)
	}
	c.mu.Unlock()
	switch {
	case c.ctx.Err() != nil:
		// The connection is closing; its close code says why.
	case errors.Is(context.Cause(ctx), errWSUnsubscribed):
		// Unsubscribed, whatever the engine made of its cancelled context.
		if pos == nil {
			pos = &wsPosition{ID: id}
		}
		pos.Type = wsTypeUnsubscribed
		_ = c.sendJSON(c.ctx, wsTypeUnsubscribed, pos)
	default:
		e := wsErrorOf(id, wsTypeSubscribe, err)
		e.Ended = true
		c.sendError(e)
	}
}

func (c *wsConn) unsubscribe(msg *wsClientMessage) {
	c.mu.Lock()
	sub, ok := c.mu.subs[msg.ID]
	c.mu.Unlock()
	if !ok {
		c.sendError(wsErrorOf(msg.ID, wsTypeUnsubscribe, wire.InvalidArgument("id", "no subscription %q on this connection", msg.ID)))
		return
	}
	sub.cancel(errWSUnsubscribed)
}

// publish produces one event through the node's Produce (validation,
// contract, forwarding to the partition leader, admission and the node
// limits) and answers ack or error. The reader waits while
// PublishesInflightMax publishes are unanswered, and pauses (up to
// PublishPauseMax) when a publish is throttled: an ack with throttle_ms,
// or a THROTTLED or QUEUE_FULL refusal with retry_after_ms.
func (c *wsConn) publish(msg *wsClientMessage) {
	if msg.Topic == "" {
		c.sendError(wsErrorOf(msg.ID, wsTypePublish, wire.InvalidArgument("topic", "publish needs a topic")))
		return
	}
	req := &heraldpb.ProduceRequest{Topic: msg.Topic, Events: []*heraldpb.Event{msg.event()}}
	if !c.authorize("Produce", req, msg.ID, wsTypePublish) {
		return
	}
	select {
	case c.publishes <- struct{}{}:
	case <-c.ctx.Done():
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer func() { <-c.publishes }()
		ctx, cancel := context.WithTimeout(c.ctx, wsPublishTimeout)
		defer cancel()
		resp, err := (&heraldService{node: c.n}).Produce(ctx, req)
		// Pause before answering: a client that waits for the answer to
		// send again finds the reader paused already.
		c.pauseReading(publishThrottle(resp, err))
		if err != nil {
			if c.ctx.Err() == nil {
				c.sendError(wsErrorOf(msg.ID, wsTypePublish, err))
			}
			return
		}
		r := resp.GetResults()[0]
		_ = c.sendJSON(c.ctx, wsTypeAck, &wsAck{Type: wsTypeAck, ID: msg.ID, Partition: r.GetPartition(),
			Offset: r.GetOffset(), Sequence: r.GetSequence(), EventID: r.GetEventId(), Duplicate: r.GetDuplicate(),
			ThrottleMs: resp.GetThrottleMs()})
	}()
}

// wsSubscribeSink sends a subscription's batches as events frames into
// the connection's send queue: the queue is its credit (a subscription
// waits while the queue is full, and the connection is closed if the
// client stops reading).
type wsSubscribeSink struct {
	c   *wsConn
	ctx context.Context
	s   *subscription
	id  string
}

func (w *wsSubscribeSink) room() (int64, int64) {
	return subscribeBatchEventsMax, int64(max(w.c.cfg.SendQueueBytesMax/4, wsFrameBytesMin))
}

func (w *wsSubscribeSink) wake() <-chan struct{} { return nil }

func (w *wsSubscribeSink) sendEvents(b *subscribeBatch) error {
	return w.c.send(w.ctx, wsTypeEvents, wsEventsFrame(w.id, w.s.index, w.s.epoch, b))
}

// sendHeartbeat drops the heartbeat when the queue is full: the client
// has frames to read already.
func (w *wsSubscribeSink) sendHeartbeat(next, high, low uint64) error {
	data, err := json.Marshal(&wsPosition{Type: wsTypeHeartbeat, ID: w.id, Partition: w.s.index, Epoch: w.s.epoch,
		NextOffset: next, HighWatermark: high, LowWatermark: low})
	if err != nil {
		return err
	}
	err = w.c.queue.put(w.ctx, wsFrame{typ: wsTypeHeartbeat, data: data}, 0, w.c.startWriter)
	if errors.Is(err, errWSQueueFull) {
		w.c.n.metrics.wsQueueDrops.WithLabelValues("heartbeat").Inc()
		return nil
	}
	return err
}
