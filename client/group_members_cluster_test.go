package client_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/client"
)

// The SDK's membership calls reach the group's coordinator from a client
// that knows any one node: three clients, each bootstrapped from another
// node, join as three members and are answered by one coordinator; each
// owns one partition once they have all joined again; a leave and the
// errors are typed.
func TestGroupMembershipThroughTheSDK(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), readerTestTimeout)
	defer cancel()
	rc := startRealCluster(t, 3)
	admin, err := client.New(ctx, client.Config{Servers: rc.addrs})
	require.NoError(t, err)
	defer admin.Close()
	_, err = admin.CreateTopic(ctx, &client.TopicConfig{Name: "orders", Partitions: 3, ReplicationFactor: 3, AutoTenants: true})
	require.NoError(t, err)
	_, err = admin.CreateGroup(ctx, "orders", "billing", nil, nil)
	require.NoError(t, err)

	clients := make([]*client.Client, len(rc.addrs))
	for i, addr := range rc.addrs {
		clients[i], err = client.New(ctx, client.Config{Servers: []string{addr}})
		require.NoError(t, err)
		defer clients[i].Close()
	}
	joined := make([]*client.GroupMembership, len(clients))
	join := func(i int) {
		joined[i], err = clients[i].JoinGroup(ctx, "orders", "billing", fmt.Sprintf("m%d", i), 5*time.Second)
		require.NoError(t, err, "join of m%d", i)
	}
	for i := range clients {
		join(i)
	}
	// Everyone joins again until no heartbeat asks for a rebalance (a
	// loop on this goroutine: require stops the test from here only).
	deadline := time.Now().Add(30 * time.Second)
	for settled := false; !settled; {
		require.True(t, time.Now().Before(deadline), "members did not settle")
		settled = true
		for i, c := range clients {
			_, rebalance, err := c.GroupHeartbeat(ctx, "orders", "billing", fmt.Sprintf("m%d", i), joined[i].Generation)
			require.NoError(t, err)
			if rebalance {
				join(i)
				settled = false
			}
		}
	}
	owned := map[uint32]int{}
	for i, j := range joined {
		assert.Equal(t, joined[0].CoordinatorID, j.CoordinatorID, "m%d's coordinator", i)
		assert.Equal(t, joined[0].Generation, j.Generation, "m%d's generation", i)
		assert.Equal(t, (5 * time.Second / 3).Truncate(time.Millisecond), j.HeartbeatInterval, "m%d's heartbeat interval", i)
		require.Len(t, j.Partitions, 1, "m%d's partitions", i)
		owned[j.Partitions[0]]++
	}
	assert.Len(t, owned, 3, "every partition owned once")

	require.NoError(t, clients[1].LeaveGroup(ctx, "orders", "billing", "m1"))
	_, _, err = clients[1].GroupHeartbeat(ctx, "orders", "billing", "m1", joined[1].Generation)
	require.ErrorIs(t, err, client.ErrUnknownMember)
	_, err = clients[0].JoinGroup(ctx, "orders", "nope", "m0", 0)
	require.ErrorIs(t, err, client.ErrGroupNotFound)
	_, err = clients[0].JoinGroup(ctx, "orders", "billing", "m0", time.Millisecond)
	require.ErrorIs(t, err, client.ErrInvalidArgument)
	_, err = clients[0].JoinGroup(ctx, "orders", "billing", "", 0)
	require.ErrorIs(t, err, client.ErrInvalidArgument)
}
