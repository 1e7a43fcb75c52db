package certs

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// SecretBytes is the randomness of a cluster secret EnsureSecret makes:
// 32 bytes, written as 64 hex digits (the server accepts any secret of
// at least 32 bytes).
const SecretBytes = 32

// EnsureSecret writes a new cluster secret (serve --cluster-secret-file;
// SecretBytes random bytes in hex, mode 0600) to path unless a file is
// already there, which is kept: `herald dev` makes its secret once and
// reuses it on restart.
func EnsureSecret(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("certs: cluster secret: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("certs: cluster secret: %w", err)
	}
	secret := make([]byte, SecretBytes)
	if _, err := rand.Read(secret); err != nil {
		_ = f.Close()
		return fmt.Errorf("certs: cluster secret: %w", err)
	}
	if _, err := fmt.Fprintln(f, hex.EncodeToString(secret)); err != nil {
		_ = f.Close()
		return fmt.Errorf("certs: cluster secret: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("certs: cluster secret: %w", err)
	}
	return nil
}
