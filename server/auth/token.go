package auth

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

const (
	// TokenBytesMax bounds a token: a longer one is refused unread.
	TokenBytesMax = 8 << 10
	// Leeway is the clock skew allowed between the signer and the nodes
	// when checking exp and nbf.
	Leeway = 30 * time.Second
	// algEdDSA is the only algorithm accepted (RFC 8037).
	algEdDSA = "EdDSA"
)

// What a refused token was refused for (the UNAUTHENTICATED refusal's
// metadata "what").
const (
	WhatMissing     = "missing"
	WhatMalformed   = "malformed"
	WhatSignature   = "signature"
	WhatExpired     = "expired"
	WhatNotYetValid = "not_yet_valid"
)

// Error is a token refused by Verify or Parse: What is one of the What*
// values.
type Error struct {
	What   string
	Detail string
}

func (e *Error) Error() string { return "auth: token " + e.What + ": " + e.Detail }

func refuse(what, format string, args ...any) *Error {
	return &Error{What: what, Detail: fmt.Sprintf(format, args...)}
}

// header is a token's JOSE header.
type header struct {
	Alg string `json:"alg"`
	Typ string `json:"typ,omitempty"`
	Kid string `json:"kid"`
}

var b64 = base64.RawURLEncoding

// Sign returns the compact JWS of claims signed with key, its kid the key
// id of key's public half. It refuses claims that Check refuses.
func Sign(key ed25519.PrivateKey, c Claims) (string, error) {
	if err := c.Check(); err != nil {
		return "", err
	}
	h, err := json.Marshal(header{Alg: algEdDSA, Typ: "JWT", Kid: KeyID(key.Public().(ed25519.PublicKey))})
	if err != nil {
		return "", err
	}
	p, err := json.Marshal(&c)
	if err != nil {
		return "", err
	}
	signing := b64.EncodeToString(h) + "." + b64.EncodeToString(p)
	tok := signing + "." + b64.EncodeToString(ed25519.Sign(key, []byte(signing)))
	if len(tok) > TokenBytesMax {
		return "", fmt.Errorf("auth: token of %d bytes is above the bound of %d", len(tok), TokenBytesMax)
	}
	return tok, nil
}

// parsed is a token split and decoded, not yet verified.
type parsed struct {
	header    header
	claims    Claims
	signing   string
	signature []byte
}

// parse splits and decodes token; it checks the size, the algorithm and
// the claims' JSON, not the signature.
func parse(token string) (*parsed, error) {
	if token == "" {
		return nil, refuse(WhatMissing, "no token")
	}
	if len(token) > TokenBytesMax {
		return nil, refuse(WhatMalformed, "%d bytes, above the bound of %d", len(token), TokenBytesMax)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, refuse(WhatMalformed, "want three dot-separated parts, got %d", len(parts))
	}
	var p parsed
	hb, err := b64.DecodeString(parts[0])
	if err != nil {
		return nil, refuse(WhatMalformed, "header: %v", err)
	}
	if err := strictUnmarshal(hb, &p.header); err != nil {
		return nil, refuse(WhatMalformed, "header: %v", err)
	}
	if p.header.Alg != algEdDSA {
		// none, HS*, RS*, ES*: never accepted, whatever the key.
		return nil, refuse(WhatSignature, "algorithm %q is not accepted (only %s)", p.header.Alg, algEdDSA)
	}
	cb, err := b64.DecodeString(parts[1])
	if err != nil {
		return nil, refuse(WhatMalformed, "claims: %v", err)
	}
	if err := strictUnmarshal(cb, &p.claims); err != nil {
		return nil, refuse(WhatMalformed, "claims: %v", err)
	}
	if p.signature, err = b64.DecodeString(parts[2]); err != nil {
		return nil, refuse(WhatMalformed, "signature: %v", err)
	}
	p.signing = parts[0] + "." + parts[1]
	return &p, nil
}

// strictUnmarshal decodes one JSON object and nothing after it.
func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("data after the JSON object")
	}
	return nil
}

// ParseUnverified decodes token's claims without checking its signature
// or times: for display (`herald token inspect`), never for a decision.
func ParseUnverified(token string) (*Claims, error) {
	p, err := parse(token)
	if err != nil {
		return nil, err
	}
	return &p.claims, nil
}

// verify checks p's signature against keys (by kid), then the claims at
// now.
func (p *parsed) verify(keys map[string]ed25519.PublicKey, now time.Time) (*Claims, error) {
	key, ok := keys[p.header.Kid]
	if !ok {
		return nil, refuse(WhatSignature, "unknown key id %q", p.header.Kid)
	}
	if len(p.signature) != ed25519.SignatureSize || !ed25519.Verify(key, []byte(p.signing), p.signature) {
		return nil, refuse(WhatSignature, "signature does not verify with key %s", p.header.Kid)
	}
	c := &p.claims
	if err := c.Check(); err != nil {
		return nil, refuse(WhatMalformed, "%v", err)
	}
	if now.After(c.Expiry().Add(Leeway)) {
		return nil, refuse(WhatExpired, "expired at %s", c.Expiry().UTC().Format(time.RFC3339))
	}
	if c.NotBefore != 0 && now.Add(Leeway).Before(time.Unix(c.NotBefore, 0)) {
		return nil, refuse(WhatNotYetValid, "not valid before %s", time.Unix(c.NotBefore, 0).UTC().Format(time.RFC3339))
	}
	return c, nil
}
