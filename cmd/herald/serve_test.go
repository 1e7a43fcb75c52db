package main

import (
	"strings"
	"testing"
	"time"
)

// serve documents --rejoin and parses it as a boolean.
func TestServeRejoinFlag(t *testing.T) {
	res := runCLI(t, "", nil, "serve", "--help")
	if res.code != 0 {
		t.Fatalf("serve --help: exit %d: %s", res.code, res.stderr)
	}
	help := res.stdout + res.stderr
	for _, want := range []string{"--rejoin", "wiped", "never bootstrap"} {
		if !strings.Contains(help, want) {
			t.Fatalf("serve --help does not mention %q:\n%s", want, help)
		}
	}
	res = runCLI(t, "", nil, "serve", "--rejoin=maybe", "--id", "n1")
	if res.code == 0 || !strings.Contains(res.stderr, "rejoin") {
		t.Fatalf("--rejoin=maybe: exit %d, stderr %q; want a usage error naming the flag", res.code, res.stderr)
	}
}

// --log-compression takes none, snappy or zstd, and refuses anything else
// with a usage error naming the flag.
func TestServeLogCompressionFlag(t *testing.T) {
	res := runCLI(t, "", nil, "serve", "--help")
	if !strings.Contains(res.stdout+res.stderr, "--log-compression") {
		t.Fatalf("serve --help does not mention --log-compression")
	}
	res = runCLI(t, "", nil, "serve", "--log-compression=lz4", "--id", "n1")
	if res.code != exitUsage || !strings.Contains(res.stderr, "log-compression") {
		t.Fatalf("--log-compression=lz4: exit %d, stderr %q; want a usage error naming the flag", res.code, res.stderr)
	}
}

// serve documents the node-limit flags, and dev passes the ones set on
// to its nodes' serve.
func TestNodeLimitFlags(t *testing.T) {
	res := runCLI(t, "", nil, "serve", "--help")
	for _, want := range []string{"--limit-produce-bytes", "--limit-fetch-bytes", "--limit-long-polls-per-conn", "--limit-streams", "--ws-publish-pause-max",
		"--limit-conns-per-addr", "--limit-ws-conns-per-addr"} {
		if !strings.Contains(res.stdout+res.stderr, want) {
			t.Fatalf("serve --help does not mention %q", want)
		}
	}
	var l nodeLimitFlags
	l.limits.FetchBytesMax = 32 << 20
	l.limits.StreamsPerConnectionMax = 8
	l.limits.HTTPConnsPerAddrMax = 20_064
	l.publishPauseMax = 2 * time.Second
	got := strings.Join(l.serveArgs(), " ")
	if want := "--limit-fetch-bytes=33554432 --limit-streams-per-conn=8 --limit-ws-conns-per-addr=20064 --ws-publish-pause-max=2s"; got != want {
		t.Fatalf("serve args %q, want %q", got, want)
	}
}

// serve refuses to start when nothing tells peers from clients, naming
// the flags that would; a cluster secret shorter than 32 bytes is refused
// by the node.
func TestServeRefusesOpenPeerRPCs(t *testing.T) {
	dir := t.TempDir()
	args := []string{"serve", "--id", "n1", "--data", dir, "--grpc", "127.0.0.1:1", "--http", "127.0.0.1:2"}
	res := runCLI(t, "", nil, args...)
	if res.code != exitUsage {
		t.Fatalf("serve without TLS, secret or --insecure: exit %d, stderr %q; want %d", res.code, res.stderr, exitUsage)
	}
	for _, want := range []string{"--tls-cert", "--cluster-secret-file", "--insecure"} {
		if !strings.Contains(res.stderr, want) {
			t.Fatalf("the refusal does not name %s: %q", want, res.stderr)
		}
	}
	res = runCLI(t, "", nil, append(args, "--tls-cert", "x.crt")...)
	if res.code != exitUsage || !strings.Contains(res.stderr, "all three files") {
		t.Fatalf("--tls-cert alone: exit %d, stderr %q", res.code, res.stderr)
	}
}
