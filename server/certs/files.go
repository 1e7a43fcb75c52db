package certs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// File names in a certificate directory.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// ErrCAExists is returned by WriteCA when the directory already holds a
// CA key: it is never overwritten (every certificate it signed would stop
// being trusted).
var ErrCAExists = errors.New("certs: a CA key already exists")

// NodeFiles returns the certificate and key paths of node id in dir.
func NodeFiles(dir, id string) (certFile, keyFile string) {
	return filepath.Join(dir, "node-"+id+".crt"), filepath.Join(dir, "node-"+id+".key")
}

// ClientFiles returns the certificate and key paths of client name in dir.
func ClientFiles(dir, name string) (certFile, keyFile string) {
	return filepath.Join(dir, "client-"+name+".crt"), filepath.Join(dir, "client-"+name+".key")
}

// WriteCA makes a new CA and writes ca.crt and ca.key (0600) in dir,
// creating dir (0700) if needed. It refuses, with ErrCAExists, when
// ca.key is already there.
func WriteCA(dir string) (*CA, error) {
	keyPath := filepath.Join(dir, CAKeyFile)
	if _, err := os.Stat(keyPath); err == nil {
		return nil, fmt.Errorf("%w: %s", ErrCAExists, keyPath)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("certs: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	ca, err := NewCA("Herald development CA", CAValidity)
	if err != nil {
		return nil, err
	}
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		return nil, err
	}
	// The key first, exclusively: two racing WriteCA calls cannot both win.
	f, err := os.OpenFile(keyPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("%w: %s", ErrCAExists, keyPath)
		}
		return nil, fmt.Errorf("certs: %w", err)
	}
	if _, err := f.Write(keyPEM); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("certs: write %s: %w", keyPath, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("certs: write %s: %w", keyPath, err)
	}
	if err := writeFileAtomic(filepath.Join(dir, CACertFile), ca.CertPEM, 0o644); err != nil {
		return nil, err
	}
	return ca, nil
}

// LoadCA reads the CA of dir (ca.crt and ca.key).
func LoadCA(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	return ParseCA(certPEM, keyPEM)
}

// WriteNode issues node id's certificate for hosts with the CA of dir and
// writes node-<id>.crt and node-<id>.key (0600), replacing older ones
// (each file is replaced atomically; a running node picks them up).
func WriteNode(dir, id string, hosts []string) (certFile, keyFile string, err error) {
	ca, err := LoadCA(dir)
	if err != nil {
		return "", "", err
	}
	certPEM, keyPEM, err := ca.IssueNode(id, hosts, LeafValidity)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = NodeFiles(dir, id)
	return certFile, keyFile, writePair(certFile, keyFile, certPEM, keyPEM)
}

// WriteClient issues client name's certificate with the CA of dir and
// writes client-<name>.crt and client-<name>.key (0600).
func WriteClient(dir, name string) (certFile, keyFile string, err error) {
	ca, err := LoadCA(dir)
	if err != nil {
		return "", "", err
	}
	certPEM, keyPEM, err := ca.IssueClient(name, LeafValidity)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = ClientFiles(dir, name)
	return certFile, keyFile, writePair(certFile, keyFile, certPEM, keyPEM)
}

// EnsureDev makes what is missing of a development directory: the CA (an
// existing one is kept), a certificate for each node id and one client
// certificate named "admin". Existing certificates are kept, so a
// restarted development cluster keeps its identities.
func EnsureDev(dir string, nodeIDs []string) error {
	ca, err := LoadCA(dir)
	if errors.Is(err, fs.ErrNotExist) {
		ca, err = WriteCA(dir)
	}
	if err != nil {
		return err
	}
	for _, id := range nodeIDs {
		certFile, keyFile := NodeFiles(dir, id)
		if exists(certFile) && exists(keyFile) {
			continue
		}
		certPEM, keyPEM, err := ca.IssueNode(id, nil, LeafValidity)
		if err != nil {
			return err
		}
		if err := writePair(certFile, keyFile, certPEM, keyPEM); err != nil {
			return err
		}
	}
	certFile, keyFile := ClientFiles(dir, "admin")
	if exists(certFile) && exists(keyFile) {
		return nil
	}
	certPEM, keyPEM, err := ca.IssueClient("admin", LeafValidity)
	if err != nil {
		return err
	}
	return writePair(certFile, keyFile, certPEM, keyPEM)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// writePair writes a key (0600) and then its certificate.
func writePair(certFile, keyFile string, certPEM, keyPEM []byte) error {
	if err := writeFileAtomic(keyFile, keyPEM, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certFile, certPEM, 0o644)
}

// writeFileAtomic writes data to a temporary file beside path and renames
// it over path, so that a reader sees the old file or the new one whole.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	tmp := f.Name()
	defer func() { _ = os.Remove(tmp) }()
	if err := f.Chmod(perm); err != nil {
		_ = f.Close()
		return fmt.Errorf("certs: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	return nil
}
