package raft

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	hraft "github.com/hashicorp/raft"
	"google.golang.org/grpc"

	"github.com/heraldlog/herald/raft/raftpb"
)

// snapshotBufferedChunksMax bounds the chunks received but not yet read by
// Raft: memory per incoming snapshot is at most this many messages.
const snapshotBufferedChunksMax = 4

// receiveSnapshot serves one InstallSnapshot stream whose request is req.
//
// The handler goroutine is the only one that calls stream.Recv. It hands
// Raft an RPC whose Reader is a snapshotReader, then moves data chunks into
// that reader as Raft reads, counting bytes: a stream with more than
// req.Size bytes is refused as soon as the excess arrives, one with fewer at
// its end; both fail Raft's reader and answer ErrSnapshotSize
// (codes.OutOfRange). Raft reads the data on its own goroutine and answers
// once the snapshot is installed. The caller must set a deadline: the wait in
// stream.Recv ends only with the stream, so the sender's deadline is what
// bounds it. Waits for Raft are also bounded by Close and, until the last
// byte, by SnapshotTimeout; after it, installing the snapshot (Raft
// restoring it into the FSM) is bounded by SnapshotRestoreTimeout: a restore
// cut short would be sent and restored again from scratch.
func (t *Transport) receiveSnapshot(stream grpc.ClientStreamingServer[raftpb.InstallSnapshotChunk, raftpb.InstallSnapshotResponse], req *raftpb.InstallSnapshotRequest) (*raftpb.InstallSnapshotResponse, error) {
	if _, ok := stream.Context().Deadline(); !ok {
		return nil, fmt.Errorf("%w: InstallSnapshot needs a deadline", ErrProtocol)
	}
	if req.GetSize() < 0 {
		return nil, fmt.Errorf("%w: InstallSnapshot size %d", ErrProtocol, req.GetSize())
	}
	ctx, cancel := context.WithTimeout(stream.Context(), t.mux.opts.SnapshotTimeout) // the transfer
	defer cancel()

	reader := newSnapshotReader()
	// Whatever ends this handler ends Raft's reader too; the first finish wins.
	defer reader.finish(fmt.Errorf("group %d: snapshot stream ended: %w", t.groupID, ErrTransportClosed))
	respCh := make(chan hraft.RPCResponse, 1)
	rpc := hraft.RPC{Command: installSnapshotRequestFromProto(req), Reader: reader, RespChan: respCh}
	if err := t.enqueue(ctx, rpc, false); err != nil {
		return nil, err
	}

	size := req.GetSize()
	var received int64
	defer func() { t.mux.metrics.snapshotBytes.WithLabelValues(sideReceive).Add(float64(received)) }()
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			if received != size {
				err = fmt.Errorf("%w: stream ended after %d of %d bytes", ErrSnapshotSize, received, size)
				reader.finish(err)
				return nil, err
			}
			reader.finish(io.EOF)
			break
		}
		if err != nil {
			reader.finish(err)
			return nil, err
		}
		if msg.GetRequest() != nil {
			err := fmt.Errorf("%w: InstallSnapshot carried a second request", ErrProtocol)
			reader.finish(err)
			return nil, err
		}
		data := msg.GetData()
		received += int64(len(data))
		if received > size {
			err := fmt.Errorf("%w: stream carried more than %d bytes", ErrSnapshotSize, size)
			reader.finish(err)
			return nil, err
		}
		if len(data) == 0 {
			continue
		}
		select {
		case reader.chunks <- data:
		case r := <-respCh:
			// Raft answered before reading everything: it gave up.
			return snapshotAnswer(t.groupID, r.Response, r.Error)
		case <-ctx.Done():
			err := fmt.Errorf("raft: group %d: snapshot not read in time: %w", t.groupID, ctx.Err())
			reader.finish(err)
			return nil, err
		case <-t.ctx.Done():
			return nil, fmt.Errorf("group %d: %w", t.groupID, ErrTransportClosed)
		}
	}
	restoreCtx, cancelRestore := context.WithTimeout(stream.Context(), t.mux.opts.SnapshotRestoreTimeout)
	defer cancelRestore()
	resp, err := t.await(restoreCtx, respCh)
	return snapshotAnswer(t.groupID, resp, err)
}

func snapshotAnswer(groupID uint64, resp any, err error) (*raftpb.InstallSnapshotResponse, error) {
	if err != nil {
		return nil, err
	}
	r, ok := resp.(*hraft.InstallSnapshotResponse)
	if !ok {
		return nil, fmt.Errorf("raft: group %d answered InstallSnapshot with %T", groupID, resp)
	}
	return installSnapshotResponseToProto(r), nil
}

// snapshotReader is the io.Reader Raft reads an incoming snapshot from. The
// stream handler sends chunks on chunks and calls finish once; Raft's
// goroutine calls Read. Read returns the chunks in order, then the error
// given to finish (io.EOF when the stream delivered exactly Size bytes).
type snapshotReader struct {
	chunks chan []byte
	done   chan struct{} // closed by finish
	once   sync.Once
	err    error // set by finish before done is closed
	cur    []byte
}

var _ io.Reader = (*snapshotReader)(nil)

func newSnapshotReader() *snapshotReader {
	return &snapshotReader{chunks: make(chan []byte, snapshotBufferedChunksMax), done: make(chan struct{})}
}

// finish ends the data: Read returns err after the chunks already sent.
// Only the first call counts.
func (r *snapshotReader) finish(err error) {
	r.once.Do(func() {
		r.err = err
		close(r.done)
	})
}

// Read implements io.Reader. Only one goroutine (Raft's) may call it.
func (r *snapshotReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		select {
		case c := <-r.chunks:
			r.cur = c
		case <-r.done:
			// The handler sends every chunk before finishing, so a chunk
			// still buffered precedes the end.
			select {
			case c := <-r.chunks:
				r.cur = c
			default:
				return 0, r.err
			}
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}
