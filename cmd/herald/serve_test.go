package main

import (
	"strings"
	"testing"
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
