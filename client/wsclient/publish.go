package wsclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// Publish sends event to topic through a node's gateway, which forwards it
// to the partition's leader as a gRPC Produce does, and returns the ack.
//
// A failure before the frame left this process is retried on the next
// node. A connection lost after it left is an unknown outcome
// (wire.ErrUnknownOutcome): the event may be in the log. Resending it is
// safe with an EventID and the topic's dedupe window, or as an idempotent
// producer (ProducerID, ProducerSeq, ProducerEpoch). Errors the node
// answers with are the wire package's, as the gRPC SDK returns them.
func (c *Client) Publish(ctx context.Context, topic string, event *heraldpb.Event) (Ack, error) {
	m := &wire.WSClientMessage{Type: wire.WSTypePublish, Topic: topic, Tenant: event.GetTenantId(), Key: event.GetKey(),
		Headers: event.GetHeaders(), Payload: event.GetPayload(), EventID: event.GetEventId(),
		CausationID: event.GetCausationId(), CorrelationID: event.GetCorrelationId(), Traceparent: event.GetTraceparent(),
		ContentType: event.GetContentType(), Schema: event.GetSchema(), SchemaVersion: event.GetSchemaVersion(),
		TTLMs: event.GetTtlMs(), ProducerID: event.GetProducerId(), ProducerSeq: event.GetProducerSeq(),
		ProducerEpoch: event.GetProducerEpoch()}
	var errs []error
	for range len(c.cfg.URLs) {
		p, err := c.publisher(ctx)
		if err != nil {
			return Ack{}, err
		}
		ack, sent, err := p.publish(ctx, m)
		if err == nil || sent || ctx.Err() != nil {
			return ack, err
		}
		errs = append(errs, err) // not sent: the connection failed; the next one is dialed
	}
	return Ack{}, fmt.Errorf("wsclient: publish: %w", joinErrors(errs))
}

// publisher is a connection that carries publishes. Its reader goroutine
// owns reading (answering the node's pings, routing acks and errors to
// the waiting publishes by request id) and exits when the connection ends;
// close ends it and waits for that exit. Writes take writeMu.
type publisher struct {
	conn    *websocket.Conn
	url     string
	cfg     *Config
	slots   chan struct{} // one per publish in flight, PublishInFlightMax
	ids     atomic.Uint64
	done    chan struct{} // closed when the reader exits
	writeMu sync.Mutex

	mu struct {
		sync.Mutex
		waiting map[string]chan publishAnswer
		err     error // why the connection ended; set once
	}
}

type publishAnswer struct {
	ack *wire.WSAck
	err error
}

// publishSilenceMax is how long the publish connection may hear nothing,
// not even the node's ping (every 20s), before its reader takes it for
// dead: the gateway's own pong timeout.
const publishSilenceMax = 60 * time.Second

func newPublisher(conn *websocket.Conn, url string, cfg *Config) *publisher {
	p := &publisher{conn: conn, url: url, cfg: cfg, slots: make(chan struct{}, cfg.PublishInFlightMax), done: make(chan struct{})}
	p.mu.waiting = map[string]chan publishAnswer{}
	// A ping proves the node alive: extend the deadline, and answer as
	// gorilla's default handler does (WriteControl may run concurrently
	// with the writes of publish).
	conn.SetPingHandler(func(data string) error {
		_ = conn.SetReadDeadline(time.Now().Add(publishSilenceMax))
		err := conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
		if err == websocket.ErrCloseSent {
			return nil
		}
		return err
	})
	go p.read()
	return p
}

// read routes the answers until the connection fails.
func (p *publisher) read() {
	defer close(p.done)
	for {
		_ = p.conn.SetReadDeadline(time.Now().Add(publishSilenceMax))
		_, data, err := p.conn.ReadMessage()
		if err != nil {
			p.fail(err)
			return
		}
		var head struct {
			Type string `json:"type"`
			ID   string `json:"id"`
		}
		if json.Unmarshal(data, &head) != nil {
			continue
		}
		var a publishAnswer
		switch head.Type {
		case wire.WSTypeAck:
			var ack wire.WSAck
			if err := json.Unmarshal(data, &ack); err != nil {
				a.err = fmt.Errorf("%w: an ack that does not decode: %v", ErrProtocol, err)
			}
			a.ack = &ack
		case wire.WSTypeError:
			var f wire.WSError
			if err := json.Unmarshal(data, &f); err != nil {
				a.err = fmt.Errorf("%w: an error frame that does not decode: %v", ErrProtocol, err)
			} else {
				a.err = fmt.Errorf("wsclient: publish at %s: %w", p.url, errorOf(&f))
			}
		default:
			continue
		}
		p.mu.Lock()
		ch := p.mu.waiting[head.ID]
		delete(p.mu.waiting, head.ID)
		p.mu.Unlock()
		if ch != nil {
			ch <- a // buffered: never blocks
		}
	}
}

// fail records why the connection ended and fails every waiting publish
// with an unknown outcome: each was sent.
func (p *publisher) fail(err error) {
	p.mu.Lock()
	if p.mu.err == nil {
		p.mu.err = err
	}
	waiting := p.mu.waiting
	p.mu.waiting = map[string]chan publishAnswer{}
	p.mu.Unlock()
	for _, ch := range waiting {
		ch <- publishAnswer{err: wire.UnknownOutcome("wsclient: connection to %s lost before the ack: %v", p.url, err)}
	}
}

func (p *publisher) failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.err != nil
}

// close ends the connection and waits for the reader.
func (p *publisher) close() {
	p.writeMu.Lock()
	closeConn(p.conn)
	p.writeMu.Unlock()
	<-p.done
}

// publish sends m with a new request id and waits for the answer. sent
// says whether the frame may have left (false: nothing of it was written).
func (p *publisher) publish(ctx context.Context, m *wire.WSClientMessage) (Ack, bool, error) {
	select {
	case p.slots <- struct{}{}:
		defer func() { <-p.slots }()
	case <-ctx.Done():
		return Ack{}, false, ctx.Err()
	}
	id := "p" + strconv.FormatUint(p.ids.Add(1), 10)
	frame := *m
	frame.ID = id
	ch := make(chan publishAnswer, 1)
	p.mu.Lock()
	if err := p.mu.err; err != nil {
		p.mu.Unlock()
		return Ack{}, false, err
	}
	p.mu.waiting[id] = ch
	p.mu.Unlock()

	p.writeMu.Lock()
	err := writeJSON(p.conn, p.cfg.HandshakeTimeout, &frame)
	p.writeMu.Unlock()
	if err != nil {
		p.mu.Lock()
		delete(p.mu.waiting, id)
		p.mu.Unlock()
		// The node takes no partial frame: nothing was published. The
		// connection is done for; the reader then exits.
		p.fail(err)
		_ = p.conn.Close()
		return Ack{}, false, err
	}
	select {
	case a := <-ch:
		if a.err != nil {
			return Ack{}, true, a.err
		}
		return Ack{Partition: a.ack.Partition, Offset: a.ack.Offset, Sequence: a.ack.Sequence,
			EventID: a.ack.EventID, Duplicate: a.ack.Duplicate}, true, nil
	case <-ctx.Done():
		p.mu.Lock()
		delete(p.mu.waiting, id)
		p.mu.Unlock()
		return Ack{}, true, fmt.Errorf("%w: %w", wire.ErrUnknownOutcome, ctx.Err())
	}
}

// joinErrors is errors.Join that keeps a single error as it is.
func joinErrors(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}
