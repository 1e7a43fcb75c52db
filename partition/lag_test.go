package partition

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// GroupLag is the high watermark minus the group's floor, as applied here;
// an absent group has none.
func TestGroupLag(t *testing.T) {
	n := startReplicaNode(t, "n1", nil)
	r := n.openReplica(t, 1, voters(n), nil)
	awaitLeader(t, r)
	produce(t, r, plainRecords("acme", 10))

	_, ok := r.GroupLag("g")
	require.False(t, ok, "a group that does not exist has no lag")

	_, err := r.GroupCreate("g", GroupConfig{AckWait: time.Second, MaxPending: 16}, 0)
	require.NoError(t, err)
	lag, ok := r.GroupLag("g")
	require.True(t, ok)
	require.Equal(t, uint64(10), lag)

	_, err = r.GroupAssign("g", 1, "m1")
	require.NoError(t, err)
	_, err = r.GroupDeliver(GroupDeliverRequest{Group: "g", Generation: 1, Member: "m1", NewFrom: 0, NewCount: 6, NowUnixNano: 1})
	require.NoError(t, err)
	lag, _ = r.GroupLag("g")
	require.Equal(t, uint64(10), lag, "delivered but unacknowledged events still count")
	_, err = r.GroupAck(GroupAckRequest{Group: "g", Generation: 1, Member: "m1", Before: 4})
	require.NoError(t, err)
	lag, _ = r.GroupLag("g")
	require.Equal(t, uint64(6), lag)

	produce(t, r, plainRecords("acme", 5))
	lag, _ = r.GroupLag("g")
	require.Equal(t, uint64(11), lag)

	_, err = r.GroupReset("g", 15)
	require.NoError(t, err)
	lag, ok = r.GroupLag("g")
	require.True(t, ok)
	require.Equal(t, uint64(0), lag)
}

// The guard installed last answers; nil removes it.
func TestSetLagGuard(t *testing.T) {
	r := &Replica{}
	require.Equal(t, LagPressure{}, r.lagPressure())
	r.SetLagGuard(func() LagPressure { return LagPressure{Pause: true, Group: "g"} })
	require.Equal(t, LagPressure{Pause: true, Group: "g"}, r.lagPressure())
	r.SetLagGuard(nil)
	require.Equal(t, LagPressure{}, r.lagPressure())
}

// BenchmarkGroupLag measures one GroupLag: what the lag guard pays per
// protected group and led partition on each tick.
func BenchmarkGroupLag(b *testing.B) {
	n := startReplicaNode(b, "n1", nil)
	r := n.openReplica(b, 1, voters(n), nil)
	awaitLeader(b, r)
	produce(b, r, plainRecords("acme", 100))
	if _, err := r.GroupCreate("g", GroupConfig{AckWait: time.Second, MaxPending: 16}, 0); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if lag, ok := r.GroupLag("g"); !ok || lag != 100 {
			b.Fatalf("lag %d, %v", lag, ok)
		}
	}
}
