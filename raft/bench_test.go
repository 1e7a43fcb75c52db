package raft

import (
	"testing"

	hraft "github.com/hashicorp/raft"
)

// benchPair is a transport pair whose receiver answers every append at once.
func benchPair(b *testing.B) *transportPair {
	a := startNode(b, nil, "a", nil)
	r := startNode(b, nil, "b", nil)
	sender, err := a.mux.Transport(1)
	if err != nil {
		b.Fatal(err)
	}
	receiver, err := r.mux.Transport(1)
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case rpc := <-receiver.Consumer():
				rpc.Respond(&hraft.AppendEntriesResponse{Success: true}, nil)
			case <-receiver.ctx.Done():
				return
			}
		}
	}()
	b.Cleanup(func() {
		_ = sender.Close()
		_ = receiver.Close()
		<-done
	})
	return &transportPair{sender: sender, receiver: receiver, senderNode: a, receiverNode: r}
}

func benchAppend(entries, entryBytes int) *hraft.AppendEntriesRequest {
	req := &hraft.AppendEntriesRequest{Term: 1, PrevLogEntry: 1, PrevLogTerm: 1, LeaderCommitIndex: 1,
		RPCHeader: hraft.RPCHeader{Addr: []byte("a")}}
	for i := range entries {
		req.Entries = append(req.Entries, &hraft.Log{Index: uint64(i + 2), Term: 1, Data: make([]byte, entryBytes)})
	}
	return req
}

// BenchmarkAppendEntriesRoundTrip measures one unary AppendEntries (64
// entries of 256 bytes) over loopback gRPC, answered at once.
func BenchmarkAppendEntriesRoundTrip(b *testing.B) {
	p := benchPair(b)
	req := benchAppend(64, 256)
	b.SetBytes(64 * 256)
	b.ResetTimer()
	for b.Loop() {
		var resp hraft.AppendEntriesResponse
		if err := p.sender.AppendEntries("b", p.target(), req, &resp); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendEntriesPipelined measures the same appends through a
// pipeline (up to DefaultPipelineInFlightMax in flight).
func BenchmarkAppendEntriesPipelined(b *testing.B) {
	p := benchPair(b)
	pipe, err := p.sender.AppendEntriesPipeline("b", p.target())
	if err != nil {
		b.Fatal(err)
	}
	defer pipe.Close()
	req := benchAppend(64, 256)
	b.SetBytes(64 * 256)
	consumed := make(chan error, 1)
	go func() {
		for range b.N {
			f := <-pipe.Consumer()
			if err := f.Error(); err != nil {
				consumed <- err
				return
			}
		}
		consumed <- nil
	}()
	b.ResetTimer()
	for range b.N {
		if _, err := pipe.AppendEntries(req, &hraft.AppendEntriesResponse{}); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-consumed; err != nil {
		b.Fatal(err)
	}
}
