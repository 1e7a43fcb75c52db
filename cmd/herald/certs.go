package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/heraldlog/herald/server/certs"
)

// newCertsCommand makes a development CA and the certificates of nodes
// and clients (server/certs).
func newCertsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Make a cluster CA and node and client certificates",
		Long: `Make the TLS files of a cluster in one directory (--dir):

  ca.crt, ca.key                  the cluster CA (ECDSA P-256)
  node-<id>.crt, node-<id>.key    a node: serve --tls-cert/--tls-key
  client-<name>.crt, .key         a client certificate

Keys are written 0600; an existing CA key is never overwritten. Every node
gets --tls-ca ca.crt. Node certificates name the node
(spiffe://herald/node/<id>), which is what makes it a peer, and its hosts
(default 127.0.0.1, ::1, localhost). Issue a node's certificate again to
rotate it: running nodes read the new files within a second.`,
		Args: cobra.NoArgs,
		RunE: runGroup,
	}
	var dir string
	cmd.PersistentFlags().StringVar(&dir, "dir", "", "directory of the CA and certificates (required)")
	requireDir := func() error {
		if dir == "" {
			return usagef("--dir is required")
		}
		return nil
	}

	ca := &cobra.Command{
		Use:   "ca",
		Short: "Make a new cluster CA (refuses to replace an existing one)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireDir(); err != nil {
				return err
			}
			if _, err := certs.WriteCA(dir); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ca %s\n", filepath.Join(dir, certs.CACertFile))
			return nil
		},
	}

	var id, hosts string
	node := &cobra.Command{
		Use:   "node",
		Short: "Issue a node's certificate with the CA of --dir",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireDir(); err != nil {
				return err
			}
			if id == "" {
				return usagef("--id is required")
			}
			var hostList []string
			for _, h := range strings.Split(hosts, ",") {
				if h = strings.TrimSpace(h); h != "" {
					hostList = append(hostList, h)
				}
			}
			certFile, keyFile, err := certs.WriteNode(dir, id, hostList)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "node %s cert=%s key=%s\n", id, certFile, keyFile)
			return nil
		},
	}
	node.Flags().StringVar(&id, "id", "", "node id, as serve --id (required)")
	node.Flags().StringVar(&hosts, "hosts", "", "comma-separated DNS names and IP addresses the node is reached at (default 127.0.0.1,::1,localhost)")

	var name string
	client := &cobra.Command{
		Use:   "client",
		Short: "Issue a client certificate with the CA of --dir",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireDir(); err != nil {
				return err
			}
			if name == "" {
				return usagef("--name is required")
			}
			certFile, keyFile, err := certs.WriteClient(dir, name)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "client %s cert=%s key=%s\n", name, certFile, keyFile)
			return nil
		},
	}
	client.Flags().StringVar(&name, "name", "", "the client's name (required)")

	var nodes int
	dev := &cobra.Command{
		Use:   "dev",
		Short: "Make a new CA, certificates for nodes n1..nN and a client certificate \"admin\"",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireDir(); err != nil {
				return err
			}
			if nodes < 1 || nodes > devNodesMax {
				return usagef("--nodes %d: want 1 to %d", nodes, devNodesMax)
			}
			if _, err := certs.WriteCA(dir); err != nil {
				return err
			}
			ids := make([]string, nodes)
			for i := range ids {
				ids[i] = fmt.Sprintf("n%d", i+1)
			}
			if err := certs.EnsureDev(dir, ids); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ca %s\n", filepath.Join(dir, certs.CACertFile))
			for _, id := range ids {
				certFile, keyFile := certs.NodeFiles(dir, id)
				fmt.Fprintf(cmd.OutOrStdout(), "node %s cert=%s key=%s\n", id, certFile, keyFile)
			}
			certFile, keyFile := certs.ClientFiles(dir, "admin")
			fmt.Fprintf(cmd.OutOrStdout(), "client admin cert=%s key=%s\n", certFile, keyFile)
			return nil
		},
	}
	dev.Flags().IntVar(&nodes, "nodes", 3, "number of nodes")

	cmd.AddCommand(ca, node, client, dev)
	return cmd
}
