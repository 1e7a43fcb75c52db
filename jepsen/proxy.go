package jepsen

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Proxy limits.
const (
	// proxyConnsMax bounds the connections one proxy carries at once; a
	// connection over it is closed at accept. Raft needs one per peer.
	proxyConnsMax = 64
	// proxyChunkBytesMax is the one buffer per direction of a connection.
	proxyChunkBytesMax = 32 << 10
)

// ErrProxyClosed is returned by Proxy methods after Close.
var ErrProxyClosed = errors.New("jepsen: proxy closed")

// Mode is what a Proxy does with its link.
type Mode int

// Proxy modes.
const (
	// ModePass forwards bytes both ways.
	ModePass Mode = iota
	// ModeCut closes the connections it carries and every new one at once
	// (the dialer sees a refused link, not a hang).
	ModeCut
)

// Proxy is a TCP forwarder on 127.0.0.1 from its listener to one target
// address, which the harness can cut or slow. It is safe for concurrent
// use. It owns one accept goroutine and two copy goroutines per carried
// connection; Close stops them all and waits for them.
type Proxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup
	mu     struct {
		sync.Mutex
		mode   Mode
		delay  time.Duration
		conns  map[*proxyConn]struct{}
		closed bool
	}
}

// proxyConn is one carried connection: the accepted side and the dialled one.
type proxyConn struct {
	client, server net.Conn
	once           sync.Once
}

func (c *proxyConn) close() {
	c.once.Do(func() {
		_ = c.client.Close()
		_ = c.server.Close()
	})
}

// NewProxy listens on 127.0.0.1:0 and forwards to target.
func NewProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("jepsen: proxy to %s: %w", target, err)
	}
	p := &Proxy{ln: ln, target: target}
	p.mu.conns = make(map[*proxyConn]struct{})
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address to dial instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target is the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// SetMode switches the link: ModeCut also closes every carried connection.
func (p *Proxy) SetMode(m Mode) {
	p.mu.Lock()
	p.mu.mode = m
	var drop []*proxyConn
	if m == ModeCut {
		for c := range p.mu.conns {
			drop = append(drop, c)
		}
	}
	p.mu.Unlock()
	for _, c := range drop {
		c.close()
	}
}

// SetDelay adds d before each chunk is forwarded, in both directions (0:
// none). Chunks are at most proxyChunkBytesMax, read one at a time, so the
// delay backs up into TCP flow control rather than into memory.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.delay = d
}

// Conns returns how many connections the proxy carries now.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.mu.conns)
}

// Close stops the listener and every connection and waits for the
// proxy's goroutines. It is idempotent.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.mu.closed {
		p.mu.Unlock()
		return nil
	}
	p.mu.closed = true
	drop := make([]*proxyConn, 0, len(p.mu.conns))
	for c := range p.mu.conns {
		drop = append(drop, c)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	for _, c := range drop {
		c.close()
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		refuse := p.mu.closed || p.mu.mode == ModeCut || len(p.mu.conns) >= proxyConnsMax
		p.mu.Unlock()
		if refuse {
			_ = in.Close()
			continue
		}
		out, err := net.DialTimeout("tcp", p.target, time.Second)
		if err != nil {
			_ = in.Close()
			continue
		}
		c := &proxyConn{client: in, server: out}
		p.mu.Lock()
		if p.mu.closed || p.mu.mode == ModeCut {
			p.mu.Unlock()
			c.close()
			continue
		}
		p.mu.conns[c] = struct{}{}
		p.mu.Unlock()
		var pipes sync.WaitGroup
		pipes.Add(2)
		p.wg.Add(3)
		go p.pipe(&pipes, c, out, in)
		go p.pipe(&pipes, c, in, out)
		go func() {
			defer p.wg.Done()
			pipes.Wait()
			p.mu.Lock()
			delete(p.mu.conns, c)
			p.mu.Unlock()
		}()
	}
}

// pipe copies src to dst chunk by chunk, applying the delay, until either
// side fails; then it closes the connection (both directions).
func (p *Proxy) pipe(pipes *sync.WaitGroup, c *proxyConn, dst io.Writer, src io.Reader) {
	defer p.wg.Done()
	defer pipes.Done()
	defer c.close()
	buf := make([]byte, proxyChunkBytesMax)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			d, cut := p.mu.delay, p.mu.mode == ModeCut || p.mu.closed
			p.mu.Unlock()
			if cut {
				return
			}
			if d > 0 {
				time.Sleep(d) // the injected latency itself
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
