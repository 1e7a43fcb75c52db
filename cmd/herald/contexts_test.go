package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestContextLifecycle adds, selects, lists, shows and removes contexts
// through the CLI, and checks the file is private and tokens are redacted.
func TestContextLifecycle(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{configEnv: filepath.Join(dir, "cfg", "config.json")}
	token := "eyJhbGciOiJFZERTQSJ9.payload-part.signature-part"

	r := runCLI(t, "", env, "context", "add", "prod", "--server", "10.0.0.1:7701", "--token", token)
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "(current)", "the first context becomes the current one")
	r = runCLI(t, "", env, "context", "add", "dev", "--server", "127.0.0.1:7701", "--ca", "ca.pem")
	require.Equal(t, exitOK, r.code, r.stderr)
	r = runCLI(t, "", env, "context", "add", "dev", "--server", "127.0.0.1:7702")
	require.Equal(t, exitUsage, r.code, "adding over an existing context needs --update")

	st, err := os.Stat(env[configEnv])
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "the file may hold tokens")

	r = runCLI(t, "", env, "context", "list")
	require.Equal(t, exitOK, r.code, r.stderr)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 3)
	require.Regexp(t, `^\s+dev\s+127.0.0.1:7701\s+yes\s+-$`, lines[1])
	require.Regexp(t, `^\*\s+prod\s+10.0.0.1:7701\s+no\s+token$`, lines[2])

	r = runCLI(t, "", env, "context", "show")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.NotContains(t, r.stdout, token, "show must not print the credential")
	var shown map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &shown))
	require.Equal(t, "prod", shown["name"])

	r = runCLI(t, "", env, "context", "use", "dev")
	require.Equal(t, exitOK, r.code, r.stderr)
	r = runCLI(t, "", env, "context", "show")
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &shown))
	require.Equal(t, "dev", shown["name"])
	require.True(t, filepath.IsAbs(shown["ca"].(string)), "paths are stored absolute: %v", shown["ca"])

	r = runCLI(t, "", env, "context", "use", "nope")
	require.Equal(t, exitUsage, r.code)
	r = runCLI(t, "", env, "context", "remove", "dev")
	require.Equal(t, exitOK, r.code, r.stderr)
	r = runCLI(t, "", env, "context", "list")
	require.NotContains(t, r.stdout, "dev")
	require.NotContains(t, r.stdout, "*", "the removed context was the current one")
}

// TestContextSettingPrecedence: a client verb takes the servers from
// --server, else $HERALD_SERVER, else the selected context, else the
// current one. Each address is dead, and the error names the one tried.
func TestContextSettingPrecedence(t *testing.T) {
	dir := t.TempDir()
	fromCurrent, fromNamed, fromEnv, fromFlag := deadAddr(t), deadAddr(t), deadAddr(t), deadAddr(t)
	env := map[string]string{configEnv: filepath.Join(dir, "config.json")}
	require.Equal(t, exitOK, runCLI(t, "", env, "context", "add", "a", "--server", fromCurrent).code)
	require.Equal(t, exitOK, runCLI(t, "", env, "context", "add", "b", "--server", fromNamed).code)

	tried := func(env map[string]string, args ...string) string {
		t.Helper()
		r := runCLI(t, "", env, append([]string{"topic", "list", "--timeout", "300ms", "--retries", "0"}, args...)...)
		require.NotEqual(t, exitOK, r.code)
		require.Contains(t, r.stderr, "no node answered at ", r.stderr)
		return r.stderr
	}
	require.Contains(t, tried(env), fromCurrent)
	require.Contains(t, tried(env, "--context", "b"), fromNamed)
	withCtxEnv := map[string]string{configEnv: env[configEnv], contextEnv: "b"}
	require.Contains(t, tried(withCtxEnv), fromNamed)
	withServerEnv := map[string]string{configEnv: env[configEnv], serverEnv: fromEnv}
	require.Contains(t, tried(withServerEnv, "--context", "b"), fromEnv)
	require.Contains(t, tried(withServerEnv, "--server", fromFlag), fromFlag)

	r := runCLI(t, "", env, "topic", "list", "--context", "missing")
	require.Equal(t, exitUsage, r.code)
	require.Contains(t, r.stderr, `context "missing" is not in`)
}

// TestConnectionFlagErrors: bad TLS and token settings are usage errors,
// found before any connection is tried.
func TestConnectionFlagErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("not a certificate"), 0o600))
	empty := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(empty, []byte("\n"), 0o600))
	env := map[string]string{configEnv: filepath.Join(dir, "config.json")}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--ca", notPEM}, "no PEM certificate"},
		{[]string{"--ca", filepath.Join(dir, "absent.pem")}, "--ca"},
		{[]string{"--cert", notPEM}, "--cert and --cert-key go together"},
		{[]string{"--token", "x", "--token-file", empty}, "give one"},
		{[]string{"--token-file", empty}, "is empty"},
	} {
		r := runCLI(t, "", env, append([]string{"topic", "list", "--server", deadAddr(t)}, tc.args...)...)
		require.Equal(t, exitUsage, r.code, "%v: %s", tc.args, r.stderr)
		require.Contains(t, r.stderr, tc.want, tc.args)
	}
}
