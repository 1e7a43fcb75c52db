package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// DefaultCheckInterval is how often, at most, a Reloader looks at its
// files (one stat of each, on use: a handshake).
const DefaultCheckInterval = time.Second

// minVersion is the oldest TLS version served or dialled: 1.2 (1.3 is
// preferred; Go negotiates it whenever both sides have it).
const minVersion = tls.VersionTLS12

// ReloaderOptions configures a Reloader.
type ReloaderOptions struct {
	// CertFile and KeyFile are the node's certificate and key; CAFile the
	// cluster CA (PEM, one or more certificates). All three are required.
	CertFile, KeyFile, CAFile string
	// CheckInterval bounds how often the files are looked at: at most
	// once per interval, on the first handshake after it. 0 means
	// DefaultCheckInterval.
	CheckInterval time.Duration
	// Logger receives reloads (INFO) and files that fail to load (WARN).
	// Nil means slog.Default().
	Logger *slog.Logger
}

// Reloader holds a node's current TLS identity (certificate and key) and
// the cluster CA, and reads them again when their files change: no
// goroutine, the check happens on use, at most once per CheckInterval
// (a stat of each file; the files are read only when one changed). A
// change that does not load (a key that does not match its certificate
// while the pair is being replaced, a broken PEM) keeps the previous
// identity and is tried again at the next check.
//
// All methods are safe for concurrent use.
type Reloader struct {
	opts   ReloaderOptions
	logger *slog.Logger

	mu struct {
		sync.Mutex
		checkedAt time.Time
		stamps    [3]fileStamp
		cert      *tls.Certificate
		pool      *x509.CertPool
	}
}

// fileStamp is what a stat tells of a file's content.
type fileStamp struct {
	modTime time.Time
	size    int64
}

// NewReloader loads the files once (failing when they do not load) and
// returns the Reloader.
func NewReloader(opts ReloaderOptions) (*Reloader, error) {
	var errs []error
	for name, v := range map[string]string{"certificate": opts.CertFile, "key": opts.KeyFile, "CA": opts.CAFile} {
		if v == "" {
			errs = append(errs, fmt.Errorf("certs: the %s file is required", name))
		}
	}
	if opts.CheckInterval < 0 {
		errs = append(errs, fmt.Errorf("certs: check interval %s is negative", opts.CheckInterval))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if opts.CheckInterval == 0 {
		opts.CheckInterval = DefaultCheckInterval
	}
	r := &Reloader{opts: opts, logger: opts.Logger}
	if r.logger == nil {
		r.logger = slog.Default()
	}
	stamps := r.stat()
	cert, pool, err := r.load()
	if err != nil {
		return nil, err
	}
	r.mu.checkedAt = time.Now()
	r.mu.stamps, r.mu.cert, r.mu.pool = stamps, cert, pool
	return r, nil
}

// Certificate returns the node's current certificate and key.
func (r *Reloader) Certificate() *tls.Certificate {
	cert, _ := r.current()
	return cert
}

// current returns the identity and CA pool, first reading the files again
// when the check is due and one of them changed. No lock is held while
// the files are read.
func (r *Reloader) current() (*tls.Certificate, *x509.CertPool) {
	now := time.Now()
	r.mu.Lock()
	cert, pool := r.mu.cert, r.mu.pool
	if now.Sub(r.mu.checkedAt) < r.opts.CheckInterval {
		r.mu.Unlock()
		return cert, pool
	}
	// Claim this check: concurrent handshakes use what is held meanwhile.
	r.mu.checkedAt = now
	old := r.mu.stamps
	r.mu.Unlock()

	stamps := r.stat()
	if stamps == old {
		return cert, pool
	}
	newCert, newPool, err := r.load()
	if err != nil {
		r.logger.Warn("tls files changed but do not load; keeping the previous ones", "err", err)
		return cert, pool
	}
	r.mu.Lock()
	r.mu.stamps, r.mu.cert, r.mu.pool = stamps, newCert, newPool
	r.mu.Unlock()
	r.logger.Info("tls files reloaded", "cert", r.opts.CertFile, "ca", r.opts.CAFile,
		"not_after", newCert.Leaf.NotAfter)
	return newCert, newPool
}

// stat returns the stamps of the three files (zero for one that cannot
// be stat'ed: it is then read, and fails, at the next load).
func (r *Reloader) stat() [3]fileStamp {
	var out [3]fileStamp
	for i, path := range []string{r.opts.CertFile, r.opts.KeyFile, r.opts.CAFile} {
		if fi, err := os.Stat(path); err == nil {
			out[i] = fileStamp{modTime: fi.ModTime(), size: fi.Size()}
		}
	}
	return out
}

// load reads and parses the three files.
func (r *Reloader) load() (*tls.Certificate, *x509.CertPool, error) {
	cert, err := tls.LoadX509KeyPair(r.opts.CertFile, r.opts.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: %w", err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, nil, fmt.Errorf("certs: %w", err)
		}
	}
	pool, err := LoadPool(r.opts.CAFile)
	if err != nil {
		return nil, nil, err
	}
	return &cert, pool, nil
}

// LoadPool reads a PEM file of CA certificates into a pool.
func LoadPool(caFile string) (*x509.CertPool, error) {
	data, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("certs: %s holds no PEM certificate", caFile)
	}
	return pool, nil
}

// ServerConfig returns the tls.Config of a server of this node: each
// handshake gets the current certificate, and verifies a client
// certificate, when the client sends one, against the current CA
// (tls.VerifyClientCertIfGiven: clients with a token and no certificate
// connect too; what a caller may do is decided after the handshake).
// nextProtos are the ALPN protocols served: "h2" for gRPC, "http/1.1"
// for the WebSocket gateway.
func (r *Reloader) ServerConfig(nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: minVersion,
		NextProtos: nextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, pool := r.current()
			return &tls.Config{
				MinVersion:   minVersion,
				NextProtos:   nextProtos,
				Certificates: []tls.Certificate{*cert},
				ClientCAs:    pool,
				ClientAuth:   tls.VerifyClientCertIfGiven,
			}, nil
		},
	}
}

// PeerClientConfig returns the tls.Config of this node's links to its
// peers: it presents the current node certificate, and accepts a server
// whose certificate chains to the current cluster CA, is valid for
// server authentication and names a node (NodeIdentity). The server's
// host name is not checked: a peer is known by its node identity, and
// the address dialled may be a proxy's.
func (r *Reloader) PeerClientConfig() *tls.Config {
	return &tls.Config{
		MinVersion: minVersion,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, _ := r.current()
			return cert, nil
		},
		// Verification is VerifyConnection's, against the current CA
		// (RootCAs cannot change after the config is built).
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, pool := r.current()
			_, err := VerifyNode(cs.PeerCertificates, pool, x509.ExtKeyUsageServerAuth)
			return err
		},
	}
}

// VerifyNode verifies a presented chain (leaf first) against roots for
// usage and returns the node id the leaf names; it fails for a chain that
// does not verify or a certificate that names no node.
func VerifyNode(chain []*x509.Certificate, roots *x509.CertPool, usage x509.ExtKeyUsage) (string, error) {
	if len(chain) == 0 {
		return "", errors.New("certs: no certificate presented")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return "", fmt.Errorf("certs: peer certificate: %w", err)
	}
	id, ok := NodeIdentity(chain[0])
	if !ok {
		return "", errors.New("certs: peer certificate names no node")
	}
	return id, nil
}

// ClientConfig returns the tls.Config of a client of the cluster: it
// trusts the CA in caFile and, when certFile and keyFile are given,
// presents that client certificate. The server's host name is checked
// as usual (node certificates name their hosts).
func ClientConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	pool, err := LoadPool(caFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: minVersion, RootCAs: pool}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("certs: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
