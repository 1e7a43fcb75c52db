package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/heraldlog/herald/client"
)

// Client-verb defaults and the environment variables of the connection
// flags (docs/security.md, "The CLI").
const (
	defaultServer  = "127.0.0.1:7701"
	serverEnv      = "HERALD_SERVER"
	tokenEnv       = "HERALD_TOKEN"
	caEnv          = "HERALD_CA"
	certEnv        = "HERALD_CERT"
	keyEnv         = "HERALD_CERT_KEY"
	defaultTimeout = 10 * time.Second
	// retriesMax bounds --retries; past it, a caller wants a deadline.
	retriesMax = 100
	// tokenBytesMax bounds a token read from a file.
	tokenBytesMax = 64 << 10
	// caBytesMax bounds a CA bundle read from a file.
	caBytesMax = 4 << 20
)

// clientOptions are the flags every client verb takes. The connection
// settings (servers, token, TLS files) are resolved once, on first use:
// each from its flag when given, else its environment variable, else the
// selected context (contexts.go), else the default.
type clientOptions struct {
	servers   string
	timeout   time.Duration
	retries   int
	token     string
	tokenFile string
	ca        string
	cert, key string
	tls       bool
	context   string

	flags *pflag.FlagSet
	env   environment
	// resolved is set once resolve has run; conn is its result.
	resolved bool
	conn     connection
	err      error
}

// connection is what a client verb connects with, resolved.
type connection struct {
	servers []string
	token   string
	tls     *tls.Config
	// admin is the admin addresses a context names (herald top).
	admin string
}

// register adds the connection flags to flags; env supplies the
// environment variables and the context file's location.
func (o *clientOptions) register(flags *pflag.FlagSet, env environment) {
	o.flags, o.env = flags, env
	flags.StringVar(&o.servers, "server", defaultServer, "comma-separated node addresses (host:port); env "+serverEnv)
	flags.DurationVar(&o.timeout, "timeout", defaultTimeout, "timeout of each request to the cluster")
	flags.IntVar(&o.retries, "retries", client.DefaultMaxRetries, "retries of a failed request, with backoff (0: none)")
	flags.StringVar(&o.token, "token", "", "signed credential sent with every request (herald token create); env "+tokenEnv)
	flags.StringVar(&o.tokenFile, "token-file", "", "file holding the credential, instead of --token")
	flags.StringVar(&o.ca, "ca", "", "PEM file of the cluster CA: connect over TLS and verify the nodes with it; env "+caEnv)
	flags.StringVar(&o.cert, "cert", "", "client certificate (PEM) for mutual TLS; env "+certEnv)
	flags.StringVar(&o.key, "cert-key", "", "key of --cert (PEM); env "+keyEnv)
	flags.BoolVar(&o.tls, "tls", false, "connect over TLS, verifying the nodes with the system's roots (implied by --ca)")
	flags.StringVar(&o.context, "context", "", "named context to take unset connection settings from (herald context list); env "+contextEnv)
}

// pick returns the flag's value when it was given on the command line,
// else the environment variable's, else the context's, else def.
func (o *clientOptions) pick(flag, value, envName, fromContext, def string) string {
	if o.flags != nil && o.flags.Changed(flag) {
		return value
	}
	if envName != "" && o.env.getenv != nil {
		if v := o.env.getenv(envName); v != "" {
			return v
		}
	}
	if fromContext != "" {
		return fromContext
	}
	if o.flags == nil {
		// Options built without register (bench): the fields are the values.
		return value
	}
	return def
}

// resolve works out the connection once; later calls return the same.
func (o *clientOptions) resolve() (connection, error) {
	if !o.resolved {
		o.resolved = true
		o.conn, o.err = o.resolveOnce()
	}
	return o.conn, o.err
}

func (o *clientOptions) resolveOnce() (connection, error) {
	var ctxt clusterContext
	if o.flags != nil && o.env.getenv != nil {
		c, err := selectContext(o.env, o.context)
		if err != nil {
			return connection{}, err
		}
		if c != nil {
			ctxt = *c
		}
	}
	var conn connection
	servers := o.pick("server", o.servers, serverEnv, ctxt.Servers, defaultServer)
	for _, s := range strings.Split(servers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			conn.servers = append(conn.servers, s)
		}
	}
	if len(conn.servers) == 0 {
		return connection{}, usagef("--server: at least one address is required")
	}
	if o.timeout <= 0 {
		return connection{}, usagef("--timeout must be positive, got %s", o.timeout)
	}
	if o.retries < 0 || o.retries > retriesMax {
		return connection{}, usagef("--retries %d: want 0 to %d", o.retries, retriesMax)
	}
	token, err := o.resolveToken(ctxt)
	if err != nil {
		return connection{}, err
	}
	conn.token = token
	ca := o.pick("ca", o.ca, caEnv, ctxt.CA, "")
	cert := o.pick("cert", o.cert, certEnv, ctxt.Cert, "")
	key := o.pick("cert-key", o.key, keyEnv, ctxt.Key, "")
	useTLS := o.tls || ctxt.TLS || ca != "" || cert != ""
	if useTLS {
		if conn.tls, err = clientTLS(ca, cert, key); err != nil {
			return connection{}, err
		}
	}
	conn.admin = ctxt.Admin
	return conn, nil
}

// resolveToken returns the credential: --token, --token-file, $HERALD_TOKEN,
// the context's token or token file, in that order.
func (o *clientOptions) resolveToken(ctxt clusterContext) (string, error) {
	flagToken := o.flags != nil && o.flags.Changed("token")
	flagFile := o.flags != nil && o.flags.Changed("token-file")
	if o.flags == nil {
		flagToken, flagFile = o.token != "", o.tokenFile != ""
	}
	if flagToken && flagFile {
		return "", usagef("--token and --token-file: give one")
	}
	switch {
	case flagToken:
		return strings.TrimSpace(o.token), nil
	case flagFile:
		return readToken(o.tokenFile)
	}
	if o.env.getenv != nil {
		if v := o.env.getenv(tokenEnv); v != "" {
			return strings.TrimSpace(v), nil
		}
	}
	if ctxt.TokenFile != "" {
		return readToken(ctxt.TokenFile)
	}
	return ctxt.Token, nil
}

// readToken reads a token file (its surrounding space trimmed).
func readToken(path string) (string, error) {
	data, err := readBounded(path, tokenBytesMax)
	if err != nil {
		return "", usagef("token file %s: %v", path, err)
	}
	t := strings.TrimSpace(string(data))
	if t == "" {
		return "", usagef("token file %s is empty", path)
	}
	return t, nil
}

// clientTLS builds the client's TLS configuration: the cluster CA (or the
// system's roots when caFile is empty) and an optional client certificate.
func clientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := readBounded(caFile, caBytesMax)
		if err != nil {
			return nil, usagef("--ca %s: %v", caFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usagef("--ca %s: no PEM certificate in it", caFile)
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, usagef("--cert and --cert-key go together")
	}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, usagef("--cert %s, --cert-key %s: %v", certFile, keyFile, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// serverList returns the resolved server addresses, after checking every
// connection flag.
func (o *clientOptions) serverList() ([]string, error) {
	c, err := o.resolve()
	if err != nil {
		return nil, err
	}
	return c.servers, nil
}

// connect opens a client; when no node answers the error is an
// *client.UnreachableError, which run prints as "no node answered at ...".
// SDK logs (retries, at DEBUG) are dropped; warnings go to stderr.
func (o *clientOptions) connect(ctx context.Context, stderr io.Writer) (*client.Client, error) {
	conn, err := o.resolve()
	if err != nil {
		return nil, err
	}
	retries := o.retries
	if retries == 0 {
		retries = -1 // the SDK's "none"; its 0 means the default
	}
	return client.New(ctx, client.Config{
		Servers:        conn.servers,
		DialTimeout:    o.timeout,
		RequestTimeout: o.timeout,
		MaxRetries:     retries,
		TLS:            conn.tls,
		Token:          conn.token,
		Logger:         slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
}

// httpScheme is the scheme of the nodes' public HTTP ports: https when
// the connection uses TLS (nodes with TLS serve their HTTP port over it).
func (c connection) httpScheme() string {
	if c.tls != nil {
		return "https"
	}
	return "http"
}

// httpClient returns a client for the nodes' HTTP ports (metrics), with
// the connection's TLS configuration.
func (c connection) httpClient(timeout time.Duration) *http.Client {
	tr := &http.Transport{DisableKeepAlives: true}
	if c.tls != nil {
		tr.TLSClientConfig = c.tls.Clone()
	}
	return &http.Client{Timeout: timeout, Transport: tr}
}

// adminAddrs returns the admin listeners to read metrics from: --admin
// when given, else the selected context's.
func (o *clientOptions) adminAddrs(flag string) ([]string, error) {
	if strings.TrimSpace(flag) == "" {
		conn, err := o.resolve()
		if err != nil {
			return nil, err
		}
		flag = conn.admin
	}
	return parseAdminAddrs(flag)
}
