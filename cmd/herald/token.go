package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldlog/herald/server/auth"
)

// The files `herald token keygen` writes in its directory.
const (
	signingKeyFile = "signing.key"
	signingPubFile = "signing.pub"
)

// newTokenCommand groups the credential verbs: keygen, create, inspect.
// They work on files and tokens only; none connects to a node.
func newTokenCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Make signing keys and tenant-scoped tokens (docs/operations.md, \"Credentials\")",
	}
	cmd.AddCommand(newTokenKeygenCommand(), newTokenCreateCommand(), newTokenInspectCommand())
	return cmd
}

func newTokenKeygenCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Make an Ed25519 signing key (signing.key, 0600) and its public key (signing.pub) in --dir",
		Long: `Make an Ed25519 signing key pair in --dir: signing.key (PKCS#8, mode
0600; keep it off the nodes) signs tokens (herald token create);
signing.pub (PKIX) is what every node checks them with (herald serve
--auth-keys). Existing files are never overwritten.

To rotate, make a new pair in another directory, append its signing.pub
to the nodes' keys file (they read it again when it changes), sign new
tokens with the new key, and remove the old public key once the old
tokens have expired.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return usagef("--dir is required")
			}
			key, err := auth.GenerateKey()
			if err != nil {
				return err
			}
			priv, err := auth.MarshalPrivateKey(key)
			if err != nil {
				return err
			}
			pub, err := auth.MarshalPublicKey(key.Public().(ed25519.PublicKey))
			if err != nil {
				return err
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			keyPath, pubPath := filepath.Join(dir, signingKeyFile), filepath.Join(dir, signingPubFile)
			for _, p := range []string{keyPath, pubPath} {
				if _, err := os.Stat(p); err == nil {
					return fmt.Errorf("%s exists: not overwritten (choose another --dir)", p)
				}
			}
			if err := writeNew(keyPath, priv, 0o600); err != nil {
				return err
			}
			if err := writeNew(pubPath, pub, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "signing key %s\npublic key  %s (key id %s)\n",
				keyPath, pubPath, auth.KeyID(key.Public().(ed25519.PublicKey)))
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory for signing.key and signing.pub (required)")
	return cmd
}

// writeNew writes data to a file that must not exist yet.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func newTokenCreateCommand() *cobra.Command {
	var (
		keyFile, tenant, actions, topics, subject string
		ttl                                       time.Duration
		admin                                     bool
	)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Sign a token for a tenant (or * for every tenant) and print it",
		Long: `Sign a token with --key and print it. It allows --actions (produce,
consume, groups) on --topics (exact names, or prefixes ending in *; empty:
every topic) for --tenant (a tenant id, or * for a service token over every
tenant) until --ttl has passed. --admin allows everything (the registry,
group administration, every tenant). Consumer groups read every tenant's
events of a topic: they need --tenant '*'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keyFile == "" || tenant == "" {
				return usagef("--key and --tenant are required")
			}
			if ttl <= 0 {
				return usagef("--ttl must be positive, got %s", ttl)
			}
			c := auth.Claims{Subject: subject, Issuer: auth.Issuer, Tenant: tenant, Actions: splitList(actions), Topics: splitList(topics)}
			if admin {
				c.Actions = append(c.Actions, auth.ActionAdmin)
			}
			if c.Subject == "" {
				c.Subject = "tenant:" + tenant
			}
			now := time.Now()
			c.IssuedAt, c.ExpiresAt = now.Unix(), now.Add(ttl).Unix()
			id := make([]byte, 8)
			if _, err := rand.Read(id); err != nil {
				return err
			}
			c.ID = hex.EncodeToString(id)
			if err := c.Check(); err != nil {
				return usageError{err}
			}
			data, err := os.ReadFile(keyFile)
			if err != nil {
				return err
			}
			key, err := auth.ParsePrivateKey(data)
			if err != nil {
				return err
			}
			tok, err := auth.Sign(key, c)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&keyFile, "key", "", "signing key file (herald token keygen's signing.key) (required)")
	f.StringVar(&tenant, "tenant", "", "tenant id, or * for every tenant (required)")
	f.StringVar(&actions, "actions", "", "allowed actions: produce,consume,groups")
	f.StringVar(&topics, "topics", "", "allowed topics: names or prefixes ending in * (empty: every topic)")
	f.DurationVar(&ttl, "ttl", time.Hour, "how long the token is valid")
	f.BoolVar(&admin, "admin", false, "allow everything (registry, groups, every tenant)")
	f.StringVar(&subject, "subject", "", "who holds the token, for the nodes' logs (default tenant:<tenant>)")
	return cmd
}

func newTokenInspectCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect TOKEN",
		Short: "Print a token's claims as JSON, without verifying its signature",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := auth.ParseUnverified(strings.TrimSpace(args[0]))
			if err != nil {
				var ae *auth.Error
				if errors.As(err, &ae) {
					return usageError{err}
				}
				return err
			}
			out := struct {
				Verified bool         `json:"verified"`
				Claims   *auth.Claims `json:"claims"`
				Expires  string       `json:"expires"`
				Expired  bool         `json:"expired"`
			}{Claims: c, Expires: c.Expiry().UTC().Format(time.RFC3339), Expired: time.Now().After(c.Expiry())}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(&out)
		},
	}
}
