package proccluster

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
)

// Node is where one node lives. It is fixed once the Cluster is made.
type Node struct {
	ID       string
	GRPCAddr string
	HTTPAddr string
	// DataDir is the node's --data directory.
	DataDir string
	// LogPath receives the process's stdout and stderr, appended across
	// starts. When it lies inside DataDir, Wipe keeps it.
	LogPath string
	// AdminAddr, when set, is the node's admin listener (--admin-addr:
	// pprof and the full /metrics); empty: none.
	AdminAddr string
}

// Layout places n nodes n1..nN under dir on free loopback ports: node i's
// data in dir/n<i>, its log in dir/n<i>.log (outside the data directory,
// so that a wipe keeps it). It creates nothing.
func Layout(dir string, n int) ([]Node, error) {
	addrs, err := FreeAddrs(2 * n)
	if err != nil {
		return nil, err
	}
	nodes := make([]Node, n)
	for i := range nodes {
		id := fmt.Sprintf("n%d", i+1)
		nodes[i] = Node{
			ID: id, GRPCAddr: addrs[i], HTTPAddr: addrs[n+i],
			DataDir: filepath.Join(dir, id), LogPath: filepath.Join(dir, id+".log"),
		}
	}
	return nodes, nil
}

// WithAdminAddrs returns a copy of nodes in which each node without an
// admin address has one, on a free loopback port.
func WithAdminAddrs(nodes []Node) ([]Node, error) {
	// The layout's own ports were free when chosen and are closed now:
	// the kernel may hand one out again, so those are skipped (a node
	// whose admin address is another's HTTP address cannot start).
	taken := map[string]bool{}
	for _, n := range nodes {
		taken[n.GRPCAddr], taken[n.HTTPAddr], taken[n.AdminAddr] = true, true, true
	}
	addrs, err := FreeAddrs(len(nodes) + len(taken))
	if err != nil {
		return nil, err
	}
	out := append([]Node(nil), nodes...)
	for i := range out {
		if out[i].AdminAddr != "" {
			continue
		}
		for len(addrs) > 0 && taken[addrs[0]] {
			addrs = addrs[1:]
		}
		if len(addrs) == 0 {
			return nil, fmt.Errorf("proccluster: no free admin port apart from the layout's")
		}
		out[i].AdminAddr, addrs = addrs[0], addrs[1:]
	}
	return out, nil
}

// Peers renders the --peers flag naming every node: "n1=addr,n2=addr".
func Peers(nodes []Node) string {
	parts := make([]string, len(nodes))
	for i, n := range nodes {
		parts[i] = n.ID + "=" + n.GRPCAddr
	}
	return strings.Join(parts, ",")
}

// FreeAddr returns a 127.0.0.1 address nothing listens on just now.
func FreeAddr() (string, error) {
	addrs, err := FreeAddrs(1)
	if err != nil {
		return "", err
	}
	return addrs[0], nil
}

// FreeAddrs returns n distinct 127.0.0.1 addresses free just now. They are
// held open together while chosen, so none repeats; another process may
// still take one before a node listens on it (the node then exits, and
// AwaitReady says so).
func FreeAddrs(n int) ([]string, error) {
	addrs := make([]string, 0, n)
	listeners := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("proccluster: finding a free port: %w", err)
		}
		listeners = append(listeners, l)
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}
