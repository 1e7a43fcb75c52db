package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"
)

// newContextCommand manages the named contexts (contexts.go).
func newContextCommand(env environment) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "context",
		Short: "Manage named contexts: saved connection settings (servers, token, TLS)",
		Long: `A context saves how to reach a cluster and who to be there, so that client
verbs need no connection flags. The file is $HERALD_CONFIG, else
$XDG_CONFIG_HOME/herald/config.json, else ~/.config/herald/config.json
(written 0600: it may hold tokens).

A client verb takes each setting from its flag, else from its environment
variable (HERALD_SERVER, HERALD_TOKEN, HERALD_CA, HERALD_CERT, HERALD_CERT_KEY),
else from the context named by --context or $HERALD_CONTEXT, else from the
file's current context (herald context use).`,
	}
	cmd.AddCommand(newContextAddCommand(env), newContextUseCommand(env), newContextListCommand(env),
		newContextShowCommand(env), newContextRemoveCommand(env))
	return cmd
}

func newContextAddCommand(env environment) *cobra.Command {
	var (
		c      clusterContext
		use    bool
		update bool
	)
	cmd := &cobra.Command{
		Use:   "add NAME",
		Short: "Save a context (--update replaces an existing one)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if !contextNamePattern.MatchString(name) {
				return usagef("context name %q: letters, digits, '.', '_' and '-', at most 64, starting with a letter or digit", name)
			}
			if err := c.validate(); err != nil {
				return usageError{err}
			}
			// Paths are kept absolute: the context is used from anywhere.
			for _, p := range []*string{&c.TokenFile, &c.CA, &c.Cert, &c.Key} {
				if *p == "" {
					continue
				}
				abs, err := filepath.Abs(*p)
				if err != nil {
					return err
				}
				*p = abs
			}
			path, f, err := openContexts(env)
			if err != nil {
				return err
			}
			if _, ok := f.Contexts[name]; ok && !update {
				return usagef("context %q exists in %s; give --update to replace it", name, path)
			}
			f.Contexts[name] = &c
			if use || f.Current == "" {
				f.Current = name
			}
			if err := f.save(path); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "context %s saved in %s", name, path)
			if f.Current == name {
				fmt.Fprint(cmd.OutOrStdout(), " (current)")
			}
			fmt.Fprintln(cmd.OutOrStdout())
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&c.Servers, "server", "", "comma-separated node addresses (host:port)")
	fl.StringVar(&c.Token, "token", "", "credential (herald token create); stored in the file")
	fl.StringVar(&c.TokenFile, "token-file", "", "file holding the credential, read at each use")
	fl.StringVar(&c.CA, "ca", "", "PEM file of the cluster CA (turns TLS on)")
	fl.StringVar(&c.Cert, "cert", "", "client certificate (PEM) for mutual TLS")
	fl.StringVar(&c.Key, "cert-key", "", "key of --cert (PEM)")
	fl.BoolVar(&c.TLS, "tls", false, "TLS with the system's roots (when there is no --ca)")
	fl.StringVar(&c.Admin, "admin", "", "comma-separated admin addresses (herald serve --admin-addr), for herald top")
	fl.BoolVar(&use, "use", false, "make it the current context")
	fl.BoolVar(&update, "update", false, "replace a context of that name")
	return cmd
}

func newContextUseCommand(env environment) *cobra.Command {
	return &cobra.Command{
		Use:   "use NAME",
		Short: "Make a context the current one",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, f, err := openContexts(env)
			if err != nil {
				return err
			}
			if _, ok := f.Contexts[args[0]]; !ok {
				return usagef("context %q is not in %s", args[0], path)
			}
			f.Current = args[0]
			if err := f.save(path); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "current context: %s\n", args[0])
			return nil
		},
	}
}

func newContextListCommand(env environment) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the contexts (* marks the current one)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, f, err := openContexts(env)
			if err != nil {
				return err
			}
			tw := newTable(cmd.OutOrStdout())
			fmt.Fprintln(tw, "\tNAME\tSERVERS\tTLS\tCREDENTIAL")
			for _, n := range f.names() {
				c := f.Contexts[n]
				mark := ""
				if n == f.Current {
					mark = "*"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", mark, n, orDash(c.Servers), tlsSummary(c), credentialSummary(c))
			}
			return tw.Flush()
		},
	}
}

func newContextShowCommand(env environment) *cobra.Command {
	return &cobra.Command{
		Use:   "show [NAME]",
		Short: "Print a context as JSON (the current one by default); a stored token is shown redacted",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, f, err := openContexts(env)
			if err != nil {
				return err
			}
			name := f.Current
			if len(args) == 1 {
				name = args[0]
			}
			c, ok := f.Contexts[name]
			if !ok {
				return usagef("context %q is not in %s", name, path)
			}
			shown := *c
			if shown.Token != "" {
				shown.Token = redactToken(shown.Token)
			}
			return newJSONWriter(cmd.OutOrStdout()).write(struct {
				Name string `json:"name"`
				clusterContext
			}{name, shown})
		},
	}
}

func newContextRemoveCommand(env environment) *cobra.Command {
	return &cobra.Command{
		Use:   "remove NAME",
		Short: "Delete a context",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, f, err := openContexts(env)
			if err != nil {
				return err
			}
			if _, ok := f.Contexts[args[0]]; !ok {
				return usagef("context %q is not in %s", args[0], path)
			}
			delete(f.Contexts, args[0])
			if f.Current == args[0] {
				f.Current = ""
			}
			if err := f.save(path); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "context %s removed\n", args[0])
			return nil
		},
	}
}

// openContexts reads the context file (configPath), returning its path.
func openContexts(env environment) (string, *contextFile, error) {
	path, err := configPath(env)
	if err != nil {
		return "", nil, err
	}
	f, err := loadContexts(path)
	return path, f, err
}

func tlsSummary(c *clusterContext) string {
	switch {
	case c.Cert != "":
		return "mutual"
	case c.CA != "" || c.TLS:
		return "yes"
	}
	return "no"
}

func credentialSummary(c *clusterContext) string {
	switch {
	case c.Token != "":
		return "token"
	case c.TokenFile != "":
		return "token file"
	}
	return "-"
}

// redactToken keeps a token's first and last four characters, so that a
// user can tell tokens apart without the output being a credential.
func redactToken(t string) string {
	if len(t) <= 16 {
		return "…"
	}
	return t[:4] + "…" + t[len(t)-4:]
}
