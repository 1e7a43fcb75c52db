// Package wsclient reads and writes a Herald cluster over the nodes'
// WebSocket gateways (/v1/ws on each node's HTTP port; docs/protocol.md,
// "WebSocket"), for Go programs that cannot or would rather not speak gRPC
// to the nodes. The frames are the wire package's (client/wire/ws.go), the
// same definition the gateway writes.
//
// A caller:
//
//  1. Dials with the WebSocket URL of every node (Config.URLs). Dial
//     connects to one node: that connection carries Publish.
//  2. Subscribes to one partition (Client.Subscribe, or Client.Events for
//     an iterator), from a Start. Each subscription has its own
//     connection, read by the goroutine that calls Next: the package
//     starts no goroutine for it, and keeps at most one frame of events.
//  3. Reads events with Next or All, from one goroutine. When the
//     connection ends — the node was killed or is stopping (1001), the
//     caller read too slowly (4008), the network failed, or nothing came
//     for three heartbeats — Next connects to the next node (waiting a
//     doubling, jittered, bounded backoff between failed attempts, at most
//     Config.MaxRetries failed attempts in a row) and
//     subscribes at the offset after the last event it returned, with the
//     partition epoch it saw: no gap, no repeat. What no node would
//     accept ends the subscription with a typed error:
//     *wire.OffsetOutOfRangeError (the position fell out of retention;
//     Low is the first retained offset), *EpochChangedError (the topic was
//     recreated), wire.ErrTopicNotFound, wire.ErrPartitionNotFound.
//  4. Publishes with Publish, which returns the ack (partition, offset,
//     sequence). A connection lost after the frame left is an unknown
//     outcome (wire.ErrUnknownOutcome): resend with the same EventID, which
//     the topic's dedupe window makes safe, or as an idempotent producer.
//  5. Closes each Subscription and the Client.
//
// Goroutines: the Client owns one, the publish connection's reader, which
// exits when that connection ends; Close waits for it.
package wsclient
