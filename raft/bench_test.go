package raft

import (
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

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

// BenchmarkHeartbeats measures what a heartbeat costs, sender and receiver
// together (both in this process), when many groups heartbeat the same
// peer at once: 256 groups, each waiting for its answer before it sends
// the next, as hashicorp/raft's heartbeat goroutine does. "unary" sends
// one AppendEntries each (NoHeartbeatCoalescing, as before), "coalesced"
// queues them for Heartbeat messages (DefaultHeartbeatLinger). Besides
// wall time per heartbeat it reports process CPU per heartbeat
// (cpu-ns/op, from getrusage), the figure an idle node pays.
func BenchmarkHeartbeats(b *testing.B) {
	for _, mode := range []struct {
		name  string
		unary bool
	}{{"unary", true}, {"coalesced", false}} {
		b.Run(mode.name, func(b *testing.B) {
			const groups = 256
			mutate := func(o *MuxOptions) { o.NoHeartbeatCoalescing = mode.unary }
			a := startNode(b, nil, "a", mutate)
			r := startNode(b, nil, "b", mutate)
			senders := make([]*Transport, groups)
			for g := range senders {
				s, err := a.mux.Transport(uint64(g + 1))
				if err != nil {
					b.Fatal(err)
				}
				rt, err := r.mux.Transport(uint64(g + 1))
				if err != nil {
					b.Fatal(err)
				}
				rt.SetHeartbeatHandler(func(rpc hraft.RPC) {
					rpc.Respond(&hraft.AppendEntriesResponse{Term: 3, Success: true}, nil)
				})
				senders[g] = s
				b.Cleanup(func() { _ = s.Close(); _ = rt.Close() })
			}
			target := hraft.ServerAddress(r.addr)
			var next atomic.Int64
			cpuStart := processCPU(b)
			b.ResetTimer()
			var wg sync.WaitGroup
			errs := make(chan error, groups)
			for _, s := range senders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					req := heartbeatRequest()
					for next.Add(1) <= int64(b.N) {
						var resp hraft.AppendEntriesResponse
						if err := s.AppendEntries("b", target, req, &resp); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64((processCPU(b)-cpuStart).Nanoseconds())/float64(b.N), "cpu-ns/op")
			close(errs)
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		})
	}
}

// processCPU is the user and system CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		b.Fatal(err)
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}
