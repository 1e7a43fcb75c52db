package jepsen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/heraldlog/herald/client"
)

// Nemesis names, as given to --nemesis.
const (
	NemesisKill      = "kill"
	NemesisPause     = "pause"
	NemesisPartition = "partition"
	NemesisSlow      = "slow"
	NemesisTransfer  = "transfer"
	// NemesisCorrupt kills one node and damages its storage while it is
	// down. Its Pebble log: bits flipped in its write-ahead logs ("wal"), or
	// the marker the state machine leaves when it finds damage while
	// applying ("marked"); the node must not serve the damage and must
	// rebuild from Raft. Its Raft log: bits flipped in ("raft-flip"), or the
	// tail cut off ("raft-truncate"), the raft.db of one or more of its
	// groups, the controller's included; the node must find the damage and
	// rejoin those groups from its peers (see docs/fault-injection.md).
	// "raft-flip-stopped" flips bits after a clean stop (SIGTERM) instead of
	// kill -9: a group closed cleanly is opened without its full check when
	// its files are unchanged (raft/clean_shutdown.go), and the damage must
	// still be found.
	NemesisCorrupt = "corrupt"
	// NemesisMembership kills one node, deletes its whole data directory
	// and, at the end of the window, restarts it with --rejoin (a replaced
	// disk): the node must rejoin the controller and every partition group
	// from its peers, as a non-voter until caught up, never bootstrapping
	// an empty log. Like raft corruption it is refused unless every
	// replica of every group is a running voter.
	NemesisMembership = "membership"
	// NemesisRestart restarts nodes cleanly (SIGTERM, wait for exit):
	// "all" stops every node, then starts every node at the end of the
	// window (a whole-cluster restart, which replays the registry from
	// disk); "rolling" stops and restarts one node at a time, waiting for
	// each to serve before the next.
	NemesisRestart = "restart"
)

// Nemeses lists every nemesis Run knows.
var Nemeses = []string{NemesisKill, NemesisPause, NemesisPartition, NemesisSlow, NemesisTransfer, NemesisCorrupt, NemesisMembership, NemesisRestart}

// ErrUnknownNemesis is returned for a nemesis name not in Nemeses.
var ErrUnknownNemesis = errors.New("jepsen: unknown nemesis")

// ParseNemeses parses "kill,pause,partition"; "" and "none" mean none.
func ParseNemeses(s string) ([]string, error) {
	var out []string
	if s = strings.TrimSpace(s); s == "" || s == "none" {
		return nil, nil
	}
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(Nemeses, name) {
			return nil, fmt.Errorf("%w %q (want %s)", ErrUnknownNemesis, name, strings.Join(Nemeses, ","))
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out, nil
}

// Fault is one planned fault window. The variant and the random picks
// (Nodes, Pick) are fixed by the seed; which node leads a partition when
// the fault starts is decided by the cluster at that time.
type Fault struct {
	// At is when the fault starts, from the start of the run; For is how
	// long it lasts before it is healed.
	At, For time.Duration
	// Kind is the nemesis; Variant says which fault of it:
	// kill: "one", "majority"; pause: "one", "leader";
	// partition: "leader", "halves", "bridge", "one-way";
	// slow: "all"; transfer: "leader"; corrupt: "wal", "marked",
	// "raft-flip", "raft-flip-stopped", "raft-truncate"; membership: "wipe".
	Kind, Variant string
	// Nodes are the node indexes the variant picked (a random node, the
	// minority side, the bridge ...); for leader variants, filled in at
	// run time.
	Nodes []int
	// Pick is a random number for choices made at run time (which
	// partition's leader).
	Pick int
	// Delay is the link latency of a slow fault.
	Delay time.Duration
}

// Schedule plans the faults of a run of length d over n nodes with the
// given nemeses, from seed alone: quiet, fault, heal, repeat. The same
// arguments give the same schedule.
func Schedule(seed uint64, n int, nemeses []string, d time.Duration) []Fault {
	if len(nemeses) == 0 {
		return nil
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	between := func(lo, hi time.Duration) time.Duration {
		return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
	}
	var out []Fault
	at := between(time.Second, 3*time.Second)
	for {
		f := Fault{At: at, For: between(2*time.Second, 5*time.Second), Kind: nemeses[rng.IntN(len(nemeses))], Pick: rng.IntN(1 << 30)}
		perm := rng.Perm(n)
		switch f.Kind {
		case NemesisKill:
			if rng.IntN(3) == 0 {
				f.Variant, f.Nodes = "majority", perm[:n/2+1]
			} else {
				f.Variant, f.Nodes = "one", perm[:1]
			}
		case NemesisPause:
			if rng.IntN(2) == 0 {
				f.Variant = "leader"
			} else {
				f.Variant, f.Nodes = "one", perm[:1]
			}
		case NemesisPartition:
			switch rng.IntN(4) {
			case 0:
				f.Variant = "leader"
			case 1:
				f.Variant, f.Nodes = "halves", perm[:(n-1)/2] // the minority side
			case 2:
				f.Variant, f.Nodes = "bridge", perm // perm[0] bridges the two halves
			default:
				f.Variant, f.Nodes = "one-way", perm[:2] // cut Nodes[0] -> Nodes[1]
			}
		case NemesisSlow:
			f.Variant, f.Delay = "all", between(20*time.Millisecond, 200*time.Millisecond)
		case NemesisTransfer:
			// No leadership-transfer API: emulate by isolating a leader for
			// a little over an election timeout, then healing.
			f.Variant, f.For = "leader", between(1500*time.Millisecond, 2500*time.Millisecond)
		case NemesisCorrupt:
			f.Nodes = perm[:1]
			f.Variant = []string{"wal", "marked", "raft-flip", "raft-truncate", "raft-flip-stopped"}[rng.IntN(5)]
		case NemesisMembership:
			f.Variant, f.Nodes = "wipe", perm[:1]
		case NemesisRestart:
			if rng.IntN(2) == 0 {
				f.Variant, f.Nodes = "all", perm
			} else {
				f.Variant, f.Nodes = "rolling", perm
			}
		}
		if f.At+f.For > d {
			return out
		}
		out = append(out, f)
		at = f.At + f.For + between(2*time.Second, 4*time.Second)
	}
}

// String describes the planned fault.
func (f Fault) String() string {
	s := f.Kind + ":" + f.Variant
	if f.Delay > 0 {
		s += fmt.Sprintf(" delay=%s", f.Delay)
	}
	return s
}

// nemesis applies faults to a cluster and records them.
type nemesis struct {
	cluster *Cluster
	rec     *Recorder
	topic   string
}

// run applies the schedule, each fault at its time from start, until done
// or ctx ends; it heals everything before returning. It returns the number
// of faults injected.
func (n *nemesis) run(ctx context.Context, start time.Time, faults []Fault) int {
	injected := 0
	defer func() { _ = n.cluster.HealAll() }()
	for _, f := range faults {
		if !sleepUntil(ctx, start.Add(f.At)) {
			return injected
		}
		begin := n.rec.Now()
		targets, heal, err := n.inject(ctx, f)
		op := Op{Type: TypeInfo, F: FFault, Process: -1, Time: begin, Fault: f.String(), Targets: targets}
		if err != nil {
			op.Error = err.Error()
		}
		if err == nil {
			injected++
			sleepUntil(ctx, start.Add(f.At+f.For))
			if herr := heal(); herr != nil {
				op.Error = "heal: " + herr.Error()
			}
		}
		op.End = n.rec.Now()
		n.rec.Record(op)
	}
	return injected
}

// sleepUntil waits until t or ctx ends; false when ctx ended.
func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// inject starts fault f and returns the targets it hit and how to heal it.
func (n *nemesis) inject(ctx context.Context, f Fault) (string, func() error, error) {
	c := n.cluster
	all := make([]int, len(c.Nodes))
	for i := range all {
		all[i] = i
	}
	names := func(idx []int) string {
		s := make([]string, len(idx))
		for k, i := range idx {
			s[k] = c.Nodes[i].ID
		}
		return strings.Join(s, ",")
	}
	others := func(idx []int) []int {
		var o []int
		for _, i := range all {
			if !slices.Contains(idx, i) {
				o = append(o, i)
			}
		}
		return o
	}
	leader := func() (int, string, error) {
		i, p, err := n.leaderOf(ctx, f.Pick)
		return i, fmt.Sprintf("%s (leader of partition %d)", c.Nodes[max(i, 0)].ID, p), err
	}
	switch f.Kind + ":" + f.Variant {
	case "kill:one", "kill:majority":
		for _, i := range f.Nodes {
			_ = c.Kill(i)
		}
		return names(f.Nodes), func() error {
			var errs []error
			for _, i := range f.Nodes {
				errs = append(errs, c.Start(i))
			}
			return errors.Join(errs...)
		}, nil
	case "pause:one", "pause:leader":
		target := f.Nodes
		desc := ""
		if f.Variant == "leader" {
			i, d, err := leader()
			if err != nil {
				return "", nil, err
			}
			target, desc = []int{i}, d
		} else {
			desc = names(target)
		}
		if err := c.Pause(target[0]); err != nil {
			return desc, nil, err
		}
		return desc, func() error { return c.Resume(target[0]) }, nil
	case "partition:leader", "transfer:leader":
		i, desc, err := leader()
		if err != nil {
			return "", nil, err
		}
		c.Isolate([]int{i}, others([]int{i}))
		return desc + " | rest", func() error { c.HealLinks(); return nil }, nil
	case "partition:halves":
		c.Isolate(f.Nodes, others(f.Nodes))
		return names(f.Nodes) + " | " + names(others(f.Nodes)), func() error { c.HealLinks(); return nil }, nil
	case "partition:bridge":
		bridge, rest := f.Nodes[0], f.Nodes[1:]
		a, b := rest[:len(rest)/2], rest[len(rest)/2:]
		c.Isolate(a, b)
		return fmt.Sprintf("%s | %s | %s (bridge %s)", names(a), names([]int{bridge}), names(b), c.Nodes[bridge].ID),
			func() error { c.HealLinks(); return nil }, nil
	case "partition:one-way":
		c.Cut(f.Nodes[0], f.Nodes[1])
		return fmt.Sprintf("%s -/-> %s", c.Nodes[f.Nodes[0]].ID, c.Nodes[f.Nodes[1]].ID), func() error { c.HealLinks(); return nil }, nil
	case "corrupt:wal", "corrupt:marked", "corrupt:raft-flip", "corrupt:raft-truncate", "corrupt:raft-flip-stopped":
		i := f.Nodes[0]
		if strings.HasPrefix(f.Variant, "raft-") {
			// The fault damages a minority of every group: refused while
			// another replica of some group is still rejoining.
			if err := n.membershipSettled(ctx); err != nil {
				return names(f.Nodes), nil, err
			}
		}
		if f.Variant == "raft-flip-stopped" {
			_ = c.Stop(i) // clean: every group leaves its clean-shutdown record
		} else {
			_ = c.Kill(i)
		}
		var err error
		desc := names(f.Nodes)
		switch f.Variant {
		case "wal":
			err = flipWALBits(filepath.Join(c.Nodes[i].DataDir, "pebble"), f.Pick)
		case "marked":
			err = os.WriteFile(filepath.Join(c.Nodes[i].DataDir, "pebble.corrupt"), []byte("jepsen\n"), 0o644)
		default:
			var groups string
			groups, err = damageRaftLogs(c.Nodes[i].DataDir, f.Pick, f.Variant == "raft-truncate")
			desc += " raft " + groups
		}
		heal := func() error { return c.Start(i) }
		if err != nil {
			_ = heal()
			return desc, nil, err
		}
		return desc, heal, nil
	case "membership:wipe":
		i := f.Nodes[0]
		// The node loses every replica it holds: refused while a replica of
		// some group is still rejoining, since the two together would be a
		// majority of a group with a copy of its entries lost.
		if err := n.membershipSettled(ctx); err != nil {
			return names(f.Nodes), nil, err
		}
		heal := func() error { return c.Start(i) } // with --rejoin: Wipe set it
		if err := c.Wipe(i); err != nil {
			_ = heal()
			return names(f.Nodes), nil, err
		}
		return names(f.Nodes) + " data wiped", heal, nil
	case "restart:all":
		var errs []error
		for _, i := range f.Nodes {
			errs = append(errs, c.Stop(i))
		}
		return "all nodes (SIGTERM)", func() error {
			var errs []error
			for _, i := range f.Nodes {
				errs = append(errs, c.Start(i))
			}
			return errors.Join(errs...)
		}, errors.Join(errs...)
	case "restart:rolling":
		var errs []error
		for _, i := range f.Nodes {
			if err := c.Stop(i); err != nil {
				errs = append(errs, err)
			}
			if err := c.Start(i); err != nil {
				errs = append(errs, err)
				continue
			}
			if err := c.awaitServing(ctx, i, 30*time.Second); err != nil {
				errs = append(errs, err)
			}
		}
		return "rolling " + names(f.Nodes) + " (SIGTERM)", func() error { return nil }, errors.Join(errs...)
	case "slow:all":
		c.SlowAll(f.Delay)
		return "all links", func() error { c.SlowAll(0); return nil }, nil
	}
	return "", nil, fmt.Errorf("%w %s", ErrUnknownNemesis, f)
}

// clusterStatus asks the cluster for its status through a fresh client,
// within 3 s.
func (n *nemesis) clusterStatus(ctx context.Context) (*client.ClusterStatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	cl, err := n.cluster.newClient(ctx)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	return cl.ClusterStatus(ctx)
}

// membershipSettled returns nil when every node serves and, in the view
// of every node, every node is reachable and every replica of every group
// (the controller's included) is a running voter; else an error naming what is not. Wipes and Raft-log corruption are
// injected only then: damaging a second replica of a group whose first
// damaged replica has not rejoined yet would damage a majority of that
// group, which no system can repair from its peers (the group then rightly
// stays down).
//
// Each node is asked separately, so that no single answer can vouch for
// the cluster: a node whose controller replica is still catching up (a
// wiped node just demoted to non-voter) knows no configuration and no
// registry yet, and its status listed no nodes and no partitions, which a
// check of "every listed replica" passed.
func (n *nemesis) membershipSettled(ctx context.Context) error {
	ids := make([]string, len(n.cluster.Nodes))
	for i, node := range n.cluster.Nodes {
		ids[i] = node.ID
	}
	for i, node := range n.cluster.Nodes {
		st, err := n.nodeClusterStatus(ctx, i)
		if err != nil {
			return fmt.Errorf("jepsen: refused: %s does not answer cluster status (%v); raft damage waits until every node serves", node.ID, err)
		}
		if err := settledView(st, ids, n.topic); err != nil {
			return fmt.Errorf("jepsen: refused: in the view of %s, %w; raft damage waits until every group is whole", node.ID, err)
		}
	}
	return nil
}

// nodeClusterStatus asks node i alone for the cluster status, in one
// attempt within 3 s (see askClusterStatus).
func (n *nemesis) nodeClusterStatus(ctx context.Context, i int) (*client.ClusterStatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return askClusterStatus(ctx, n.cluster.Nodes[i].GRPCAddr, n.cluster.TLS())
}

// settledView checks one node's cluster status: it lists exactly the nodes
// ids, each reachable with a voting controller replica (Leader or
// Follower, never Nonvoter), one of them the controller leader; its
// registry holds topic (when not ""); and every partition reports every
// replica, each Leader or Follower (a partition between two leaders is
// not refused: its replicas are voters with their logs, and a freshly
// created churn topic is often leaderless for a moment).
func settledView(st *client.ClusterStatusResponse, ids []string, topic string) error {
	settled := func(state string) bool { return state == "Leader" || state == "Follower" }
	var listed []string
	leaders := 0
	for _, node := range st.GetNodes() {
		listed = append(listed, node.GetId())
		if !node.GetReachable() || !settled(node.GetControllerState()) {
			return fmt.Errorf("%s is %s (controller %q)", node.GetId(), reachability(node.GetReachable()), node.GetControllerState())
		}
		if node.GetControllerState() == "Leader" {
			leaders++
		}
	}
	slices.Sort(listed)
	want := slices.Sorted(slices.Values(ids))
	if !slices.Equal(listed, want) {
		return fmt.Errorf("the controller configuration lists nodes [%s], want [%s]", strings.Join(listed, ","), strings.Join(want, ","))
	}
	if leaders != 1 || st.GetControllerLeaderId() == "" {
		return fmt.Errorf("the controller has %d leaders (leader id %q)", leaders, st.GetControllerLeaderId())
	}
	hasTopic := topic == ""
	for _, p := range st.GetPartitions() {
		hasTopic = hasTopic || p.GetTopic() == topic
		if len(p.GetReplicaStatus()) != len(p.GetReplicas()) {
			return fmt.Errorf("partition %d of %s reports %d of %d replicas", p.GetIndex(), p.GetTopic(), len(p.GetReplicaStatus()), len(p.GetReplicas()))
		}
		for _, r := range p.GetReplicaStatus() {
			if !settled(r.GetState()) {
				return fmt.Errorf("partition %d of %s on %s is %q", p.GetIndex(), p.GetTopic(), r.GetNodeId(), r.GetState())
			}
		}
	}
	if !hasTopic {
		return fmt.Errorf("its registry has no topic %s", topic)
	}
	return nil
}

// reachability names a node's reachability for messages.
func reachability(ok bool) string {
	if ok {
		return "reachable"
	}
	return "unreachable"
}

// leaderOf returns the node leading partition pick mod partitions of the
// topic, per ClusterStatus.
func (n *nemesis) leaderOf(ctx context.Context, pick int) (int, int, error) {
	st, err := n.clusterStatus(ctx)
	if err != nil {
		return -1, 0, err
	}
	var parts []int
	for k, p := range st.GetPartitions() {
		if p.GetTopic() == n.topic {
			parts = append(parts, k)
		}
	}
	if len(parts) == 0 {
		return -1, 0, fmt.Errorf("jepsen: topic %s not in cluster status", n.topic)
	}
	p := st.GetPartitions()[parts[pick%len(parts)]]
	for i, node := range n.cluster.Nodes {
		if node.ID == p.GetLeaderId() {
			return i, int(p.GetIndex()), nil
		}
	}
	return -1, int(p.GetIndex()), fmt.Errorf("jepsen: partition %d has no known leader", p.GetIndex())
}

// flipWALBits flips one bit in every write-ahead log of a stopped node's
// Pebble directory, at an offset chosen by pick.
func flipWALBits(dir string, pick int) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("jepsen: corrupt: %w", err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".log") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("jepsen: corrupt: %w", err)
		}
		if len(b) < 64 {
			continue
		}
		off := 32 + pick%(len(b)-32)
		b[off] ^= 1 << (pick % 8)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			return fmt.Errorf("jepsen: corrupt: %w", err)
		}
	}
	return nil
}
