package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/heraldlog/herald/server/auth"
	"github.com/heraldlog/herald/server/certs"
	"github.com/heraldlog/herald/server/proccluster"
)

// What `herald dev --auth` and `--tls` make for clients.
const (
	// devAdminTokenTTL is how long the admin token of a dev start lasts;
	// each start signs a new one.
	devAdminTokenTTL = 24 * time.Hour
	// devContextName is the context dev writes to <data>/config.json.
	devContextName = "dev"
)

// ensureDevAuth makes dir's signing key pair once (kept on restart, like
// the dev CA) and signs a fresh admin token, written to dir/admin.token
// (0600). It returns the public keys file (serve --auth-keys) and the
// token.
func ensureDevAuth(dir string) (pubFile, token string, err error) {
	keyFile, pubFile := filepath.Join(dir, signingKeyFile), filepath.Join(dir, signingPubFile)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	data, err := os.ReadFile(keyFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		key, err := auth.GenerateKey()
		if err != nil {
			return "", "", err
		}
		priv, err := auth.MarshalPrivateKey(key)
		if err != nil {
			return "", "", err
		}
		pub, err := auth.MarshalPublicKey(key.Public().(ed25519.PublicKey))
		if err != nil {
			return "", "", err
		}
		// The public key first: a key without its public half would be
		// made again, never reused half-written.
		if err := writeFileAtomic(pubFile, pub, 0o644); err != nil {
			return "", "", err
		}
		if err := writeFileAtomic(keyFile, priv, 0o600); err != nil {
			return "", "", err
		}
		data = priv
	case err != nil:
		return "", "", err
	}
	key, err := auth.ParsePrivateKey(data)
	if err != nil {
		return "", "", fmt.Errorf("%s: %w", keyFile, err)
	}
	now := time.Now()
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return "", "", err
	}
	token, err = auth.Sign(key, auth.Claims{
		Subject: "dev-admin", Issuer: auth.Issuer, Tenant: auth.AllTenants,
		Actions:  []string{auth.ActionAdmin},
		IssuedAt: now.Unix(), ExpiresAt: now.Add(devAdminTokenTTL).Unix(), ID: hex.EncodeToString(id),
	})
	if err != nil {
		return "", "", err
	}
	if err := writeFileAtomic(filepath.Join(dir, "admin.token"), []byte(token+"\n"), 0o600); err != nil {
		return "", "", err
	}
	return pubFile, token, nil
}

// writeDevContext writes <data>/config.json, a context file whose one
// context, "dev", reaches the dev cluster: its servers and admin
// listeners, its CA (withTLS) and the admin token file (withAuth). It
// returns the file's absolute path.
func writeDevContext(dataDir string, layout []proccluster.Node, withTLS, withAuth bool) (string, error) {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return "", err
	}
	var servers, admin []string
	for _, n := range layout {
		servers = append(servers, n.GRPCAddr)
		if n.AdminAddr != "" {
			admin = append(admin, n.AdminAddr)
		}
	}
	c := &clusterContext{Servers: strings.Join(servers, ","), Admin: strings.Join(admin, ",")}
	if withTLS {
		c.CA = filepath.Join(abs, "tls", certs.CACertFile)
	}
	if withAuth {
		c.TokenFile = filepath.Join(abs, "auth", "admin.token")
	}
	path := filepath.Join(abs, "config.json")
	f := &contextFile{Version: 1, Current: devContextName, Contexts: map[string]*clusterContext{devContextName: c}}
	return path, f.save(path)
}

// writeFileAtomic writes data to path through a temporary file renamed
// over it, with mode perm.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
