// Package jepsen is Herald's fault-injection suite: it starts real
// `herald serve` processes on loopback with every peer-to-peer link through
// a TCP proxy it controls, runs idempotent producers and readers against
// them while a seeded nemesis kills, pauses, partitions and slows the
// nodes, then heals the cluster, reads every partition from every node and
// checks the recorded history (see Check).
//
// The pieces, one per file: Proxy (a controllable TCP link), Cluster (the
// processes and the proxy mesh), Schedule and the nemesis (faults), the
// workload (producers and Readers), the Subscribers (raw Subscribe
// streams resumed across nodes), the GroupMembers (a consumer group's
// members through the SDK, and its drain after the run), History (the
// JSON-lines record), the checkers and the linearizability check (pure
// functions over a History), and the report (verdict.json, report.html). Run ties them together; the
// `herald jepsen` verb calls it.
package jepsen
