package raft

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	hraft "github.com/hashicorp/raft"
	"google.golang.org/grpc"

	"github.com/heraldlog/herald/raft/raftpb"
)

var (
	_ hraft.AppendPipeline = (*pipeline)(nil)
	_ hraft.AppendFuture   = (*appendFuture)(nil)
)

// pipeline carries one group's appends to one peer over one bidirectional
// stream. Requests go out in call order; the server answers each in the order
// received, so the n-th response belongs to the n-th request.
//
// At most MuxOptions.PipelineInFlightMax appends are unanswered: AppendEntries
// waits for a slot (hashicorp/raft's back-pressure), at most RPCTimeout. Each
// append must be answered within RPCTimeout of its start, or the stream is
// cancelled. The first error breaks the pipeline for good: the failing append
// and every later one complete with an error (their responses stay zero, so
// Raft, which reads only Response().Success, falls back to plain
// AppendEntries) and new appends are refused.
//
// Goroutines: the receiver, owned by the pipeline, exits on Close.
type pipeline struct {
	transport *Transport
	target    hraft.ServerAddress
	stream    grpc.BidiStreamingClient[raftpb.AppendEntriesRequest, raftpb.AppendEntriesResponse]
	cancel    context.CancelFunc // cancels the stream

	// inFlight holds the sent (or being sent) appends awaiting a response,
	// in send order; its capacity is the in-flight bound.
	inFlight chan *appendFuture
	// doneCh delivers completed appends, in order, to Raft.
	doneCh chan hraft.AppendFuture

	shutdownCh   chan struct{} // closed by Close
	receiverDone chan struct{} // closed when the receiver exits
	closeOnce    sync.Once

	// broken is the first error of the stream; once set, AppendEntries fails.
	broken atomic.Pointer[error]

	// sendMu makes "take a slot in inFlight, then Send" one step, so the
	// order on the wire is the order in inFlight. It is held across Send on
	// purpose: it is the stream's write ownership (gRPC forbids concurrent
	// Sends), and Send is bounded by a watchdog.
	sendMu sync.Mutex
}

func newPipeline(t *Transport, target hraft.ServerAddress, stream grpc.BidiStreamingClient[raftpb.AppendEntriesRequest, raftpb.AppendEntriesResponse], cancel context.CancelFunc) *pipeline {
	inFlightMax := t.mux.opts.PipelineInFlightMax
	p := &pipeline{
		transport: t,
		target:    target,
		stream:    stream,
		cancel:    cancel,
		// The receiver holds one append while it waits for its response,
		// so the queue holds the other inFlightMax-1.
		inFlight:     make(chan *appendFuture, inFlightMax-1),
		doneCh:       make(chan hraft.AppendFuture, inFlightMax),
		shutdownCh:   make(chan struct{}),
		receiverDone: make(chan struct{}),
	}
	go p.receive()
	return p
}

// AppendEntries sends args on the pipeline and returns its future. It may
// block while PipelineInFlightMax appends are unanswered (at most RPCTimeout).
// Entries that do not fit in one message are cut as by
// Transport.AppendEntries (see appendEntriesMessage).
func (p *pipeline) AppendEntries(args *hraft.AppendEntriesRequest, resp *hraft.AppendEntriesResponse) (hraft.AppendFuture, error) {
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	if err := p.usable(); err != nil {
		return nil, err
	}
	msg, err := appendEntriesMessage(p.transport.groupID, args, p.transport.mux.opts.MaxMessageBytes)
	if err != nil {
		p.transport.mux.metrics.errors.WithLabelValues(rpcAppendEntriesPipeline, sideSend).Inc()
		return nil, err
	}
	p.transport.recordAppend(p.target, args)
	timeout := p.transport.mux.opts.RPCTimeout
	f := &appendFuture{start: time.Now(), args: args, resp: resp, done: make(chan struct{})}
	slotTimer := time.NewTimer(timeout)
	select {
	case p.inFlight <- f:
		slotTimer.Stop()
	case <-p.shutdownCh:
		slotTimer.Stop()
		return nil, ErrPipelineClosed
	case <-slotTimer.C:
		return nil, fmt.Errorf("raft: pipeline to %s (group %d): %d appends unanswered for %s: %w",
			p.target, p.transport.groupID, cap(p.inFlight)+1, timeout, context.DeadlineExceeded)
	}

	watchdog := time.AfterFunc(timeout, p.cancel)
	err = p.stream.Send(msg)
	if !watchdog.Stop() && err == nil {
		err = context.DeadlineExceeded
	}
	p.transport.mux.metrics.sent.WithLabelValues(rpcAppendEntriesPipeline).Inc()
	if err != nil {
		// f is already queued: the receiver completes it with the stream's
		// error. Cancel so that the receiver does not wait for a response
		// that will never come.
		p.breakWith(err)
		return nil, p.transport.sendError("AppendEntriesPipeline", p.target, err)
	}
	return f, nil
}

// usable reports why no more appends may be sent, or nil.
func (p *pipeline) usable() error {
	select {
	case <-p.shutdownCh:
		return ErrPipelineClosed
	default:
	}
	if errp := p.broken.Load(); errp != nil {
		return p.transport.sendError("AppendEntriesPipeline", p.target, *errp)
	}
	return nil
}

// breakWith records the stream's first error and cancels the stream.
func (p *pipeline) breakWith(err error) {
	p.broken.CompareAndSwap(nil, &err)
	p.cancel()
}

// Consumer delivers completed appends in the order they were sent.
func (p *pipeline) Consumer() <-chan hraft.AppendFuture { return p.doneCh }

// Close cancels the stream, completes every unanswered append with an error
// (ErrPipelineClosed) and waits for the receiver to exit. Idempotent.
func (p *pipeline) Close() error {
	p.closeOnce.Do(func() {
		p.cancel()
		close(p.shutdownCh)
		<-p.receiverDone
		// No AppendEntries is running once sendMu is ours, and every later
		// one sees shutdownCh: what is left in inFlight is all there is.
		p.sendMu.Lock()
		for drained := false; !drained; {
			select {
			case f := <-p.inFlight:
				f.respond(ErrPipelineClosed)
			default:
				drained = true
			}
		}
		p.sendMu.Unlock()
		p.transport.forgetPipeline(p)
	})
	return nil
}

// receive matches responses to in-flight appends, in order, until Close.
func (p *pipeline) receive() {
	defer close(p.receiverDone)
	metrics := p.transport.mux.metrics
	for {
		var f *appendFuture
		select {
		case f = <-p.inFlight:
		case <-p.shutdownCh:
			return
		}
		err := p.recvInto(f)
		if err != nil {
			metrics.errors.WithLabelValues(rpcAppendEntriesPipeline, sideSend).Inc()
		}
		metrics.duration.WithLabelValues(rpcAppendEntriesPipeline).Observe(time.Since(f.start).Seconds())
		f.respond(err)
		select {
		case p.doneCh <- f:
		case <-p.shutdownCh:
			return
		}
	}
}

// recvInto reads f's response into f.resp, or returns why it cannot.
func (p *pipeline) recvInto(f *appendFuture) error {
	if errp := p.broken.Load(); errp != nil {
		return p.transport.sendError("AppendEntriesPipeline", p.target, *errp)
	}
	deadline := f.start.Add(p.transport.mux.opts.RPCTimeout)
	watchdog := time.AfterFunc(time.Until(deadline), p.cancel)
	out, err := p.stream.Recv()
	timedOut := !watchdog.Stop()
	if err != nil {
		select {
		case <-p.shutdownCh:
			err = ErrPipelineClosed
		default:
			if timedOut {
				err = fmt.Errorf("raft: pipelined append unanswered after %s: %w", p.transport.mux.opts.RPCTimeout, context.DeadlineExceeded)
			}
		}
		p.breakWith(err)
		if errors.Is(err, ErrPipelineClosed) {
			return err
		}
		return p.transport.sendError("AppendEntriesPipeline", p.target, err)
	}
	appendEntriesResponseFromProto(out, f.resp)
	return nil
}

// appendFuture is one pipelined append. The pipeline completes it exactly
// once (respond); Error waits for that.
type appendFuture struct {
	start time.Time
	args  *hraft.AppendEntriesRequest
	resp  *hraft.AppendEntriesResponse
	done  chan struct{}
	err   error // written once before done is closed
}

func (f *appendFuture) respond(err error) {
	f.err = err
	close(f.done)
}

// Error waits for the append to complete and returns its error.
func (f *appendFuture) Error() error {
	<-f.done
	return f.err
}

// Start is when the append was handed to the pipeline.
func (f *appendFuture) Start() time.Time { return f.start }

// Request is the append's request.
func (f *appendFuture) Request() *hraft.AppendEntriesRequest { return f.args }

// Response is the append's response, valid after Error returned nil.
func (f *appendFuture) Response() *hraft.AppendEntriesResponse { return f.resp }
