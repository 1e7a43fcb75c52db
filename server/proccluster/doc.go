// Package proccluster runs a cluster of real `herald serve` processes on
// loopback: the one harness behind `herald dev`, the local cluster of
// `herald bench`, the jepsen nemeses and the server's process tests.
//
// It lives under server/ because it launches the server, and it imports
// nothing of Herald (only the standard library), so that the server's own
// tests, jepsen and cmd/herald may all import it without an import going
// back up.
//
// A caller:
//
//  1. finds the binary: Binary (or TestBinary in a test) returns $HERALD_BIN
//     when set, else builds cmd/herald once per process; a command passes
//     os.Executable();
//  2. lays the nodes out: Layout picks free loopback ports and puts node i's
//     data in dir/n<i> and its log in dir/n<i>.log (a caller with fixed
//     ports, such as `herald dev`, fills []Node itself);
//  3. calls New, then Start or StartAll, and AwaitReady (HTTP /readyz);
//  4. injects faults with Kill (SIGKILL), Stop (SIGTERM, SIGKILL after
//     Config.StopTimeout), Pause and Resume (SIGSTOP, SIGCONT), Restart
//     and Wipe (the next start passes --rejoin);
//  5. calls Close once, which stops every node.
//
// Every process has one waiter goroutine, owned by the Cluster, that reaps
// it and ends when it exits. Every wait on a process is bounded.
package proccluster
