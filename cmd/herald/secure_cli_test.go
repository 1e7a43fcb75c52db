package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/server"
	"github.com/heraldlog/herald/server/certs"
)

// TestCLIOverTLSWithAContext drives the client verbs against a three-node
// cluster that serves only TLS: without the CA they cannot connect; with
// a context naming the CA (and, once, a client certificate) they create a
// topic, produce, read back over gRPC and over wss.
func TestCLIOverTLSWithAContext(t *testing.T) {
	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	require.NoError(t, certs.EnsureDev(tlsDir, []string{"n1", "n2", "n3"}))
	_, addrs := startFollowClusterConfig(t, 3, func(c *server.Config) {
		cert, key := certs.NodeFiles(tlsDir, c.NodeID)
		c.TLS = server.TLSFiles{CertFile: cert, KeyFile: key, CAFile: filepath.Join(tlsDir, "ca.crt")}
	})
	servers := strings.Join(addrs, ",")
	env := map[string]string{configEnv: filepath.Join(dir, "config.json")}

	r := runCLI(t, "", env, "topic", "list", "--server", servers, "--timeout", "2s", "--retries", "0")
	require.NotEqual(t, exitOK, r.code, "a plaintext client must not get an answer from a TLS cluster")

	r = runCLI(t, "", env, "context", "add", "secure", "--server", servers, "--ca", filepath.Join(tlsDir, "ca.crt"))
	require.Equal(t, exitOK, r.code, r.stderr)
	r = runCLI(t, "", env, "topic", "create", "orders", "--partitions", "1", "--replication", "3", "--auto-tenants")
	require.Equal(t, exitOK, r.code, r.stderr)
	r = runCLI(t, "a\nb\n", env, "produce", "--topic", "orders", "--tenant", "acme")
	require.Equal(t, exitOK, r.code, r.stderr)

	r = runCLI(t, "", env, "consume", "--topic", "orders", "--tenant", "acme", "--from", "offset:0", "--limit", "2")
	require.Equal(t, exitOK, r.code, r.stderr)
	lines := jsonLines(t, r.stdout)
	require.Len(t, lines, 2)
	require.Equal(t, "a", lines[0]["payload"])

	// Over wss: the WebSocket URLs come from the cluster status, with the
	// scheme of the context's TLS.
	r = runCLI(t, "", env, "consume", "--ws", "--topic", "orders", "--partition", "0", "--from", "offset:0", "--limit", "2")
	require.Equal(t, exitOK, r.code, r.stderr)
	lines = jsonLines(t, r.stdout)
	require.Len(t, lines, 2)
	require.Equal(t, "b", lines[1]["payload"])

	// Mutual TLS with the dev client certificate, from the flags over the
	// context.
	cert, key := certs.ClientFiles(tlsDir, "admin")
	r = runCLI(t, "", env, "topic", "describe", "orders", "--cert", cert, "--cert-key", key)
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "orders")
}
