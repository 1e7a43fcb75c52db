package auth

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testKeys makes a key pair and a keys file holding the public key.
func testKeys(t *testing.T) (ed25519.PrivateKey, string) {
	t.Helper()
	priv, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := MarshalPublicKey(priv.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "keys.pub")
	if err := os.WriteFile(path, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	return priv, path
}

func claimsAt(now time.Time) Claims {
	return Claims{Subject: "svc", Issuer: Issuer, IssuedAt: now.Unix(), ExpiresAt: now.Add(time.Hour).Unix(),
		Tenant: "acme", Actions: []string{ActionProduce}}
}

// forge builds a token from a raw header and claims, signed by sign.
func forge(t *testing.T, hdr map[string]any, c Claims, sign func(signing string) []byte) string {
	t.Helper()
	h, _ := json.Marshal(hdr)
	p, _ := json.Marshal(c)
	signing := b64.EncodeToString(h) + "." + b64.EncodeToString(p)
	return signing + "." + b64.EncodeToString(sign(signing))
}

func TestVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	priv, path := testKeys(t)
	other, _ := testKeys(t)
	v, err := newVerifier(path, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	pub := priv.Public().(ed25519.PublicKey)
	kid := KeyID(pub)
	pubPEM, _ := MarshalPublicKey(pub)
	good := claimsAt(now)
	sign := func(c Claims) string {
		tok, err := Sign(priv, c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	with := func(f func(*Claims)) Claims { c := claimsAt(now); f(&c); return c }
	// A token signed correctly but with claims Sign would refuse.
	unchecked := func(c Claims) string {
		return forge(t, map[string]any{"alg": "EdDSA", "kid": kid}, c, func(s string) []byte { return ed25519.Sign(priv, []byte(s)) })
	}
	tampered := sign(good)
	{
		parts := strings.Split(tampered, ".")
		c := with(func(c *Claims) { c.Tenant = "*" })
		p, _ := json.Marshal(c)
		tampered = parts[0] + "." + b64.EncodeToString(p) + "." + parts[2]
	}
	otherTok, _ := Sign(other, good)
	for _, tc := range []struct {
		name  string
		token string
		what  string // "" = valid
	}{
		{"valid", sign(good), ""},
		{"empty", "", WhatMissing},
		{"garbage", "a.b", WhatMalformed},
		{"bad base64", "!!.!!.!!", WhatMalformed},
		{"too large", strings.Repeat("a", TokenBytesMax+1), WhatMalformed},
		{"tampered claims", tampered, WhatSignature},
		{"other key", otherTok, WhatSignature},
		{"alg none", forge(t, map[string]any{"alg": "none", "kid": kid}, good, func(string) []byte { return nil }), WhatSignature},
		{"HS256 with the public key as secret", forge(t, map[string]any{"alg": "HS256", "kid": kid}, good, func(s string) []byte {
			m := hmac.New(sha256.New, pubPEM)
			m.Write([]byte(s))
			return m.Sum(nil)
		}), WhatSignature},
		{"RS256", forge(t, map[string]any{"alg": "RS256", "kid": kid}, good, func(string) []byte { return []byte("x") }), WhatSignature},
		{"no kid", forge(t, map[string]any{"alg": "EdDSA"}, good, func(s string) []byte { return ed25519.Sign(priv, []byte(s)) }), WhatSignature},
		{"expired", sign(with(func(c *Claims) {
			c.IssuedAt = now.Add(-2 * time.Hour).Unix()
			c.ExpiresAt = now.Add(-time.Minute).Unix()
		})), WhatExpired},
		{"expired within leeway", sign(with(func(c *Claims) {
			c.IssuedAt = now.Add(-2 * time.Hour).Unix()
			c.ExpiresAt = now.Add(-10 * time.Second).Unix()
		})), ""},
		{"not yet valid", sign(with(func(c *Claims) { c.NotBefore = now.Add(time.Minute).Unix() })), WhatNotYetValid},
		{"not yet valid within leeway", sign(with(func(c *Claims) { c.NotBefore = now.Add(10 * time.Second).Unix() })), ""},
		{"no exp", unchecked(with(func(c *Claims) { c.ExpiresAt = 0 })), WhatMalformed},
		{"wrong issuer", unchecked(with(func(c *Claims) { c.Issuer = "someone" })), WhatMalformed},
		{"no tenant", unchecked(with(func(c *Claims) { c.Tenant = "" })), WhatMalformed},
		{"unknown action", unchecked(with(func(c *Claims) { c.Actions = []string{"delete"} })), WhatMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := v.Verify(tc.token)
			if tc.what == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if c.Subject != "svc" {
					t.Fatalf("claims %+v", c)
				}
				return
			}
			var ae *Error
			if !errors.As(err, &ae) || ae.What != tc.what {
				t.Fatalf("got %v, want a refusal for %s", err, tc.what)
			}
		})
	}
}

func TestClaimsDecide(t *testing.T) {
	for _, tc := range []struct {
		name    string
		c       Claims
		action  string
		topic   string
		tenant  string
		allowed [3]bool // action, topic, tenant
	}{
		{"exact topic", Claims{Tenant: "a", Actions: []string{ActionConsume}, Topics: []string{"orders"}}, ActionConsume, "orders", "a", [3]bool{true, true, true}},
		{"other topic", Claims{Tenant: "a", Actions: []string{ActionConsume}, Topics: []string{"orders"}}, ActionProduce, "orders2", "b", [3]bool{false, false, false}},
		{"prefix", Claims{Tenant: "a", Actions: []string{ActionProduce}, Topics: []string{"orders.*"}}, ActionProduce, "orders.eu", "a", [3]bool{true, true, true}},
		{"prefix not matched", Claims{Tenant: "a", Actions: []string{ActionProduce}, Topics: []string{"orders.*"}}, ActionGroups, "orders", "a", [3]bool{false, false, true}},
		{"every topic", Claims{Tenant: "*", Actions: []string{ActionGroups}}, ActionGroups, "x", "b", [3]bool{true, true, true}},
		{"admin", Claims{Tenant: "a", Actions: []string{ActionAdmin}, Topics: []string{"t"}}, ActionProduce, "u", "b", [3]bool{true, true, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := [3]bool{tc.c.Allows(tc.action), tc.c.AllowsTopic(tc.topic), tc.c.AllowsTenant(tc.tenant)}
			if got != tc.allowed {
				t.Fatalf("got %v, want %v", got, tc.allowed)
			}
		})
	}
}

// TestVerifierReloads rotates keys: a second key appended to the file is
// accepted once the file changed, and a broken file keeps the old keys.
func TestVerifierReloads(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	priv, path := testKeys(t)
	next, _ := GenerateKey()
	clock := now
	v, err := newVerifier(path, func() time.Time { return clock })
	if err != nil {
		t.Fatal(err)
	}
	tok, err := Sign(next, claimsAt(now))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(tok); err == nil {
		t.Fatal("a token of a key not in the file was accepted")
	}
	old, _ := MarshalPublicKey(priv.Public().(ed25519.PublicKey))
	add, _ := MarshalPublicKey(next.Public().(ed25519.PublicKey))
	if err := os.WriteFile(path, append(old, add...), 0o644); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(2 * keysCheckInterval)
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if err := os.WriteFile(path, []byte("broken"), 0o644); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(2 * keysCheckInterval)
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("a broken keys file dropped the keys: %v", err)
	}
	if v.LastReloadError() == nil {
		t.Fatal("the broken keys file's error was not kept")
	}
}

func TestKeysRoundTrip(t *testing.T) {
	priv, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	data, err := MarshalPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParsePrivateKey(data)
	if err != nil || !back.Equal(priv) {
		t.Fatalf("private key round trip: %v", err)
	}
	if _, err := ParsePublicKeys(data); err == nil {
		t.Fatal("a private key file was taken for public keys")
	}
	if len(KeyID(priv.Public().(ed25519.PublicKey))) != 16 {
		t.Fatal("key id is not 8 bytes of hex")
	}
}
