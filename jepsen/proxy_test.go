package jepsen

import (
	"bufio"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// echoServer answers every line with the same line until closed.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func roundTrip(c net.Conn, r *bufio.Reader, line string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		return "", err
	}
	got, err := r.ReadString('\n')
	return got, err
}

func TestProxyPassCutHeal(t *testing.T) {
	p, err := NewProxy(echoServer(t))
	require.NoError(t, err)
	defer p.Close()

	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	r := bufio.NewReader(c)
	got, err := roundTrip(c, r, "hello")
	require.NoError(t, err)
	require.Equal(t, "hello\n", got)
	require.Equal(t, 1, p.Conns())

	p.SetMode(ModeCut)
	_, err = roundTrip(c, r, "lost")
	require.Error(t, err, "a cut closes the connections it carries")
	require.Eventually(t, func() bool { return p.Conns() == 0 }, 5*time.Second, 10*time.Millisecond)

	c2, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err) // the listener accepts, then closes at once
	defer c2.Close()
	_, err = roundTrip(c2, bufio.NewReader(c2), "refused")
	require.Error(t, err, "a new connection over a cut link is closed")

	p.SetMode(ModePass)
	c3, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c3.Close()
	got, err = roundTrip(c3, bufio.NewReader(c3), "again")
	require.NoError(t, err)
	require.Equal(t, "again\n", got)
}

func TestProxyDelayStillDelivers(t *testing.T) {
	p, err := NewProxy(echoServer(t))
	require.NoError(t, err)
	defer p.Close()
	p.SetDelay(5 * time.Millisecond)
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	r := bufio.NewReader(c)
	for _, line := range []string{"a", "b", "c"} {
		got, err := roundTrip(c, r, line)
		require.NoError(t, err)
		require.Equal(t, line+"\n", got)
	}
}

func TestProxyBoundsConnsAndCloses(t *testing.T) {
	p, err := NewProxy(echoServer(t))
	require.NoError(t, err)
	var conns []net.Conn
	for range proxyConnsMax {
		c, err := net.Dial("tcp", p.Addr())
		require.NoError(t, err)
		conns = append(conns, c)
		_, err = roundTrip(c, bufio.NewReader(c), "x")
		require.NoError(t, err)
	}
	require.Equal(t, proxyConnsMax, p.Conns())
	over, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	_, err = roundTrip(over, bufio.NewReader(over), "over")
	require.Error(t, err, "a connection over the bound is closed")
	require.NoError(t, p.Close())
	require.NoError(t, p.Close(), "Close is idempotent")
	require.Zero(t, p.Conns())
	for _, c := range append(conns, over) {
		_ = c.Close()
	}
}
