package jepsen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldpb"
)

// Subscriber limits and pacing.
const (
	// subscribeHeartbeatMs is the heartbeat a subscriber asks for; a
	// stream silent for subscribeStallTimeout (a paused node, a link
	// that swallows bytes) is closed and resumed elsewhere.
	subscribeHeartbeatMs  = 250
	subscribeStallTimeout = 2 * time.Second
	// subscribeMoveMin and subscribeMoveMax bound how long a subscriber
	// keeps a healthy stream before it moves to another node on its own,
	// so that resumes happen without faults too.
	subscribeMoveMin = 2 * time.Second
	subscribeMoveMax = 8 * time.Second
	// subscribeBackoffMin and subscribeBackoffMax bound the pause after a
	// failed stream before the next one (a killed node refuses at once).
	subscribeBackoffMin = 50 * time.Millisecond
	subscribeBackoffMax = 300 * time.Millisecond
	// subscribeEventsMax bounds the events one subscriber records; past it
	// the subscriber stops (SubscribeBound), which keeps the history
	// bounded whatever the run's length.
	subscribeEventsMax = 1 << 20
	// subscribeStreamsMax bounds the streams one subscriber opens.
	subscribeStreamsMax = 100_000
	// SubscribeCatchUpIdle: once the healed cluster has converged and
	// the subscribers know where each log ends, one that is short of the
	// end and receives nothing for this long is behind (a violation).
	SubscribeCatchUpIdle = 10 * time.Second
	// subscribeCatchUpMax bounds the whole wait for the subscribers to
	// reach the end (a subscriber with a credit window of one event
	// replays a volume run's log slowly); those still receiving then are
	// stopped without a verdict (SubscribeCatchingUp).
	subscribeCatchUpMax = 2 * time.Minute
)

// subscribeCreditWindows are the credit windows a subscriber may keep
// (events granted and not yet received): one event at a time, small
// batches, and more than a response carries.
var subscribeCreditWindows = []int{1, 7, 64, 1000}

// Modes of FSubscribeOpen, and of FSubscribe and FSubscribeEnd ops the
// subscriber ends itself.
const (
	SubscribeEarliest = "earliest" // StartPosition EARLIEST (no event received yet)
	SubscribeOffset   = "offset"   // the first stream, from a chosen offset
	SubscribeResume   = "resume"   // from the offset after the last event received
	// SubscribeHeartbeat marks a heartbeat recorded because its
	// next_offset was not where the subscriber stood.
	SubscribeHeartbeat = "heartbeat"
	SubscribeMoved     = "moved"   // the subscriber moved to another node on its own
	SubscribeStalled   = "stalled" // nothing received for subscribeStallTimeout
	SubscribeBound     = "bound"   // subscribeEventsMax reached: the subscriber stopped
	// SubscribeCaughtUp, SubscribeBehind and SubscribeCatchingUp end a
	// subscriber after the run: it reached the end of the converged log
	// (HighWatermark); it received nothing for SubscribeCatchUpIdle while
	// short of it (From: where it stood); or it was still receiving when
	// the harness stopped waiting.
	SubscribeCaughtUp   = "caught-up"
	SubscribeBehind     = "behind"
	SubscribeCatchingUp = "catching-up"
)

// catchUp tells the subscribers where each partition's log ends once the
// healed cluster has converged. set is called once, by Run; target by
// any subscriber, concurrently.
type catchUp struct {
	ready chan struct{}
	high  []uint64  // per partition; written before ready is closed
	at    time.Time // when set was called; written before ready is closed
}

func newCatchUp() *catchUp { return &catchUp{ready: make(chan struct{})} }

// set publishes the high watermark of every partition.
func (c *catchUp) set(high []uint64) {
	c.high, c.at = high, time.Now()
	close(c.ready)
}

// target returns the high watermark of partition p and when it was
// published, once set.
func (c *catchUp) target(p uint32) (high uint64, at time.Time, ok bool) {
	if c == nil {
		return 0, time.Time{}, false
	}
	select {
	case <-c.ready:
		return c.high[p], c.at, true
	default:
		return 0, time.Time{}, false
	}
}

// DefaultSubscribers returns the subscribers per partition Run starts in
// mode when the caller does not say: two in careful mode (one replaying
// from the earliest offset, one joining later at an acknowledged offset);
// none in volume mode, where every subscriber would record millions of
// events.
func DefaultSubscribers(mode string) int {
	if mode == ModeVolume {
		return 0
	}
	return 2
}

// subscribersMax bounds Options.Subscribers (per partition).
const subscribersMax = 16

// Subscriber holds one raw gRPC Subscribe stream of one partition at a
// time (heraldpb, no SDK: the point is to record exactly what each node
// served), grants credit as it receives, and whenever a stream ends —
// an error, a stall, or on its own every few seconds — opens the next on
// another node, resuming at the offset after the last event it received
// with the epoch it saw. It records every open, every response with
// events and every end (FSubscribeOpen, FSubscribe, FSubscribeEnd);
// checkSubscriptions judges them.
type Subscriber struct {
	Process int
	Nodes   []Node
	// TLS is the clients' TLS configuration (nil: plaintext).
	TLS       *tls.Config
	Topic     string
	Partition uint32
	// First is the index in Nodes of the first stream's node.
	First int
	// Earliest starts from StartPosition EARLIEST; otherwise, after
	// JoinAfter, from an offset drawn below the highest acknowledged one.
	Earliest  bool
	JoinAfter time.Duration
	Seed      uint64
	// catchUp, when set, ends the subscriber once it has received the
	// whole converged log (nil: it runs until ctx ends).
	catchUp *catchUp
}

var _ Reader = (*Subscriber)(nil)

// Name is "subscribe-p<partition>-<process>".
func (s *Subscriber) Name() string { return fmt.Sprintf("subscribe-p%d-%d", s.Partition, s.Process) }

// subscriberState is what a Subscriber knows between its streams; owned
// by Run's goroutine.
type subscriberState struct {
	started bool   // an event was received, or the start offset chosen
	pos     uint64 // the offset after the last event received (when started)
	epoch   uint64 // the partition epoch seen (0: none yet)
	events  int    // events received
	conn    int    // streams opened
	done    bool   // ended after the run: SubscribeCaughtUp or SubscribeBehind recorded
	// receivedAt is when the last events arrived.
	receivedAt time.Time
}

// afterRun ends the subscriber once the converged log's end is known:
// it records SubscribeCaughtUp when st has reached it, SubscribeBehind
// when it is short of it and has received nothing for
// SubscribeCatchUpIdle (since the end was published, at the earliest),
// and reports whether it did either. end is the stream's end op, or nil
// between streams.
func (s *Subscriber) afterRun(rec *Recorder, st *subscriberState, end *Op) bool {
	high, at, set := s.catchUp.target(s.Partition)
	if !set {
		return false
	}
	op := Op{Type: TypeInfo, F: FSubscribeEnd, Process: s.Process, Topic: opTopic(s.Topic), Partition: s.Partition, Conn: st.conn, From: st.pos}
	if end != nil {
		op = *end
		op.Type = TypeInfo
	}
	op.HighWatermark = high
	switch {
	case st.pos >= high && (st.started || high == 0):
		op.Mode = SubscribeCaughtUp
	case time.Since(latest(st.receivedAt, at)) > SubscribeCatchUpIdle:
		op.Mode = SubscribeBehind
	default:
		return false
	}
	st.done = true
	rec.Record(op)
	return true
}

// Run subscribes until ctx ends (then it returns nil), it has caught up
// with the converged log or fallen behind it (catchUp, afterRun) or the
// bound on recorded events is reached. When ctx ends after the converged
// log's end was published and before either, it records
// SubscribeCatchingUp.
func (s *Subscriber) Run(ctx context.Context, rec *Recorder) error {
	var st subscriberState
	defer func() {
		if high, _, set := s.catchUp.target(s.Partition); set && !st.done && st.events < subscribeEventsMax {
			rec.Record(Op{Type: TypeInfo, F: FSubscribeEnd, Mode: SubscribeCatchingUp, Process: s.Process, Topic: opTopic(s.Topic),
				Partition: s.Partition, Conn: st.conn, From: st.pos, HighWatermark: high})
		}
	}()
	rng := rand.New(rand.NewPCG(s.Seed, uint64(s.Process)<<8|uint64(s.Partition)))
	clients := make([]heraldpb.HeraldClient, len(s.Nodes))
	for i, n := range s.Nodes {
		conn, err := dialNode(n.GRPCAddr, s.TLS)
		if err != nil {
			return fmt.Errorf("jepsen: %s: %w", s.Name(), err)
		}
		defer conn.Close()
		clients[i] = heraldpb.NewHeraldClient(conn)
	}
	if !s.Earliest {
		if !sleepCtx(ctx, s.JoinAfter) {
			return nil
		}
		st.started = true
		if high, ok := rec.ackedHigh(opTopic(s.Topic), s.Partition); ok {
			st.pos = rng.Uint64N(high + 1)
		}
	}
	window := subscribeCreditWindows[rng.IntN(len(subscribeCreditWindows))]
	node := s.First % len(s.Nodes)
	for st.conn < subscribeStreamsMax {
		if ctx.Err() != nil || s.afterRun(rec, &st, nil) {
			return nil
		}
		failed := s.stream(ctx, rec, rng, clients[node], s.Nodes[node], &st, window)
		if st.done || st.events >= subscribeEventsMax {
			return nil
		}
		if len(s.Nodes) > 1 {
			node = (node + 1 + rng.IntN(len(s.Nodes)-1)) % len(s.Nodes) // any other node
		}
		if failed && !sleepCtx(ctx, subscribeBackoffMin+time.Duration(rng.Int64N(int64(subscribeBackoffMax-subscribeBackoffMin)))) {
			return nil
		}
	}
	return nil
}

// stream opens one stream on node and follows it until it ends; it
// reports whether it ended in an error (the caller backs off then).
func (s *Subscriber) stream(ctx context.Context, rec *Recorder, rng *rand.Rand, hc heraldpb.HeraldClient, node Node, st *subscriberState, window int) (failed bool) {
	st.conn++
	open := Op{Type: TypeInvoke, F: FSubscribeOpen, Process: s.Process, Topic: opTopic(s.Topic), Partition: s.Partition, Node: node.ID, Conn: st.conn, Epoch: st.epoch}
	start := &heraldpb.SubscribeStart{Topic: s.Topic, Partition: s.Partition, Epoch: st.epoch,
		CreditEvents: uint32(window), HeartbeatMs: subscribeHeartbeatMs}
	switch {
	case !st.started:
		open.Mode = SubscribeEarliest
		start.Start = &heraldpb.SubscribeStart_Position{Position: heraldpb.StartPosition_EARLIEST}
	case st.conn == 1:
		open.Mode, open.From = SubscribeOffset, st.pos
		start.Start = &heraldpb.SubscribeStart_Offset{Offset: st.pos}
	default:
		open.Mode, open.From = SubscribeResume, st.pos
		start.Start = &heraldpb.SubscribeStart_Offset{Offset: st.pos}
	}
	end := Op{F: FSubscribeEnd, Process: s.Process, Topic: open.Topic, Partition: s.Partition, Node: node.ID, Conn: st.conn, From: st.pos}

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// why says who cancelled sctx: the watchdog (stalled) or the move
	// timer (moved); either runs cancel, which ends the Recv below.
	var why atomic.Value
	stall := time.AfterFunc(subscribeStallTimeout, func() { why.CompareAndSwap(nil, SubscribeStalled); cancel() })
	defer stall.Stop()
	move := time.AfterFunc(subscribeMoveMin+time.Duration(rng.Int64N(int64(subscribeMoveMax-subscribeMoveMin))), func() { why.CompareAndSwap(nil, SubscribeMoved); cancel() })
	defer move.Stop()

	rec.Record(open)
	stream, err := hc.Subscribe(sctx)
	// sendEnded is set when a Send returned io.EOF: the server ended the
	// stream, and Recv gives what it sent before and then its status.
	sendEnded := false
	send := func(req *heraldpb.SubscribeRequest) error {
		if sendEnded {
			return nil
		}
		err := stream.Send(req)
		if errors.Is(err, io.EOF) {
			sendEnded = true
			return nil
		}
		return err
	}
	if err == nil {
		err = send(&heraldpb.SubscribeRequest{Msg: &heraldpb.SubscribeRequest_Start{Start: start}})
	}
	outstanding := window
	for err == nil {
		var resp *heraldpb.SubscribeResponse
		resp, err = stream.Recv()
		if err != nil {
			break
		}
		stall.Reset(subscribeStallTimeout)
		if len(resp.GetEvents()) == 0 && s.afterRun(rec, st, &end) {
			return false
		}
		if len(resp.GetEvents()) == 0 {
			if st.started && resp.GetNextOffset() != st.pos {
				rec.Record(Op{Type: TypeOK, F: FSubscribe, Mode: SubscribeHeartbeat, Process: s.Process, Topic: open.Topic, Partition: s.Partition,
					Node: node.ID, Conn: st.conn, Epoch: resp.GetEpoch(), Next: resp.GetNextOffset(),
					LowWatermark: resp.GetLowWatermark(), HighWatermark: resp.GetHighWatermark(), Credit: outstanding})
			}
			continue
		}
		events := resp.GetEvents()
		rec.Record(Op{Type: TypeOK, F: FSubscribe, Process: s.Process, Topic: open.Topic, Partition: resp.GetPartition(),
			Node: node.ID, Conn: st.conn, Epoch: resp.GetEpoch(), Next: resp.GetNextOffset(), Events: observeContent(events),
			LowWatermark: resp.GetLowWatermark(), HighWatermark: resp.GetHighWatermark(), Credit: outstanding})
		outstanding -= len(events)
		st.started, st.pos = true, events[len(events)-1].GetOffset()+1
		if st.epoch == 0 {
			st.epoch = resp.GetEpoch()
		}
		st.events += len(events)
		st.receivedAt = time.Now()
		end.From = st.pos
		if st.events >= subscribeEventsMax {
			why.CompareAndSwap(nil, SubscribeBound)
			break
		}
		// Give back what was received: the window stays full. The bytes
		// granted are the response's size, at least what its events
		// took of the byte credit.
		grant := len(events)
		outstanding += grant
		err = send(&heraldpb.SubscribeRequest{Msg: &heraldpb.SubscribeRequest_Credit{Credit: &heraldpb.SubscribeCredit{
			Events: uint32(grant), Bytes: uint32(proto.Size(resp))}}})
	}
	if ctx.Err() != nil {
		return false // the run ended: not a stream end to judge
	}
	if w, ok := why.Load().(string); ok {
		end.Type, end.Mode = TypeInfo, w
		rec.Record(end)
		return false
	}
	end.Type, end.Error = TypeFail, err.Error()
	end.Mode = errorReason(err)
	var oor *client.OffsetOutOfRangeError
	var changed *client.EpochChangedError
	switch e := client.FromStatus(err); {
	case errors.As(e, &oor):
		end.LowWatermark, end.HighWatermark = oor.Low, oor.High
		if oor.Requested < oor.Low {
			// Retention removed what the subscriber had not received
			// yet: it goes on from the low watermark (the checker
			// accepts the gap this answer explains).
			st.pos = oor.Low
		}
	case errors.As(e, &changed):
		end.Epoch, end.LowWatermark, end.HighWatermark = changed.CurrentEpoch, changed.Low, changed.High
		// A new incarnation: start over in it, from its low watermark.
		st.pos, st.epoch = end.LowWatermark, 0
	}
	rec.Record(end)
	return true
}

// latest returns the later of a and b.
func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// errorReason names err for FSubscribeEnd.Mode: its Herald reason, its
// gRPC code, or EOF.
func errorReason(err error) string {
	if errors.Is(err, io.EOF) {
		return "EOF" // the server ended the stream without an error
	}
	var herr *client.Error
	var oor *client.OffsetOutOfRangeError
	var nl *client.NotLeaderError
	switch e := client.FromStatus(err); {
	case errors.As(e, &oor):
		return heraldpb.ErrorReason_OFFSET_OUT_OF_RANGE.String()
	case errors.As(e, &nl):
		return heraldpb.ErrorReason_NOT_LEADER.String()
	case errors.As(e, &herr) && herr.Reason != heraldpb.ErrorReason_ERROR_REASON_UNSPECIFIED:
		return herr.Reason.String()
	}
	return status.Code(err).String()
}

// parseUint reads an error's metadata number; a missing or malformed one
// is 0.
func parseUint(s string) uint64 {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0
	}
	return n
}
