package wsclient_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	"github.com/heraldlog/herald/client/wsclient"
)

// A service follows a partition over WebSocket and publishes to it. The
// subscription survives the death of its node: it goes on at the next one.
func Example() {
	ctx := context.Background()
	c, err := wsclient.Dial(ctx, wsclient.Config{URLs: []string{
		"ws://10.0.0.1:8080/v1/ws", "ws://10.0.0.2:8080/v1/ws", "ws://10.0.0.3:8080/v1/ws"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ack, err := c.Publish(ctx, "orders", &heraldpb.Event{TenantId: "acme", EventId: "order-42", Payload: []byte(`{"total":12}`)})
	if err != nil {
		log.Fatal(err) // with wire.ErrUnknownOutcome: resend it, same EventID
	}
	fmt.Println("published at", ack.Partition, ack.Offset)

	for e, err := range c.Events(ctx, wsclient.SubscribeOptions{Topic: "orders", Partition: ack.Partition, Start: wsclient.StartEarliest}) {
		var outOfRange *wire.OffsetOutOfRangeError
		switch {
		case errors.As(err, &outOfRange):
			log.Fatalf("fell behind retention: the log now begins at %d", outOfRange.Low)
		case err != nil:
			log.Fatal(err)
		}
		fmt.Println(e.Offset, e.TenantID, string(e.Payload))
	}
}
