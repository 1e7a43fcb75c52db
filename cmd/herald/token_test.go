package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/server/auth"
)

// keygen writes a key pair once (never over existing files); create signs
// a token the public key verifies, with the flags' claims; inspect prints
// them, marked unverified.
func TestTokenVerbs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	res := runCLI(t, "", nil, "token", "keygen", "--dir", dir)
	require.Equal(t, exitOK, res.code, res.stderr)
	fi, err := os.Stat(filepath.Join(dir, signingKeyFile))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "the signing key is readable by others")
	before, err := os.ReadFile(filepath.Join(dir, signingKeyFile))
	require.NoError(t, err)
	res = runCLI(t, "", nil, "token", "keygen", "--dir", dir)
	require.Equal(t, exitFailure, res.code, "keygen over an existing key")
	after, err := os.ReadFile(filepath.Join(dir, signingKeyFile))
	require.NoError(t, err)
	require.Equal(t, before, after, "keygen overwrote the signing key")

	key := filepath.Join(dir, signingKeyFile)
	res = runCLI(t, "", nil, "token", "create", "--key", key, "--tenant", "acme", "--actions", "produce,consume",
		"--topics", "orders,audit.*", "--ttl", "2h", "--subject", "billing")
	require.Equal(t, exitOK, res.code, res.stderr)
	tok := strings.TrimSpace(res.stdout)
	v, err := auth.NewVerifier(filepath.Join(dir, signingPubFile))
	require.NoError(t, err)
	c, err := v.Verify(tok)
	require.NoError(t, err)
	require.Equal(t, "acme", c.Tenant)
	require.Equal(t, "billing", c.Subject)
	require.Equal(t, []string{"produce", "consume"}, c.Actions)
	require.True(t, c.AllowsTopic("audit.eu") && c.AllowsTopic("orders") && !c.AllowsTopic("payments"))
	require.InDelta(t, 2*3600, c.ExpiresAt-c.IssuedAt, 1)

	res = runCLI(t, "", nil, "token", "inspect", tok)
	require.Equal(t, exitOK, res.code, res.stderr)
	var out struct {
		Verified bool        `json:"verified"`
		Claims   auth.Claims `json:"claims"`
	}
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &out))
	require.False(t, out.Verified)
	require.Equal(t, "acme", out.Claims.Tenant)

	res = runCLI(t, "", nil, "token", "create", "--key", key, "--tenant", "*", "--admin")
	require.Equal(t, exitOK, res.code, res.stderr)
	c, err = v.Verify(strings.TrimSpace(res.stdout))
	require.NoError(t, err)
	require.True(t, c.IsAdmin())

	for _, args := range [][]string{
		{"token", "create", "--key", key, "--tenant", "acme"},                        // no action
		{"token", "create", "--key", key, "--tenant", "acme", "--actions", "delete"}, // unknown action
		{"token", "create", "--tenant", "acme", "--actions", "produce"},              // no key
		{"token", "create", "--key", key, "--tenant", "a", "--actions", "produce", "--ttl", "0s"},
		{"token", "inspect", "not-a-token"},
		{"token", "keygen"},
	} {
		res := runCLI(t, "", nil, args...)
		require.Equal(t, exitUsage, res.code, "%v: %s", args, res.stderr)
	}
}

// serve --auth-keys without peer authentication is refused before the
// node starts: tokens would protect nothing while Raft stays open.
func TestServeAuthKeysNeedPeerAuthentication(t *testing.T) {
	dir := t.TempDir()
	res := runCLI(t, "", nil, "serve", "--id", "n1", "--data", filepath.Join(dir, "data"),
		"--grpc", "127.0.0.1:1", "--http", "127.0.0.1:2", "--auth-keys", filepath.Join(dir, "signing.pub"))
	require.Equal(t, exitUsage, res.code, res.stderr)
	require.Contains(t, res.stderr, "cluster secret")
}
