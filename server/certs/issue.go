package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"strings"
	"time"
)

// Validity of what this package issues. A development CA lives ten years;
// node and client certificates one year (rotate them with WriteNode and
// WriteClient: the nodes read the new files without a restart).
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	LeafValidity = 365 * 24 * time.Hour
)

// clockSkewAllowance backdates NotBefore, so that a certificate made on
// one machine is valid at once on another whose clock is a little behind.
const clockSkewAllowance = 5 * time.Minute

// spiffeTrustDomain is the host part of every identity URI this package
// issues and reads: spiffe://herald/node/<id>, spiffe://herald/client/<name>.
const spiffeTrustDomain = "herald"

// DefaultHosts are the SANs of a node certificate when no hosts are given:
// enough for a cluster on one machine.
var DefaultHosts = []string{"127.0.0.1", "::1", "localhost"}

// ErrBadName is returned for a node id or client name that cannot be an
// identity (empty, or with characters outside [A-Za-z0-9._-]).
var ErrBadName = errors.New("certs: bad name")

// CA is a certificate authority: its certificate and its private key.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// CertPEM is Cert PEM-encoded (the ca.crt file).
	CertPEM []byte
}

// NewCA makes a self-signed CA named name, valid for validity.
func NewCA(name string, validity time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Herald"}},
		NotBefore:             now.Add(-clockSkewAllowance),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("certs: CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key, CertPEM: pemBlock("CERTIFICATE", der)}, nil
}

// ParseCA parses a CA from its PEM certificate and key.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("certs: CA certificate: no PEM CERTIFICATE block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certs: CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("certs: CA certificate is not a CA")
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, errors.New("certs: CA key: no PEM block")
	}
	parsed, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certs: CA key: %w", err)
	}
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("certs: CA key is %T, want ECDSA", parsed)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, errors.New("certs: CA key does not match the CA certificate")
	}
	return &CA{Cert: cert, Key: key, CertPEM: certPEM}, nil
}

// KeyPEM returns the CA's key PEM-encoded (PKCS #8).
func (ca *CA) KeyPEM() ([]byte, error) { return marshalKey(ca.Key) }

// NodeURI is the identity URI of node id.
func NodeURI(id string) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: spiffeTrustDomain, Path: "/node/" + id}
}

// ClientURI is the identity URI of client name.
func ClientURI(name string) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: spiffeTrustDomain, Path: "/client/" + name}
}

// IssueNode issues the certificate of node id for hosts (DNS names or IP
// addresses; DefaultHosts when empty), valid for validity. It returns the
// certificate and its key, PEM-encoded.
func (ca *CA) IssueNode(id string, hosts []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if err := checkName(id); err != nil {
		return nil, nil, err
	}
	if len(hosts) == 0 {
		hosts = DefaultHosts
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "node " + id, Organization: []string{"Herald"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{NodeURI(id)},
	}
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return ca.issue(tmpl, validity)
}

// IssueClient issues a client certificate named name, valid for validity.
func (ca *CA) IssueClient(name string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if err := checkName(name); err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "client " + name, Organization: []string{"Herald"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{ClientURI(name)},
	}
	return ca.issue(tmpl, validity)
}

// issue signs tmpl (its subject, usages and SANs set) with a new key.
func (ca *CA) issue(tmpl *x509.Certificate, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: key: %w", err)
	}
	if tmpl.SerialNumber, err = newSerial(); err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl.NotBefore = now.Add(-clockSkewAllowance)
	tmpl.NotAfter = now.Add(validity)
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: sign: %w", err)
	}
	keyPEM, err = marshalKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pemBlock("CERTIFICATE", der), keyPEM, nil
}

// NodeIdentity returns the node id a certificate names
// (spiffe://herald/node/<id>), if it names one. It does not verify the
// certificate: call it on a chain the cluster CA verified.
func NodeIdentity(cert *x509.Certificate) (id string, ok bool) {
	if cert == nil {
		return "", false
	}
	for _, u := range cert.URIs {
		if u.Scheme != "spiffe" || u.Host != spiffeTrustDomain {
			continue
		}
		if id, found := strings.CutPrefix(u.Path, "/node/"); found && checkName(id) == nil {
			return id, true
		}
	}
	return "", false
}

// checkName accepts names of [A-Za-z0-9._-], 1 to 64 characters.
func checkName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("%w %q: 1 to 64 characters", ErrBadName, name)
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return fmt.Errorf("%w %q: only letters, digits, '.', '_' and '-'", ErrBadName, name)
		}
	}
	return nil
}

func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certs: serial: %w", err)
	}
	return serial, nil
}

func marshalKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("certs: key: %w", err)
	}
	return pemBlock("PRIVATE KEY", der), nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
