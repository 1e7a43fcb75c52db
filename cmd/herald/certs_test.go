package main

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/heraldlog/herald/server/certs"
)

// herald certs makes a CA, node and client certificates; it never
// replaces a CA key; keys are 0600.
func TestCertsCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	res := runCLI(t, "", nil, "certs", "dev", "--dir", dir, "--nodes", "2")
	if res.code != 0 {
		t.Fatalf("certs dev: exit %d: %s", res.code, res.stderr)
	}
	for _, want := range []string{"ca " + filepath.Join(dir, "ca.crt"), "node n1 ", "node n2 ", "client admin "} {
		if !strings.Contains(res.stdout, want) {
			t.Fatalf("certs dev output lacks %q:\n%s", want, res.stdout)
		}
	}
	caKey, err := os.ReadFile(filepath.Join(dir, certs.CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"certs", "ca", "--dir", dir}, {"certs", "dev", "--dir", dir}} {
		if res := runCLI(t, "", nil, args...); res.code == 0 || !strings.Contains(res.stderr, "already exists") {
			t.Fatalf("%v over an existing CA: exit %d, stderr %q", args, res.code, res.stderr)
		}
	}
	if again, _ := os.ReadFile(filepath.Join(dir, certs.CAKeyFile)); string(again) != string(caKey) {
		t.Fatal("the CA key was replaced")
	}

	res = runCLI(t, "", nil, "certs", "node", "--dir", dir, "--id", "n3", "--hosts", "herald-3.internal,10.0.0.3")
	if res.code != 0 {
		t.Fatalf("certs node: exit %d: %s", res.code, res.stderr)
	}
	certFile, keyFile := certs.NodeFiles(dir, "n3")
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := certs.NodeIdentity(pair.Leaf); !ok || id != "n3" || pair.Leaf.DNSNames[0] != "herald-3.internal" {
		t.Fatalf("node certificate: id %q, DNS %v", id, pair.Leaf.DNSNames)
	}
	if res := runCLI(t, "", nil, "certs", "client", "--dir", dir, "--name", "ci"); res.code != 0 {
		t.Fatalf("certs client: exit %d: %s", res.code, res.stderr)
	}
	_, clientKey := certs.ClientFiles(dir, "ci")
	for _, key := range []string{filepath.Join(dir, certs.CAKeyFile), keyFile, clientKey} {
		fi, err := os.Stat(key)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, mode %v; want 0600", key, err, fi.Mode().Perm())
		}
	}
	if res := runCLI(t, "", nil, "certs", "node", "--dir", dir); res.code != exitUsage {
		t.Fatalf("certs node without --id: exit %d", res.code)
	}
}
