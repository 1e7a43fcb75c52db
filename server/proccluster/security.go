package proccluster

import (
	"crypto/tls"
	"path/filepath"

	"github.com/heraldlog/herald/server/certs"
)

// prepareSecurity makes what Config.TLSDir or ClusterSecretFile need
// (keeping what exists) and loads the clients' TLS configuration.
func (c *Cluster) prepareSecurity() error {
	switch {
	case c.cfg.TLSDir != "":
		ids := make([]string, len(c.cfg.Nodes))
		for i, n := range c.cfg.Nodes {
			ids[i] = n.ID
		}
		if err := certs.EnsureDev(c.cfg.TLSDir, ids); err != nil {
			return err
		}
		certFile, keyFile := certs.ClientFiles(c.cfg.TLSDir, "admin")
		conf, err := certs.ClientConfig(filepath.Join(c.cfg.TLSDir, certs.CACertFile), certFile, keyFile)
		if err != nil {
			return err
		}
		c.clientTLS = conf
	case c.cfg.ClusterSecretFile != "":
		return certs.EnsureSecret(c.cfg.ClusterSecretFile)
	}
	return nil
}

// securityArgs returns node n's serve flags for the configured security.
func (c *Cluster) securityArgs(n Node) []string {
	switch {
	case c.cfg.TLSDir != "":
		certFile, keyFile := certs.NodeFiles(c.cfg.TLSDir, n.ID)
		return []string{"--tls-cert", certFile, "--tls-key", keyFile, "--tls-ca", filepath.Join(c.cfg.TLSDir, certs.CACertFile)}
	case c.cfg.ClusterSecretFile != "":
		return []string{"--cluster-secret-file", c.cfg.ClusterSecretFile}
	default:
		return []string{"--insecure"}
	}
}

// ClientTLS returns the TLS configuration of a client of the cluster
// with Config.TLSDir (trusting its CA, presenting the client certificate
// "admin"), or nil without TLS. Callers must not change it (Clone it).
func (c *Cluster) ClientTLS() *tls.Config { return c.clientTLS }

// HTTPURL returns node i's HTTP base URL: https:// with TLS.
func (c *Cluster) HTTPURL(i int) string {
	if c.clientTLS != nil {
		return "https://" + c.cfg.Nodes[i].HTTPAddr
	}
	return "http://" + c.cfg.Nodes[i].HTTPAddr
}

// WebSocketURL returns node i's WebSocket gateway URL: wss:// with TLS.
func (c *Cluster) WebSocketURL(i int) string {
	if c.clientTLS != nil {
		return "wss://" + c.cfg.Nodes[i].HTTPAddr + "/v1/ws"
	}
	return "ws://" + c.cfg.Nodes[i].HTTPAddr + "/v1/ws"
}
