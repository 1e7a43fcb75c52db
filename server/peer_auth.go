package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	"github.com/heraldlog/herald/raft/raftpb"
	"github.com/heraldlog/herald/server/certs"
)

// peerSecretKey is the gRPC metadata a peer presents the cluster secret
// in, when the cluster runs without TLS (Config.ClusterSecretFile).
const peerSecretKey = "herald-peer-secret"

// clusterSecretBytesMin is the shortest cluster secret accepted: 32 bytes
// (`herald dev` writes 64 hex digits of 32 random bytes).
const clusterSecretBytesMin = 32

// peerRefusalLogInterval bounds the WARN lines of refused peer calls to
// one per interval (the count of those not logged goes with the next).
const peerRefusalLogInterval = 5 * time.Second

// The refusal reasons of herald_peer_auth_refused_total.
const (
	peerRefusedMissing   = "missing"    // no certificate, no secret
	peerRefusedBadSecret = "bad_secret" // a secret that is not the cluster's
	peerRefusedNotANode  = "not_a_node" // a verified certificate naming no node
)

// peerMode is how this node tells its peers from its clients.
type peerMode int

const (
	// peerModeOpen: no TLS, no secret. Every caller may use the Raft
	// transport and NodeInternal (in-process tests; `herald serve`
	// refuses it without --insecure).
	peerModeOpen peerMode = iota
	// peerModeSecret: a peer presents the cluster secret in metadata.
	peerModeSecret
	// peerModeTLS: a peer presents a client certificate from the cluster
	// CA that names a node.
	peerModeTLS
)

// peerOnlyPrefixes are the gRPC services served only to peers: the Raft
// transport and the node-internal service.
var peerOnlyPrefixes = []string{
	"/" + raftpb.RaftTransport_ServiceDesc.ServiceName + "/",
	"/" + heraldpb.NodeInternal_ServiceDesc.ServiceName + "/",
}

// isPeerOnly reports whether fullMethod belongs to a peer-only service.
func isPeerOnly(fullMethod string) bool {
	for _, p := range peerOnlyPrefixes {
		if strings.HasPrefix(fullMethod, p) {
			return true
		}
	}
	return false
}

// peerAuth establishes whether a request comes from a peer (peer
// identity on the one gRPC port, docs/architecture.md "Peer identity"),
// and gives this node's own links to its peers their identity. It is
// built once at start and read-only after, apart from its reloader (safe
// for concurrent use) and its log limiter (under its mutex).
type peerAuth struct {
	mode peerMode
	// proof is the cluster secret's digest peers send (secretProof),
	// computed once: every Raft call of a peer is checked against it.
	proof    []byte
	reloader *certs.Reloader
	logger   *slog.Logger
	refused  *prometheus.CounterVec

	logMu struct {
		sync.Mutex
		last       time.Time
		suppressed int
	}
}

// newPeerAuth reads what cfg names: the TLS files (a reloader) or the
// cluster secret file (read once, here).
func newPeerAuth(cfg *Config, logger *slog.Logger) (*peerAuth, error) {
	a := &peerAuth{
		logger: logger,
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_peer_auth_refused_total",
			Help: "Calls to the Raft transport or NodeInternal refused because the caller is not a peer, by reason (missing: no certificate or secret; bad_secret: a wrong cluster secret; not_a_node: a certificate from the cluster CA that names no node).",
		}, []string{"reason"}),
	}
	for _, r := range []string{peerRefusedMissing, peerRefusedBadSecret, peerRefusedNotANode} {
		a.refused.WithLabelValues(r)
	}
	switch {
	case cfg.TLS.Enabled():
		r, err := certs.NewReloader(certs.ReloaderOptions{CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile,
			CAFile: cfg.TLS.CAFile, Logger: logger.With("component", "tls")})
		if err != nil {
			return nil, fmt.Errorf("server: tls: %w", err)
		}
		if id, ok := certs.NodeIdentity(r.Certificate().Leaf); !ok || id != cfg.NodeID {
			return nil, fmt.Errorf("server: tls: %s names node %q, not this node %q (issue it with `herald certs node --id %s`)",
				cfg.TLS.CertFile, id, cfg.NodeID, cfg.NodeID)
		}
		a.mode, a.reloader = peerModeTLS, r
		if cfg.ClusterSecretFile != "" {
			logger.Info("TLS is on: peers are known by their certificates; the cluster secret file is not used",
				"cluster_secret_file", cfg.ClusterSecretFile)
		}
	case cfg.ClusterSecretFile != "":
		secret, err := ReadClusterSecret(cfg.ClusterSecretFile)
		if err != nil {
			return nil, err
		}
		a.mode, a.proof = peerModeSecret, []byte(secretProof(secret))
	default:
		logger.Warn("PEER RPCS ARE OPEN: neither TLS nor a cluster secret is configured, so any program that reaches the gRPC port can call the Raft transport and NodeInternal (move leaders, append entries); set TLS files or a cluster secret file")
	}
	return a, nil
}

// ReadClusterSecret reads a cluster secret file: its content without
// surrounding white space, at least 32 bytes.
func ReadClusterSecret(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("server: cluster secret: %w", err)
	}
	secret := bytes.TrimSpace(data)
	if len(secret) < clusterSecretBytesMin {
		return nil, fmt.Errorf("server: cluster secret in %s is %d bytes; at least %d are required", path, len(secret), clusterSecretBytesMin)
	}
	return secret, nil
}

// collectors returns peerAuth's metrics.
func (a *peerAuth) collectors() []prometheus.Collector { return []prometheus.Collector{a.refused} }

// identify returns the peer a request comes from (ok), or, when it comes
// from no peer, the refusal a peer-only method answers (a typed wire
// error). In open mode every caller is let through as a peer of unknown
// id (""), as before peer identity existed.
func (a *peerAuth) identify(ctx context.Context) (nodeID string, ok bool, refusal error, reason string) {
	switch a.mode {
	case peerModeTLS:
		p, _ := peer.FromContext(ctx)
		var info credentials.TLSInfo
		if p != nil {
			info, _ = p.AuthInfo.(credentials.TLSInfo)
		}
		if len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
			return "", false, wire.Unauthenticated("missing", "peer methods need a node certificate from the cluster CA"), peerRefusedMissing
		}
		id, isNode := certs.NodeIdentity(info.State.VerifiedChains[0][0])
		if !isNode {
			return "", false, wire.PermissionDenied("peer", "", "", "this client certificate names no node; peer methods are for nodes"), peerRefusedNotANode
		}
		return id, true, nil, ""
	case peerModeSecret:
		md, _ := metadata.FromIncomingContext(ctx)
		got := md.Get(peerSecretKey)
		if len(got) == 0 {
			return "", false, wire.Unauthenticated("missing", "peer methods need the cluster secret"), peerRefusedMissing
		}
		if subtle.ConstantTimeCompare([]byte(got[0]), a.proof) != 1 {
			return "", false, wire.Unauthenticated("signature", "the cluster secret presented is not this cluster's"), peerRefusedBadSecret
		}
		// The secret does not say which node presented it.
		return "", true, nil, ""
	default:
		return "", true, nil, ""
	}
}

// check runs identify for one call: ctx gains the peer when the caller is
// one; a peer-only method called by a non-peer gets the refusal as a gRPC
// status, counted and logged.
func (a *peerAuth) check(ctx context.Context, fullMethod string) (context.Context, error) {
	id, ok, refusal, reason := a.identify(ctx)
	if ok {
		if a.mode == peerModeOpen {
			// Open mode: peer methods stay open, but no caller is vouched for.
			return ctx, nil
		}
		return withPeer(ctx, id), nil
	}
	if !isPeerOnly(fullMethod) {
		return ctx, nil
	}
	a.refused.WithLabelValues(reason).Inc()
	a.logRefusal(ctx, fullMethod, reason)
	return ctx, wire.Status(refusal).Err()
}

// logRefusal logs a refused peer call at WARN, at most once per
// peerRefusalLogInterval (with the count of refusals not logged since).
func (a *peerAuth) logRefusal(ctx context.Context, fullMethod, reason string) {
	now := time.Now()
	a.logMu.Lock()
	if now.Sub(a.logMu.last) < peerRefusalLogInterval {
		a.logMu.suppressed++
		a.logMu.Unlock()
		return
	}
	suppressed := a.logMu.suppressed
	a.logMu.last, a.logMu.suppressed = now, 0
	a.logMu.Unlock()
	remote := "unknown"
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		remote = p.Addr.String()
	}
	a.logger.Warn("refused a peer call from a caller that is not a peer",
		"method", fullMethod, "reason", reason, "remote", remote, "refused_since_last_line", suppressed)
}

// unary is the first unary interceptor of the node's gRPC server.
func (a *peerAuth) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := a.check(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// stream is the first stream interceptor of the node's gRPC server.
func (a *peerAuth) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := a.check(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return handler(srv, &peerStream{ServerStream: ss, ctx: ctx})
}

// peerStream is a server stream whose context carries the peer.
type peerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *peerStream) Context() context.Context { return s.ctx }

// serverOptions returns the gRPC server's credentials: TLS with the
// reloader's server configuration, or nothing (plaintext).
func (a *peerAuth) serverOptions() []grpc.ServerOption {
	if a.mode != peerModeTLS {
		return nil
	}
	return []grpc.ServerOption{grpc.Creds(credentials.NewTLS(a.reloader.ServerConfig("h2")))}
}

// dialOptions returns what every link this node opens to a peer adds to
// its dial options so that it is known as a peer: mutual TLS with the
// node certificate, or the cluster secret on every call.
func (a *peerAuth) dialOptions() []grpc.DialOption {
	switch a.mode {
	case peerModeTLS:
		return []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(a.reloader.PeerClientConfig()))}
	case peerModeSecret:
		return []grpc.DialOption{grpc.WithPerRPCCredentials(secretCredentials{secret: string(a.proof)})}
	default:
		return nil
	}
}

// httpTLS returns the TLS configuration of the HTTP server (https, wss),
// or nil without TLS.
func (a *peerAuth) httpTLS() *tls.Config {
	if a.mode != peerModeTLS {
		return nil
	}
	return a.reloader.ServerConfig("http/1.1")
}

// secretProof is what a peer sends for the cluster secret: the hex of a
// SHA-256 of it (domain-separated). Metadata values must be printable
// ASCII, and a secret file may hold any bytes; the proof is as good as the
// secret to whoever reads it off a plaintext link, which is why secret
// mode is for networks nobody else can watch (docs/security.md).
func secretProof(secret []byte) string {
	h := sha256.New()
	h.Write([]byte("herald peer secret v1\x00"))
	h.Write(secret)
	return hex.EncodeToString(h.Sum(nil))
}

// secretCredentials sends the cluster secret's proof with every call.
type secretCredentials struct{ secret string }

var _ credentials.PerRPCCredentials = secretCredentials{}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (s secretCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{peerSecretKey: s.secret}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: the
// secret is for clusters without TLS, so it goes over plaintext links
// (docs/security.md says what that protects against and what not).
func (secretCredentials) RequireTransportSecurity() bool { return false }
