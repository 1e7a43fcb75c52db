package jepsen

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"
)

// Defaults of Options.
const (
	DefaultNodes      = 3
	DefaultDuration   = 60 * time.Second
	DefaultProducers  = 4
	DefaultPartitions = 3
	DefaultTenants    = 6
	// DefaultConvergeTimeout bounds the wait, after healing, for every
	// replica to report the same high watermarks.
	DefaultConvergeTimeout = 60 * time.Second
	// nodesMax keeps the proxy mesh (n*(n-1) proxies) small.
	nodesMax = 7
)

// Options configure Run. Zero fields take the defaults; Binary and OutDir
// are required.
type Options struct {
	// Binary is the herald executable to run as `herald serve`.
	Binary string
	// OutDir receives history.jsonl, verdict.json, report.html and the
	// nodes' data and logs (data/).
	OutDir string
	// Nodes is the number of nodes (3 or 5 recommended); the topic is
	// replicated on all of them.
	Nodes int
	// Duration is how long the workload and the nemesis run, before
	// healing and the final reads.
	Duration time.Duration
	// Nemeses are the fault kinds (see Nemeses); none is a clean run.
	Nemeses []string
	// Mode is the workload: ModeCareful (the default) or ModeVolume.
	Mode string
	// BatchEvents and InFlight shape volume mode: each producer sends
	// batches of BatchEvents events, InFlight Sends at once.
	BatchEvents, InFlight int
	// Seed fixes the fault schedule and the workload's random choices.
	Seed uint64
	// Producers is the number of idempotent producers, Tenants the number
	// of tenants they write for (spread over Partitions partitions).
	Producers, Tenants, Partitions int
	// RegistryTenants tenants are created before the run (0: none); with
	// Churn, short-lived topics are created and deleted during the run.
	RegistryTenants int
	Churn           bool
	// RegistryWorkload runs a client that writes the registry through
	// random nodes and reads it back through random nodes.
	RegistryWorkload bool
	// Resend runs a raw-gRPC client that sends idempotent requests of
	// 2,500 events for one tenant and resends each identically.
	Resend bool
	// Hijack runs a raw-gRPC victim producer and a hijacker that sends
	// with the victim's producer id and a guessed epoch.
	Hijack bool
	// Mixed runs a raw-gRPC client that sends requests mixing valid and
	// refused records, some spanning partitions.
	Mixed bool
	// Flood runs a tenant with a small quota producing as fast as it can
	// on a topic of its own (flood.go; checked by the flood checker).
	Flood bool
	// Subscribers is the number of raw-gRPC subscribers per partition of
	// the live topic (subscribe.go; checked by the subscriptions checker):
	// the even ones replay from EARLIEST, the odd ones join later at an
	// acknowledged offset. 0: none; the CLI passes DefaultSubscribers of
	// the mode unless told.
	Subscribers int
	// GroupMembers is the number of members of the consumer group the
	// workload creates on the live topic (group.go; checked by the
	// consumer-groups checker). 0: no group; the CLI passes
	// DefaultGroupMembers of the mode unless told.
	GroupMembers int
	// TLS runs the cluster with TLS (a CA and certificates made in the
	// output directory) and every client over it; without, the nodes know
	// their peers by a cluster secret.
	TLS bool
	// ConvergeTimeout bounds the wait for the replicas to agree after healing.
	ConvergeTimeout time.Duration
	// Progress receives a line per phase and fault; nil discards.
	Progress io.Writer
	// Logger receives the harness's own logs; nil discards.
	Logger *slog.Logger
}

// withDefaults returns o with zero fields set to the defaults.
func (o Options) withDefaults() Options {
	if o.Nodes == 0 {
		o.Nodes = DefaultNodes
	}
	if o.Duration == 0 {
		o.Duration = DefaultDuration
	}
	if o.Producers == 0 {
		o.Producers = DefaultProducers
	}
	if o.Tenants == 0 {
		o.Tenants = DefaultTenants
	}
	if o.Partitions == 0 {
		o.Partitions = DefaultPartitions
	}
	if o.Mode == "" {
		o.Mode = ModeCareful
	}
	if o.BatchEvents == 0 {
		o.BatchEvents = DefaultBatchEvents
	}
	if o.InFlight == 0 {
		o.InFlight = DefaultInFlight
	}
	if o.ConvergeTimeout == 0 {
		o.ConvergeTimeout = DefaultConvergeTimeout
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Validate reports every problem at once; zero fields are accepted.
func (o Options) Validate() error {
	var errs []error
	if o.Binary == "" {
		errs = append(errs, errors.New("jepsen: the herald binary is required"))
	}
	if o.OutDir == "" {
		errs = append(errs, errors.New("jepsen: an output directory is required"))
	}
	if o.Nodes != 0 && (o.Nodes < 3 || o.Nodes > nodesMax) {
		errs = append(errs, fmt.Errorf("jepsen: %d nodes: want 3 to %d", o.Nodes, nodesMax))
	}
	if o.Duration < 0 {
		errs = append(errs, fmt.Errorf("jepsen: duration %s is negative", o.Duration))
	}
	if o.Producers < 0 || o.Tenants < 0 || o.Partitions < 0 || o.RegistryTenants < 0 {
		errs = append(errs, errors.New("jepsen: producers, tenants and partitions must not be negative"))
	}
	if o.Tenants != 0 && o.Partitions != 0 && o.Tenants < o.Partitions {
		errs = append(errs, fmt.Errorf("jepsen: %d tenants cannot cover %d partitions", o.Tenants, o.Partitions))
	}
	if o.Mode != "" && !slices.Contains(Modes, o.Mode) {
		errs = append(errs, fmt.Errorf("jepsen: mode %q: want one of %s", o.Mode, strings.Join(Modes, ", ")))
	}
	if o.BatchEvents < 0 || o.BatchEvents > batchEventsMax {
		errs = append(errs, fmt.Errorf("jepsen: %d events a batch: want 1 to %d", o.BatchEvents, batchEventsMax))
	}
	if o.InFlight < 0 || o.InFlight > inFlightMax {
		errs = append(errs, fmt.Errorf("jepsen: %d sends in flight: want 1 to %d", o.InFlight, inFlightMax))
	}
	if o.Subscribers < 0 || o.Subscribers > subscribersMax {
		errs = append(errs, fmt.Errorf("jepsen: %d subscribers a partition: want 0 to %d", o.Subscribers, subscribersMax))
	}
	if o.GroupMembers < 0 || o.GroupMembers > groupMembersMax {
		errs = append(errs, fmt.Errorf("jepsen: %d group members: want 0 to %d", o.GroupMembers, groupMembersMax))
	}
	for _, n := range o.Nemeses {
		if _, err := ParseNemeses(n); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
