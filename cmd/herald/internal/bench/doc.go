// Package bench is the load tool behind `herald bench`: the produce,
// replay and end-to-end scenarios, a throwaway local cluster to run them
// against, and their measurement (HDR latency histograms, throughput, and
// the CPU the node processes spent per event).
//
// A run is: (1) without Options.Servers, start three `herald serve`
// children of Options.Executable on free 127.0.0.1 ports in a temporary
// directory and wait for /readyz on each; (2) create a fresh topic
// bench-<random> (auto_tenants, Options.Partitions, Options.Replication)
// and wait for a leader on every partition; (3) run the scenario while a
// progress line goes to the progress writer about once a second; (4)
// return a Result, and delete the topic (external cluster) or stop the
// nodes and remove their data (local cluster).
//
// The WebSocket scenario (RunWS, ws.go) and the noisy-tenant scenario
// (RunNoisy, noisy.go: one tenant flooding over its quota beside four
// steady ones, with a plot) have options and results of their own, and
// so has the scale scenario (RunScale, scale.go: partition replicas per
// node grown in steps on its own cluster, each node's idle CPU, memory,
// files and goroutines per replica, and a node's restart time).
//
// Scenarios never assert anything about speed: they report figures.
package bench
