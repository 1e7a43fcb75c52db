package bench

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"time"
)

// ErrInvalidOptions marks an Options that Validate refused; the CLI maps
// it to a usage error.
var ErrInvalidOptions = errors.New("bench: invalid options")

// Scenario names a workload.
type Scenario string

// The scenarios of `herald bench`.
const (
	// ScenarioProduce measures acknowledged produce throughput and latency.
	ScenarioProduce Scenario = "produce"
	// ScenarioReplay measures reading every event from offset 0.
	ScenarioReplay Scenario = "replay"
	// ScenarioE2E measures produce-to-delivery latency at a fixed rate.
	ScenarioE2E Scenario = "e2e"
	// ScenarioGroup measures a three-member consumer group consuming
	// every event with explicit acks.
	ScenarioGroup Scenario = "group"
)

// Scenarios lists every scenario, in the order the CLI shows them.
var Scenarios = []Scenario{ScenarioProduce, ScenarioReplay, ScenarioE2E, ScenarioGroup}

// ClientMode says how producers share SDK clients (gRPC connections).
type ClientMode string

// Client modes.
const (
	// ClientsShared gives every producer the same client.
	ClientsShared ClientMode = "shared"
	// ClientsPerProducer gives each producer a client of its own, so its
	// own gRPC connections.
	ClientsPerProducer ClientMode = "per-producer"
)

// Defaults of Options (DefaultOptions).
const (
	DefaultProducers = 4
	DefaultSizeBytes = 128
	DefaultCount     = 100_000
	DefaultBatch     = 500
	DefaultInflight  = 4
	// DefaultGroupWindow is the SDK's and the server's default window.
	DefaultGroupWindow = 2
	DefaultTenants     = 16
	DefaultPartitions  = 3
	DefaultReplication = 3
	DefaultTimeout     = 10 * time.Second
	// DefaultClientMode was chosen by measurement: async produce of 40,000
	// 128 B events, 4 producers, local cluster on a busy 2-core machine,
	// two runs each: per-producer clients 41,400 and 67,400 events/s,
	// one shared client 37,600 and 59,400 (one HTTP/2 connection per node
	// carries every producer's requests when shared).
	DefaultClientMode = ClientsPerProducer
)

// Limits of Options. Each bounds a loop, a goroutine count or a buffer.
const (
	producersMax = 1024
	// sizeBytesMax is the server's default max_event_bytes (1 MiB).
	sizeBytesMax = 1 << 20
	countMax     = 1 << 40
	// batchMax is the most events a produce request may carry (as
	// `herald produce --batch`).
	batchMax       = 10_000
	inflightMax    = 64
	groupWindowMax = 8
	tenantsMax     = 100_000
	// partitionsMax bounds the reader goroutines of replay and e2e.
	partitionsMax = 1024
	// localNodes is the size of the cluster bench starts itself.
	localNodes = 3
	// rateMax bounds --rate (events per second).
	rateMax = 1e9
)

// Options configure one run. DefaultOptions gives the defaults; Validate
// reports every problem at once. An Options is read by Run and not kept.
type Options struct {
	Scenario Scenario
	// Servers are the gRPC addresses of an existing cluster. Empty: start
	// a local three-node cluster of Executable.
	Servers []string
	// NodeArgs are extra `herald serve` flags for the local cluster's
	// nodes (without Servers), e.g. to measure a setting.
	NodeArgs []string
	// HTTPAddrs are the nodes' HTTP addresses (only with Servers); when
	// set, the nodes' CPU comes from /metrics process_cpu_seconds_total.
	HTTPAddrs []string
	// Executable is the herald binary the local cluster runs as
	// `serve`; empty means os.Executable().
	Executable string
	// Producers is the number of concurrent producers.
	Producers int
	// SizeBytes is each event's payload size.
	SizeBytes int
	// Count is the number of events produced (and, for replay, read).
	Count int64
	// Sync makes each send carry one event and wait for its ack; latency
	// is per event. Otherwise each send carries Batch events, with at
	// most Inflight sends in flight per producer; latency is per send.
	Sync bool
	// Batch is the events per produce request when not Sync.
	Batch int
	// Inflight is the produce requests in flight per producer when not Sync.
	Inflight int
	// Tenants is the number of tenants the events are spread over.
	Tenants int
	// Partitions and Replication shape the bench topic.
	Partitions, Replication int
	// Rate is the e2e produce rate in events per second; 0 means half
	// of a quick peak measurement made first.
	Rate float64
	// Clients says whether producers share one SDK client.
	Clients ClientMode
	// GroupWindow is the group scenario's batches in flight per member
	// and partition (GroupConsume's max_batches_in_flight).
	GroupWindow int
	// Timeout bounds each request to the cluster (the SDK's attempt
	// timeout) and each dial.
	Timeout time.Duration

	// preferredWait overrides preferredTimeout (tests whose fake cluster
	// never moves a leader); 0 means the default.
	preferredWait time.Duration
}

// DefaultOptions returns the defaults for scenario.
func DefaultOptions(scenario Scenario) Options {
	return Options{
		Scenario:    scenario,
		Producers:   DefaultProducers,
		SizeBytes:   DefaultSizeBytes,
		Count:       DefaultCount,
		Batch:       DefaultBatch,
		Inflight:    DefaultInflight,
		Tenants:     DefaultTenants,
		Partitions:  DefaultPartitions,
		Replication: DefaultReplication,
		Clients:     DefaultClientMode,
		Timeout:     DefaultTimeout,
		GroupWindow: DefaultGroupWindow,
	}
}

// Validate reports every problem with o, each wrapping ErrInvalidOptions
// and naming the CLI flag.
func (o *Options) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, args...)...))
	}
	if !slices.Contains(Scenarios, o.Scenario) {
		bad("scenario %q: want one of %v", o.Scenario, Scenarios)
	}
	if o.Producers < 1 || o.Producers > producersMax {
		bad("--producers %d: want 1 to %d", o.Producers, producersMax)
	}
	if o.SizeBytes < 1 || o.SizeBytes > sizeBytesMax {
		bad("--size %d: want 1 to %d bytes", o.SizeBytes, sizeBytesMax)
	}
	if o.Count < 1 || o.Count > countMax {
		bad("--count %d: want 1 to %d", o.Count, int64(countMax))
	}
	if o.Batch < 1 || o.Batch > batchMax {
		bad("--batch %d: want 1 to %d", o.Batch, batchMax)
	}
	if o.Inflight < 1 || o.Inflight > inflightMax {
		bad("--inflight %d: want 1 to %d", o.Inflight, inflightMax)
	}
	if o.GroupWindow < 1 || o.GroupWindow > groupWindowMax {
		bad("--group-window %d: want 1 to %d", o.GroupWindow, groupWindowMax)
	}
	if o.Tenants < 1 || o.Tenants > tenantsMax {
		bad("--tenants %d: want 1 to %d", o.Tenants, tenantsMax)
	}
	if o.Partitions < 1 || o.Partitions > partitionsMax {
		bad("--partitions %d: want 1 to %d", o.Partitions, partitionsMax)
	}
	if o.Replication < 1 {
		bad("--replication %d: want at least 1", o.Replication)
	} else if len(o.Servers) == 0 && o.Replication > localNodes {
		bad("--replication %d: the local cluster has %d nodes", o.Replication, localNodes)
	}
	if o.Rate < 0 || o.Rate > rateMax {
		bad("--rate %g: want 0 (half of a measured peak) to %g events/s", o.Rate, rateMax)
	}
	if o.Rate > 0 && o.Scenario != ScenarioE2E {
		bad("--rate applies to e2e only")
	}
	if o.Clients != ClientsShared && o.Clients != ClientsPerProducer {
		bad("--clients %q: want %s or %s", o.Clients, ClientsShared, ClientsPerProducer)
	}
	if o.Timeout <= 0 {
		bad("--timeout %s: want a positive duration", o.Timeout)
	}
	if len(o.HTTPAddrs) > 0 && len(o.Servers) == 0 {
		bad("--http-addrs needs --server (the local cluster's CPU is read from /proc)")
	}
	return errors.Join(errs...)
}

// executable returns the binary the local cluster runs.
func (o *Options) executable() (string, error) {
	if o.Executable != "" {
		return o.Executable, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("bench: finding this binary: %w", err)
	}
	return exe, nil
}
