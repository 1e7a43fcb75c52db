package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// parse returns the certificate of an issued pair; a failure to issue or
// parse panics (the test then fails with it).
func parse(certPEM, keyPEM []byte, err error) *x509.Certificate {
	if err != nil {
		panic(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		panic(err)
	}
	return pair.Leaf
}

// Node certificates name their node and hosts, serve and dial; client
// certificates name no node and only dial; both chain to the CA.
func TestIssue(t *testing.T) {
	ca, err := NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)

	node := parse(ca.IssueNode("n1", nil, time.Hour))
	if id, ok := NodeIdentity(node); !ok || id != "n1" {
		t.Fatalf("NodeIdentity = %q, %v; want n1", id, ok)
	}
	if got := node.URIs[0].String(); got != "spiffe://herald/node/n1" {
		t.Fatalf("URI SAN %s", got)
	}
	if len(node.IPAddresses) != 2 || len(node.DNSNames) != 1 || node.DNSNames[0] != "localhost" {
		t.Fatalf("default hosts: %v %v", node.IPAddresses, node.DNSNames)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := node.Verify(x509.VerifyOptions{Roots: roots, DNSName: "127.0.0.1", KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Fatalf("node certificate for %v: %v", usage, err)
		}
	}
	if id, err := VerifyNode([]*x509.Certificate{node}, roots, x509.ExtKeyUsageClientAuth); err != nil || id != "n1" {
		t.Fatalf("VerifyNode = %q, %v", id, err)
	}

	hosted := parse(ca.IssueNode("n2", []string{"herald-2.internal", "10.0.0.2"}, time.Hour))
	if hosted.DNSNames[0] != "herald-2.internal" || !hosted.IPAddresses[0].Equal([]byte{10, 0, 0, 2}) {
		t.Fatalf("hosts: %v %v", hosted.DNSNames, hosted.IPAddresses)
	}

	cl := parse(ca.IssueClient("admin", time.Hour))
	if _, ok := NodeIdentity(cl); ok {
		t.Fatal("a client certificate names a node")
	}
	if _, err := cl.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Fatal("a client certificate is valid for server authentication")
	}
	if _, err := VerifyNode([]*x509.Certificate{cl}, roots, x509.ExtKeyUsageClientAuth); err == nil {
		t.Fatal("VerifyNode accepted a client certificate")
	}

	other, err := NewCA("other", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreign := parse(other.IssueNode("n1", nil, time.Hour))
	if _, err := VerifyNode([]*x509.Certificate{foreign}, roots, x509.ExtKeyUsageClientAuth); err == nil {
		t.Fatal("VerifyNode accepted a node certificate of another CA")
	}

	for _, bad := range []string{"", "a/b", "n 1", "../x"} {
		if _, _, err := ca.IssueNode(bad, nil, time.Hour); !errors.Is(err, ErrBadName) {
			t.Fatalf("IssueNode(%q) = %v, want ErrBadName", bad, err)
		}
	}
}

// WriteCA never overwrites a CA key; keys are 0600; EnsureDev keeps what
// exists.
func TestFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	ca, err := WriteCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WriteCA(dir); !errors.Is(err, ErrCAExists) {
		t.Fatalf("second WriteCA = %v, want ErrCAExists", err)
	}
	loaded, err := LoadCA(dir)
	if err != nil || !loaded.Cert.Equal(ca.Cert) {
		t.Fatalf("LoadCA: %v", err)
	}
	if err := EnsureDev(dir, []string{"n1", "n2"}); err != nil {
		t.Fatal(err)
	}
	n1, _ := NodeFiles(dir, "n1")
	first, err := os.ReadFile(n1)
	if err != nil {
		t.Fatal(err)
	}
	if err := EnsureDev(dir, []string{"n1", "n2", "n3"}); err != nil {
		t.Fatal(err)
	}
	again, _ := os.ReadFile(n1)
	if string(again) != string(first) {
		t.Fatal("EnsureDev replaced an existing node certificate")
	}
	_, k3 := NodeFiles(dir, "n3")
	_, kc := ClientFiles(dir, "admin")
	for _, key := range []string{filepath.Join(dir, CAKeyFile), k3, kc} {
		fi, err := os.Stat(key)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s is %v, want 0600", key, fi.Mode().Perm())
		}
	}
	if again, err := LoadCA(dir); err != nil || !again.Cert.Equal(ca.Cert) {
		t.Fatal("EnsureDev replaced the CA")
	}
}

// A Reloader serves new files after they change, and keeps the old ones
// while the new ones do not load.
func TestReloader(t *testing.T) {
	dir := t.TempDir()
	if err := EnsureDev(dir, []string{"n1"}); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := NodeFiles(dir, "n1")
	r, err := NewReloader(ReloaderOptions{CertFile: certFile, KeyFile: keyFile, CAFile: filepath.Join(dir, CACertFile),
		CheckInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	first := r.Certificate().Leaf.SerialNumber

	// A broken certificate file: the old identity stays.
	if err := os.WriteFile(certFile, []byte("not PEM"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond) // past the check interval
	if got := r.Certificate().Leaf.SerialNumber; got.Cmp(first) != 0 {
		t.Fatal("a broken certificate file replaced the identity")
	}

	if _, _, err := WriteNode(dir, "n1", nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.Certificate().Leaf.SerialNumber.Cmp(first) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the new certificate was not loaded")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := NewReloader(ReloaderOptions{CertFile: certFile}); err == nil {
		t.Fatal("NewReloader accepted missing files")
	}
}
