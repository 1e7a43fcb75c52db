package client_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/heraldlog/herald/client"
)

// A live subscription to one tenant's events: each one arrives as it is
// produced, with its partition, offset, sequence and the partition's
// epoch; the loop ends when the caller breaks out (or ctx ends), and
// Positions is where a later subscription resumes.
func ExampleClient_NewSubscription() {
	addr, stop := startExampleCluster()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), exampleTimeout)
	defer cancel()
	cl, err := client.New(ctx, client.Config{Servers: []string{addr}})
	if err != nil {
		fmt.Println("connect:", err)
		return
	}
	defer cl.Close()

	if _, err := cl.CreateTopic(ctx, &client.TopicConfig{Name: "orders", Partitions: 2, ReplicationFactor: 1, AutoTenants: true}); err != nil {
		fmt.Println("create topic:", err)
		return
	}
	if _, err := cl.Produce(ctx, "orders",
		&client.Event{TenantId: "acme", Payload: []byte("created")},
		&client.Event{TenantId: "globex", Payload: []byte("created")},
		&client.Event{TenantId: "acme", Payload: []byte("paid")},
	); err != nil {
		fmt.Println("produce:", err)
		return
	}

	// With a tenant on a topic ordered per tenant, the tenant's partition.
	sub, err := cl.NewSubscription("orders", client.SubscribeOptions{TenantID: "acme", Start: client.FromSequence(1)})
	if err != nil {
		fmt.Println("new subscription:", err)
		return
	}
	seen := 0
	for d, err := range sub.All(ctx) {
		if err != nil {
			// Typed: errors.As *client.OffsetOutOfRangeError or
			// *client.EpochChangedError, with the partition's bounds.
			var changed *client.EpochChangedError
			if errors.As(err, &changed) {
				fmt.Println("topic recreated; new epoch", changed.CurrentEpoch)
			}
			fmt.Println("subscription:", err)
			return
		}
		e := d.Event
		fmt.Printf("%s sequence=%d offset=%d %s epoch set: %t\n", e.GetTenantId(), e.GetSequence(), e.GetOffset(), e.GetPayload(), d.Epoch != 0)
		if seen++; seen == 2 {
			break // ends the streams and their goroutines
		}
	}
	for p, pos := range sub.Positions() {
		fmt.Printf("partition %d resumes at offset %d\n", p, pos.Offset)
	}
	// Output:
	// acme sequence=1 offset=0 created epoch set: true
	// acme sequence=2 offset=1 paid epoch set: true
	// partition 1 resumes at offset 2
}
