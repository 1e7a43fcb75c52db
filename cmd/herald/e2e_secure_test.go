//go:build unix

package main

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/server/proccluster"
)

// TestEndToEndSecureDev runs `herald dev --tls --auth` (three node
// processes with TLS, mutual TLS between them and client tokens required)
// and drives it through the context file dev prints: with it, the client
// verbs work as on a plain cluster; with the CA but no token, every verb
// is refused as unauthenticated; with another tenant's token, producing
// for acme is refused and nothing is written.
func TestEndToEndSecureDev(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds the binary and runs a 3-node cluster of processes")
	}
	bin := proccluster.TestBinary(t)
	dataDir := t.TempDir()
	dev, _ := startDevOnFreePorts(t, bin, dataDir, "--tls", "--auth")
	require.NotEmpty(t, dev.contextFile, "dev --auth prints its context file")
	env := map[string]string{configEnv: dev.contextFile}

	r := runCLI(t, "", env, "topic", "create", "orders", "--partitions", "1", "--replication", "3")
	require.Equal(t, exitOK, r.code, r.stderr)
	r = runCLI(t, "", env, "tenant", "create", "acme")
	require.Equal(t, exitOK, r.code, r.stderr)
	r = runCLI(t, "a\nb\n", env, "produce", "--topic", "orders", "--tenant", "acme")
	require.Equal(t, exitOK, r.code, r.stderr)

	// The CA alone (no token): refused, before anything is written.
	noToken := map[string]string{configEnv: filepath.Join(t.TempDir(), "none.json"), caEnv: filepath.Join(dataDir, "tls", "ca.crt")}
	ctxFile, err := loadContexts(dev.contextFile)
	require.NoError(t, err)
	servers := ctxFile.Contexts[devContextName].Servers
	r = runCLI(t, "x\n", noToken, "produce", "--topic", "orders", "--tenant", "acme", "--server", servers, "--retries", "0")
	require.NotEqual(t, exitOK, r.code)
	require.Contains(t, r.stderr, "unauthenticated", r.stderr)

	// A token of tenant globex, signed with dev's key: it may not write
	// acme's events.
	r = runCLI(t, "", nil, "token", "create", "--key", filepath.Join(dataDir, "auth", "signing.key"),
		"--tenant", "globex", "--actions", "produce,consume", "--ttl", "10m")
	require.Equal(t, exitOK, r.code, r.stderr)
	globex := map[string]string{configEnv: dev.contextFile, tokenEnv: r.stdout}
	r = runCLI(t, "x\n", globex, "produce", "--topic", "orders", "--tenant", "acme", "--retries", "0")
	require.NotEqual(t, exitOK, r.code)
	require.Contains(t, r.stderr, "permission denied", r.stderr)

	// The admin context reads back exactly the two events.
	r = runCLI(t, "", env, "consume", "--topic", "orders", "--tenant", "acme", "--from", "offset:0", "--limit", "10", "--timeout", "3s")
	require.Equal(t, exitOK, r.code, r.stderr)
	lines := jsonLines(t, r.stdout)
	require.Len(t, lines, 2, r.stdout)
	require.Equal(t, "b", lines[1]["payload"])
	// And over wss, with the context's CA and token.
	r = runCLI(t, "", env, "consume", "--ws", "--topic", "orders", "--partition", "0", "--from", "offset:0", "--limit", "2")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Len(t, jsonLines(t, r.stdout), 2, r.stdout)
	dev.interrupt(t)
}
