package auth

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"sync"
	"time"
)

// keysCheckInterval is how often, at most, a Verifier looks at its keys
// file for a change.
const keysCheckInterval = time.Second

// Verifier checks tokens against the public keys of a file, which it reads
// again when the file changes (checked at most once a second, on use). A
// changed file that cannot be read or holds no key leaves the keys as they
// were (the error is kept for LastReloadError). Safe for concurrent use.
type Verifier struct {
	path string
	now  func() time.Time

	mu struct {
		sync.Mutex
		keys      map[string]ed25519.PublicKey
		modTime   time.Time
		size      int64
		checked   time.Time
		reloadErr error
	}
}

// NewVerifier reads the keys file at path; it fails when the file cannot
// be read or holds no Ed25519 public key.
func NewVerifier(path string) (*Verifier, error) {
	return newVerifier(path, time.Now)
}

func newVerifier(path string, now func() time.Time) (*Verifier, error) {
	v := &Verifier{path: path, now: now}
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.loadLocked(); err != nil {
		return nil, err
	}
	return v, nil
}

// loadLocked reads the keys file.
func (v *Verifier) loadLocked() error {
	fi, err := os.Stat(v.path)
	if err != nil {
		return fmt.Errorf("auth: keys file: %w", err)
	}
	data, err := os.ReadFile(v.path)
	if err != nil {
		return fmt.Errorf("auth: keys file: %w", err)
	}
	keys, err := ParsePublicKeys(data)
	if err != nil {
		return fmt.Errorf("auth: keys file %s: %w", v.path, err)
	}
	v.mu.keys, v.mu.modTime, v.mu.size = keys, fi.ModTime(), fi.Size()
	return nil
}

// keys returns the current keys, reading the file again first if it
// changed since it was last looked at (at most once a second).
func (v *Verifier) keys(now time.Time) map[string]ed25519.PublicKey {
	v.mu.Lock()
	defer v.mu.Unlock()
	if now.Sub(v.mu.checked) >= keysCheckInterval {
		v.mu.checked = now
		if fi, err := os.Stat(v.path); err != nil {
			v.mu.reloadErr = err
		} else if !fi.ModTime().Equal(v.mu.modTime) || fi.Size() != v.mu.size {
			v.mu.reloadErr = v.loadLocked()
		}
	}
	return v.mu.keys
}

// LastReloadError returns why the last reading of a changed keys file
// failed (nil: it did not).
func (v *Verifier) LastReloadError() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.mu.reloadErr
}

// KeyIDs returns the ids of the keys in use.
func (v *Verifier) KeyIDs() []string {
	ids := []string{}
	for id := range v.keys(v.now()) {
		ids = append(ids, id)
	}
	return ids
}

// Verify checks token and returns its claims; a refusal is an *Error.
func (v *Verifier) Verify(token string) (*Claims, error) {
	p, err := parse(token)
	if err != nil {
		return nil, err
	}
	now := v.now()
	return p.verify(v.keys(now), now)
}
