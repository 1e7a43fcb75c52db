package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
)

// Named contexts: the connection settings of the clusters a user talks to,
// kept in one file, like `nats context` or a kubeconfig. A client verb
// takes each setting from its flag, else from its environment variable,
// else from the selected context (--context, $HERALD_CONTEXT, or the file's
// current one), else the default.
const (
	// configEnv overrides the file's path.
	configEnv = "HERALD_CONFIG"
	// contextEnv selects a context by name.
	contextEnv = "HERALD_CONTEXT"
	// configFileBytesMax bounds the file read: it holds a few contexts.
	configFileBytesMax = 1 << 20
	// contextsMax bounds the contexts of one file.
	contextsMax = 256
)

// contextNamePattern is what a context's name may be: it is typed on
// command lines and printed in lists.
var contextNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// clusterContext is one named context: how to reach a cluster and who to
// be there. Paths are stored as given (made absolute by `context add`).
type clusterContext struct {
	// Servers is the comma-separated seed addresses (host:port).
	Servers string `json:"servers,omitempty"`
	// Token is a signed credential (`herald token create`); TokenFile
	// names a file holding one instead (read at each use, so a rotated
	// token is picked up). At most one of them is set.
	Token     string `json:"token,omitempty"`
	TokenFile string `json:"token_file,omitempty"`
	// CA is the PEM file of the cluster CA; setting it turns TLS on.
	CA string `json:"ca,omitempty"`
	// Cert and Key are a client certificate and its key (mutual TLS).
	Cert string `json:"cert,omitempty"`
	Key  string `json:"key,omitempty"`
	// TLS turns TLS on without a CA file: the system's roots verify the
	// cluster.
	TLS bool `json:"tls,omitempty"`
	// Admin is the comma-separated admin addresses (pprof and the full
	// metrics, `herald serve --admin-addr`), for `herald top` and usage.
	Admin string `json:"admin,omitempty"`
}

// contextFile is the config file's content. Version 1; fields are only
// added.
type contextFile struct {
	Version  int                        `json:"version"`
	Current  string                     `json:"current,omitempty"`
	Contexts map[string]*clusterContext `json:"contexts"`
}

// configPath is the context file: $HERALD_CONFIG, else herald/config.json
// under the user's config directory ($XDG_CONFIG_HOME, else ~/.config).
func configPath(env environment) (string, error) {
	if p := env.getenv(configEnv); p != "" {
		return p, nil
	}
	if d := env.getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "herald", "config.json"), nil
	}
	if h := env.getenv("HOME"); h != "" {
		return filepath.Join(h, ".config", "herald", "config.json"), nil
	}
	return "", fmt.Errorf("no config file: set %s or HOME", configEnv)
}

// loadContexts reads the context file at path; a missing file is an empty
// one.
func loadContexts(path string) (*contextFile, error) {
	f := &contextFile{Version: 1, Contexts: map[string]*clusterContext{}}
	data, err := readBounded(path, configFileBytesMax)
	if errors.Is(err, fs.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if err := json.Unmarshal(data, f); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("config %s: version %d, this herald reads version 1", path, f.Version)
	}
	if f.Contexts == nil {
		f.Contexts = map[string]*clusterContext{}
	}
	for name, c := range f.Contexts {
		if c == nil {
			return nil, fmt.Errorf("config %s: context %q is empty", path, name)
		}
		if err := c.validate(); err != nil {
			return nil, fmt.Errorf("config %s: context %q: %w", path, name, err)
		}
	}
	return f, nil
}

// save writes the file atomically (a temporary file renamed over it),
// readable by its owner only: contexts may hold tokens.
func (f *contextFile) save(path string) error {
	if len(f.Contexts) > contextsMax {
		return fmt.Errorf("config %s: more than %d contexts", path, contextsMax)
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".config-*.json")
	if err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("config %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// names returns the contexts' names, sorted.
func (f *contextFile) names() []string {
	out := make([]string, 0, len(f.Contexts))
	for n := range f.Contexts {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// validate reports every problem with a context at once.
func (c *clusterContext) validate() error {
	var errs []error
	if c.Token != "" && c.TokenFile != "" {
		errs = append(errs, errors.New("both token and token_file are set; keep one"))
	}
	if (c.Cert == "") != (c.Key == "") {
		errs = append(errs, errors.New("a client certificate needs both cert and key"))
	}
	return errors.Join(errs...)
}

// selectContext returns the context a client verb uses: name (from
// --context) if set, else $HERALD_CONTEXT, else the file's current one;
// nil when none is selected. A name that is not in the file is an error.
func selectContext(env environment, name string) (*clusterContext, error) {
	if name == "" {
		name = env.getenv(contextEnv)
	}
	path, err := configPath(env)
	if err != nil {
		if name != "" {
			return nil, err
		}
		return nil, nil
	}
	f, err := loadContexts(path)
	if err != nil {
		return nil, err
	}
	if name == "" {
		name = f.Current
	}
	if name == "" {
		return nil, nil
	}
	c, ok := f.Contexts[name]
	if !ok {
		return nil, usagef("context %q is not in %s (herald context list)", name, path)
	}
	return c, nil
}

// readBounded reads a file of at most max bytes.
func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("more than the %d bytes this file may have", max)
	}
	return data, nil
}
