package client_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/heraldlog/herald/client"
)

// Each example runs against its own real single-node cluster started in
// this process (see startExampleCluster), so its output does not depend on
// the order examples run in.

// exampleTimeout bounds everything one example does with the cluster.
const exampleTimeout = 30 * time.Second

// The whole round trip: connect, create a topic, send events through an
// idempotent producer and read them back.
func Example() {
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

	if _, err := cl.CreateTopic(ctx, &client.TopicConfig{Name: "orders", Partitions: 3, ReplicationFactor: 1, AutoTenants: true}); err != nil {
		fmt.Println("create topic:", err)
		return
	}
	producer, err := cl.NewProducer(ctx, "orders")
	if err != nil {
		fmt.Println("new producer:", err)
		return
	}
	defer producer.Close()
	results, err := producer.Send(ctx,
		&client.Event{TenantId: "acme", Payload: []byte("order created")},
		&client.Event{TenantId: "acme", Payload: []byte("order paid")},
	)
	if err != nil {
		fmt.Println("send:", err)
		return
	}

	// Read the tenant's partition back from the first event's offset.
	page, err := cl.Fetch(ctx, &client.FetchRequest{
		Topic: "orders", Partition: results[0].GetPartition(),
		Start: &client.FetchFromOffset{Offset: results[0].GetOffset()},
	})
	if err != nil {
		fmt.Println("fetch:", err)
		return
	}
	for _, e := range page.GetEvents() {
		fmt.Printf("offset=%d sequence=%d %s: %s\n", e.GetOffset(), e.GetSequence(), e.GetTenantId(), e.GetPayload())
	}
	// Output:
	// offset=0 sequence=1 acme: order created
	// offset=1 sequence=2 acme: order paid
}

func ExampleNew() {
	addr, stop := startExampleCluster()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), exampleTimeout)
	defer cancel()

	// Any node of the cluster will do as a seed: New learns the others
	// from its metadata.
	cl, err := client.New(ctx, client.Config{Servers: []string{addr}})
	if err != nil {
		fmt.Println("connect:", err)
		return
	}
	defer cl.Close()

	md, err := cl.Metadata(ctx)
	if err != nil {
		fmt.Println("metadata:", err)
		return
	}
	for _, n := range md.GetNodes() {
		fmt.Println("node", n.GetId())
	}
	fmt.Println("controller leader:", md.GetControllerLeaderId())
	// Output:
	// node n1
	// controller leader: n1
}

func ExampleClient_Produce() {
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

	if _, err := cl.CreateTopic(ctx, &client.TopicConfig{Name: "orders", Partitions: 3, ReplicationFactor: 1}); err != nil {
		fmt.Println("create topic:", err)
		return
	}
	// A topic accepts the events of registered tenants (unless it was
	// created with AutoTenants).
	if _, err := cl.CreateTenant(ctx, &client.Tenant{Id: "acme", DisplayName: "Acme Corp"}); err != nil {
		fmt.Println("create tenant:", err)
		return
	}
	// Every event of tenant "acme" goes to the same partition, so its
	// sequence orders them; offsets number the partition's events.
	results, err := cl.Produce(ctx, "orders",
		&client.Event{TenantId: "acme", Payload: []byte("order created")},
		&client.Event{TenantId: "acme", Payload: []byte("order paid")},
		&client.Event{TenantId: "acme", Payload: []byte("order shipped")},
	)
	if err != nil {
		fmt.Println("produce:", err)
		return
	}
	for _, r := range results {
		fmt.Printf("partition=%d offset=%d sequence=%d event id set: %t\n",
			r.GetPartition(), r.GetOffset(), r.GetSequence(), r.GetEventId() != "")
	}
	fmt.Println("acme's partition:", client.PartitionForTenant("acme", 3))
	// Output:
	// partition=2 offset=0 sequence=1 event id set: true
	// partition=2 offset=1 sequence=2 event id set: true
	// partition=2 offset=2 sequence=3 event id set: true
	// acme's partition: 2
}

func ExampleClient_Fetch() {
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

	if _, err := cl.CreateTopic(ctx, &client.TopicConfig{Name: "orders", Partitions: 3, ReplicationFactor: 1}); err != nil {
		fmt.Println("create topic:", err)
		return
	}
	for _, tenant := range []string{"acme", "globex"} {
		if _, err := cl.CreateTenant(ctx, &client.Tenant{Id: tenant}); err != nil {
			fmt.Println("create tenant:", err)
			return
		}
	}
	// "acme" and "globex" both map to partition 2 of 3, so they share it.
	if _, err := cl.Produce(ctx, "orders",
		&client.Event{TenantId: "acme", Payload: []byte("a")},
		&client.Event{TenantId: "globex", Payload: []byte("x")},
		&client.Event{TenantId: "acme", Payload: []byte("b")},
		&client.Event{TenantId: "acme", Payload: []byte("c")},
	); err != nil {
		fmt.Println("produce:", err)
		return
	}
	partition := client.PartitionForTenant("acme", 3)

	// Replay one tenant from its second event, through the tenant index.
	page, err := cl.Fetch(ctx, &client.FetchRequest{
		Topic: "orders", Partition: partition, TenantId: "acme",
		Start: &client.FetchFromSequence{Sequence: 2},
	})
	if err != nil {
		fmt.Println("fetch by sequence:", err)
		return
	}
	fmt.Println("acme from sequence 2:")
	for _, e := range page.GetEvents() {
		fmt.Printf("  offset=%d sequence=%d %s %s\n", e.GetOffset(), e.GetSequence(), e.GetTenantId(), e.GetPayload())
	}
	fmt.Println("  next sequence:", page.GetNextSequence())

	// Replay the whole partition, every tenant, from offset 0.
	page, err = cl.Fetch(ctx, &client.FetchRequest{
		Topic: "orders", Partition: partition,
		Start: &client.FetchFromOffset{Offset: 0},
	})
	if err != nil {
		fmt.Println("fetch by offset:", err)
		return
	}
	fmt.Printf("partition %d from offset 0:\n", partition)
	for _, e := range page.GetEvents() {
		fmt.Printf("  offset=%d sequence=%d %s %s\n", e.GetOffset(), e.GetSequence(), e.GetTenantId(), e.GetPayload())
	}
	fmt.Println("  next offset:", page.GetNextOffset(), "high watermark:", page.GetHighWatermark())
	// Output:
	// acme from sequence 2:
	//   offset=2 sequence=2 acme b
	//   offset=3 sequence=3 acme c
	//   next sequence: 4
	// partition 2 from offset 0:
	//   offset=0 sequence=1 acme a
	//   offset=1 sequence=1 globex x
	//   offset=2 sequence=2 acme b
	//   offset=3 sequence=3 acme c
	//   next offset: 4 high watermark: 4
}

// Errors from the cluster come back typed: match a condition with
// errors.Is against the package's sentinels, and read the details of the
// ones that carry some with errors.As.
func Example_errors() {
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

	_, err = cl.Produce(ctx, "no-such-topic", &client.Event{TenantId: "acme", Payload: []byte("hello")})
	fmt.Println("unknown topic:", errors.Is(err, client.ErrTopicNotFound))

	cfg := &client.TopicConfig{Name: "orders", Partitions: 1, ReplicationFactor: 1, MaxEventBytes: 16}
	if _, err := cl.CreateTopic(ctx, cfg); err != nil {
		fmt.Println("create topic:", err)
		return
	}
	_, err = cl.CreateTopic(ctx, cfg)
	fmt.Println("topic exists:", errors.Is(err, client.ErrTopicExists))

	_, err = cl.Produce(ctx, "orders", &client.Event{TenantId: "acme", Payload: []byte("hello")})
	fmt.Println("unknown tenant:", errors.Is(err, client.ErrTenantNotFound))
	if _, err := cl.CreateTenant(ctx, &client.Tenant{Id: "acme"}); err != nil {
		fmt.Println("create tenant:", err)
		return
	}

	_, err = cl.Produce(ctx, "orders", &client.Event{TenantId: "acme", Payload: []byte("more than sixteen bytes")})
	fmt.Println("payload too large:", errors.Is(err, client.ErrPayloadTooLarge))

	if _, err := cl.Produce(ctx, "orders", &client.Event{TenantId: "acme", Payload: []byte("ok")}); err != nil {
		fmt.Println("produce:", err)
		return
	}
	_, err = cl.Fetch(ctx, &client.FetchRequest{Topic: "orders", Start: &client.FetchFromOffset{Offset: 7}})
	var outOfRange *client.OffsetOutOfRangeError
	if errors.As(err, &outOfRange) {
		fmt.Printf("offset out of range: the partition holds [%d, %d)\n", outOfRange.Low, outOfRange.High)
	}
	// Output:
	// unknown topic: true
	// topic exists: true
	// unknown tenant: true
	// payload too large: true
	// offset out of range: the partition holds [0, 1)
}

// An idempotent producer numbers its events, so that Send can resend after
// any failure without storing an event twice; a resent event that the
// cluster already had comes back with Duplicate set.
func ExampleClient_NewProducer() {
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

	// AutoTenants: this topic takes any tenant's events without CreateTenant.
	if _, err := cl.CreateTopic(ctx, &client.TopicConfig{Name: "orders", Partitions: 3, ReplicationFactor: 1, AutoTenants: true}); err != nil {
		fmt.Println("create topic:", err)
		return
	}
	producer, err := cl.NewProducer(ctx, "orders")
	if err != nil {
		fmt.Println("new producer:", err)
		return
	}
	defer producer.Close()

	events := []*client.Event{
		{TenantId: "acme", Payload: []byte("order created")},
		{TenantId: "acme", Payload: []byte("order paid")},
	}
	results, err := producer.Send(ctx, events...)
	if err != nil {
		// errors.Is(err, client.ErrUnknownOutcome): the retries ran out;
		// these events may or may not be in the log.
		fmt.Println("send:", err)
		return
	}
	for i, r := range results {
		fmt.Printf("offset=%d sequence=%d producer_seq=%d duplicate=%t\n",
			r.GetOffset(), r.GetSequence(), events[i].GetProducerSeq(), r.GetDuplicate())
	}
	// Output:
	// offset=0 sequence=1 producer_seq=1 duplicate=false
	// offset=1 sequence=2 producer_seq=2 duplicate=false
}

// A Reader pages through a partition (or one tenant's events) and knows
// where it is: a new Reader started at its Position reads exactly the next
// event, which is how a consumer resumes after a restart. With Wait set,
// a Reader at the end of the log long-polls for new events.
func ExampleReader() {
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

	if _, err := cl.CreateTopic(ctx, &client.TopicConfig{Name: "orders", Partitions: 1, ReplicationFactor: 1, AutoTenants: true}); err != nil {
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

	// The whole partition, two events a page, up to the end of the log.
	r, err := client.NewReader(cl, client.ReaderConfig{Topic: "orders", Partition: 0, PageEventsMax: 2})
	if err != nil {
		fmt.Println("new reader:", err)
		return
	}
	for !r.AtEnd() {
		page, err := r.Next(ctx)
		if err != nil {
			// A typed error (errors.As *client.OffsetOutOfRangeError, ...);
			// the position did not move, so Next may be called again.
			fmt.Println("next:", err)
			return
		}
		for _, e := range page.GetEvents() {
			fmt.Printf("offset=%d %s %s\n", e.GetOffset(), e.GetTenantId(), e.GetPayload())
		}
		fmt.Println("position:", r.Position())
	}

	// One tenant's events, by its sequence; resume from a saved position.
	tr, err := cl.TenantReader(ctx, "orders", "acme", client.ReaderConfig{Start: client.FromSequence(2)})
	if err != nil {
		fmt.Println("tenant reader:", err)
		return
	}
	page, err := tr.Next(ctx)
	if err != nil {
		fmt.Println("next:", err)
		return
	}
	for _, e := range page.GetEvents() {
		fmt.Printf("acme sequence=%d %s\n", e.GetSequence(), e.GetPayload())
	}
	fmt.Println("position:", tr.Position())
	// Output:
	// offset=0 acme created
	// offset=1 globex created
	// position: offset:2
	// offset=2 acme paid
	// position: offset:3
	// acme sequence=2 paid
	// position: seq:3
}
