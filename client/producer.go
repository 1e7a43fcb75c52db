package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// producerRenewalsMax bounds how many producer epochs one request may go
// through: after an UNKNOWN_PRODUCER answer the request is numbered again
// under a fresh epoch once, and a concurrent renewal by another request
// may cost one more numbering.
const producerRenewalsMax = 3

// Producer is an idempotent producer for one topic: every event it sends
// carries its producer id and a producer_seq, numbered per (tenant,
// partition) consecutively from 1, by which the cluster recognises an event
// sent again and answers with the original position instead of appending
// it twice. That makes every failure safe to retry, which Send does.
//
// A Producer is safe for concurrent use. Requests for the same (tenant,
// partition) are serialised (one in flight, the others wait in Send), since
// the cluster refuses a sequence that skips ahead; requests for different
// ones go concurrently. It holds the next sequence of every (tenant,
// partition) it has sent to, so its memory grows with their number, as the
// cluster's dedupe table does.
//
// Close it when done; it does not close its Client. It starts no goroutine
// that outlives a call.
type Producer struct {
	client *Client
	topic  string
	// pending counts the bytes of this producer's unanswered Sends; the
	// Client's count (and bound) includes them.
	pending *pending
	// initSlot admits one InitProducer call at a time (a renewal), waited
	// for with a context rather than under mu.
	initSlot chan struct{}

	mu struct {
		sync.Mutex
		// id is the producer id in use; "" once an unknown outcome dropped
		// it, until the next request takes a fresh epoch for it.
		id string
		// producerEpoch is the epoch InitProducer issued with id (fencing).
		producerEpoch uint64
		// lastID is the id last dropped, renewed with a higher epoch by the
		// next InitProducer so that its requests still in flight are fenced.
		lastID string
		// epoch counts the ids dropped: a request numbered under an older
		// epoch does not update next.
		epoch uint64
		// next is the next producer_seq per (partition, tenant) under id;
		// absent means 1.
		next map[laneKey]uint64
		// lanes serialise the requests of each (partition, tenant) in use.
		lanes  map[laneKey]*lane
		closed bool
	}
}

// laneKey is what producer sequences are numbered by.
type laneKey struct {
	partition uint32
	tenant    string
}

func compareLaneKeys(a, b laneKey) int {
	if c := cmp.Compare(a.partition, b.partition); c != 0 {
		return c
	}
	return cmp.Compare(a.tenant, b.tenant)
}

// lane admits one request of its key at a time: holding its slot is
// holding the lane. users (guarded by Producer.mu) counts holders and
// waiters; the lane is dropped from the map when it falls to 0.
type lane struct {
	slot  chan struct{}
	users int
}

// NewProducer makes an idempotent producer for topic: it checks that the
// topic exists and asks the cluster for a producer id (InitProducer), once.
// An ambiguous failure of InitProducer is not resent (ErrUnknownOutcome);
// calling NewProducer again is harmless.
func (c *Client) NewProducer(ctx context.Context, topic string) (*Producer, error) {
	if topic == "" {
		return nil, InvalidArgument("topic", "a topic name is required")
	}
	if _, err := c.shape(ctx, topic); err != nil {
		return nil, err
	}
	id, producerEpoch, err := c.InitProducerEpoch(ctx, "")
	if err != nil {
		return nil, err
	}
	p := &Producer{client: c, topic: topic, pending: newPending(0, nil), initSlot: make(chan struct{}, 1)}
	p.mu.id = id
	p.mu.producerEpoch = producerEpoch
	p.mu.next = make(map[laneKey]uint64)
	p.mu.lanes = make(map[laneKey]*lane)
	return p, nil
}

// ID returns the producer id in use: the one NewProducer got (renewals
// keep it and take a new epoch); "" between an unknown outcome and the
// next Send, which renews it.
func (p *Producer) ID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.id
}

// Topic returns the topic the producer sends to.
func (p *Producer) Topic() string { return p.topic }

// Send appends events to the producer's topic and returns one result per
// event, in the order given, as Client.Produce does (routing by the topic's
// ordering, the groups of different partitions sent concurrently, nil
// results for the events of failed groups and the groups' errors joined).
// A result has Duplicate set when the cluster already had the event, with
// the offset and sequence it was first stored at.
//
// Send sets, in the caller's events, EventId (a UUIDv7 where empty),
// ProducerId and ProducerSeq; the events belong to the call until it
// returns.
//
// Retries: resending is safe, so every failure that is not a definite
// refusal — an unknown outcome, an attempt timeout, a lost connection,
// NOT_LEADER, NO_LEADER, an internal error — is retried with the same
// producer id and sequences, with backoff and jitter, at most
// Config.MaxRetries times and while ctx lasts. Definite refusals (invalid
// argument, payload too large, unknown topic or tenant, schema version,
// TTL, missing field) fail at once and consume no sequence number.
//
// If the retries run out while the outcome is still unknown, Send returns
// an error matching ErrUnknownOutcome: those events may or may not be in
// the log. The Producer then takes a new epoch for its id (InitProducer
// with the id), which fences the unanswered request should it still
// arrive, its sequences restarting at 1, since the cluster may hold a
// sequence it does not know about; sending the same events again may then
// store them twice (their event ids stay, which a topic's dedupe window
// recognises).
//
// Backpressure is as for Client.Produce: in the default blocking mode a
// Send waits for a partition's pause (throttle_ms) and resends a THROTTLED
// or QUEUE_FULL refusal after its retry-after plus jitter, with the same
// sequences (nothing was written); in fail-fast mode the group fails at
// once with ErrThrottled and consumes no sequence number. PendingBytes
// counts the bytes of unanswered Sends.
//
// Producer refusals are decided for the whole request before any of it is
// written. UNKNOWN_PRODUCER (the partition forgot the idle producer, so
// nothing of this request can be there) renews the epoch and the request
// is numbered again and sent once more. Nothing else makes the Producer
// send the same events under new numbers: OUT_OF_ORDER_SEQUENCE,
// DUPLICATE_SEQUENCE (already committed, positions forgotten) and
// PRODUCER_FENCED (a newer InitProducer for the id) are returned.
func (p *Producer) Send(ctx context.Context, events ...*Event) ([]*ProduceResult, error) {
	p.mu.Lock()
	closed := p.mu.closed
	p.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("client: producer for %s: %w", p.topic, ErrClosed)
	}
	if err := validateEvents(p.topic, events); err != nil {
		return nil, err
	}
	if len(events) == 0 {
		return nil, nil
	}
	if err := assignEventIDs(events); err != nil {
		return nil, err
	}
	sizes, total, err := p.client.admit(ctx, p.topic, events)
	if err != nil {
		return nil, err
	}
	p.pending.add(total)
	shape, err := p.client.shape(ctx, p.topic)
	if err != nil {
		p.releaseBytes(total)
		return nil, err
	}
	order, groups := groupByPartition(shape, events)
	results := make([]*ProduceResult, len(events))
	errs := forEachGroup(order, func(partition uint32) error {
		defer p.releaseBytes(groupBytes(sizes, groups[partition]))
		return p.sendGroup(ctx, partition, groups[partition], events, results)
	})
	if err := errors.Join(errs...); err != nil {
		return results, err
	}
	return results, nil
}

// PendingBytes returns the encoded bytes of the events in this producer's
// Sends admitted under Config.MaxPendingBytes and not yet answered:
// waiting for a lane, for a partition's pause, for a retry or for their
// reply. Client.PendingBytes includes them.
func (p *Producer) PendingBytes() int64 { return p.pending.load() }

// releaseBytes uncounts n bytes of an answered group, here and in the
// Client.
func (p *Producer) releaseBytes(n int64) {
	p.pending.release(n)
	p.client.pending.release(n)
}

// Close stops the producer: later Sends fail with ErrClosed. Sends in
// flight finish. It does not close the Client, and is idempotent.
func (p *Producer) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.closed = true
	return nil
}

// sendGroup numbers and sends the events at indexes, all for partition,
// holding the lanes of their (partition, tenant) keys throughout.
func (p *Producer) sendGroup(ctx context.Context, partition uint32, indexes []int, events []*Event, results []*ProduceResult) error {
	keys := make([]laneKey, 0, 1)
	for _, i := range indexes {
		k := laneKey{partition: partition, tenant: events[i].GetTenantId()}
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	// Every caller takes lanes in this one order, so two requests that
	// share keys cannot each hold one the other waits for.
	slices.SortFunc(keys, compareLaneKeys)
	if err := p.acquire(ctx, keys); err != nil {
		return fmt.Errorf("client: produce to %s/%d: %w", p.topic, partition, err)
	}
	defer p.release(keys)

	unknownRetried := false
	for range producerRenewalsMax {
		id, producerEpoch, epoch, err := p.currentID(ctx)
		if err != nil {
			return err
		}
		next, ok := p.number(id, producerEpoch, epoch, partition, indexes, events)
		if !ok {
			continue // renewed meanwhile: number again under the new id
		}
		err = p.client.produceGroup(ctx, p.topic, partition, indexes, events, results, true)
		switch {
		case err == nil:
			p.commit(epoch, next)
			return nil
		case errors.Is(err, ErrUnknownOutcome):
			p.renew(epoch)
			return err
		case errors.Is(err, ErrUnknownProducer) && !unknownRetried:
			// Refused as a whole, and the partition does not know the
			// producer: no earlier attempt of this request is there.
			p.client.log.DebugContext(ctx, "herald: producer renews its epoch", "topic", p.topic, "partition", partition, "producer_id", id, "err", err)
			unknownRetried = true
			p.renew(epoch)
		default:
			return err
		}
	}
	return fmt.Errorf("client: produce to %s/%d: the producer epoch changed %d times during the request: %w",
		p.topic, partition, producerRenewalsMax, ErrUnknownProducer)
}

// number sets id and consecutive sequences on the events at indexes and
// returns the next sequence of each key after them, to commit on success.
// It reports false when the producer was renewed after id was read.
func (p *Producer) number(id string, producerEpoch, epoch uint64, partition uint32, indexes []int, events []*Event) (map[laneKey]uint64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.epoch != epoch || p.mu.id != id {
		return nil, false
	}
	next := make(map[laneKey]uint64, 1)
	for _, i := range indexes {
		k := laneKey{partition: partition, tenant: events[i].GetTenantId()}
		seq, ok := next[k]
		if !ok {
			seq = max(p.mu.next[k], 1)
		}
		events[i].ProducerId = id
		events[i].ProducerEpoch = producerEpoch
		events[i].ProducerSeq = seq
		next[k] = seq + 1
	}
	return next, true
}

// commit records the sequences a request used, unless the producer was
// renewed since it was numbered.
func (p *Producer) commit(epoch uint64, next map[laneKey]uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.epoch != epoch {
		return
	}
	for k, n := range next {
		p.mu.next[k] = n
	}
}

// renew drops the producer id of epoch (unless already dropped), so that
// the next request takes a fresh id and sequences restart at 1.
func (p *Producer) renew(epoch uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.epoch != epoch {
		return
	}
	p.mu.lastID = p.mu.id
	p.mu.id = ""
	p.mu.epoch++
	clear(p.mu.next)
}

// currentID returns the producer id in use, its producer epoch and the
// local renewal count (epoch), taking a new producer epoch for the last id
// from the cluster when it was dropped. One InitProducer runs at a time;
// the others wait for its answer.
func (p *Producer) currentID(ctx context.Context) (string, uint64, uint64, error) {
	if id, producerEpoch, epoch, ok := p.loadID(); ok {
		return id, producerEpoch, epoch, nil
	}
	select {
	case p.initSlot <- struct{}{}:
	case <-ctx.Done():
		return "", 0, 0, fmt.Errorf("client: producer for %s: waiting for a producer id: %w", p.topic, ctx.Err())
	}
	defer func() { <-p.initSlot }()
	if id, producerEpoch, epoch, ok := p.loadID(); ok {
		return id, producerEpoch, epoch, nil // another request renewed it while we waited
	}
	p.mu.Lock()
	epoch, lastID := p.mu.epoch, p.mu.lastID
	p.mu.Unlock()
	id, producerEpoch, err := p.client.InitProducerEpoch(ctx, lastID)
	if err != nil {
		return "", 0, 0, fmt.Errorf("client: producer for %s: renewing the producer epoch: %w", p.topic, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.epoch == epoch && p.mu.id == "" {
		p.mu.id, p.mu.producerEpoch = id, producerEpoch
	}
	return p.mu.id, p.mu.producerEpoch, p.mu.epoch, nil
}

// loadID returns the id in use, if there is one.
func (p *Producer) loadID() (string, uint64, uint64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.id, p.mu.producerEpoch, p.mu.epoch, p.mu.id != ""
}

// acquire takes the lanes of keys, in order, waiting while ctx lasts. On
// failure it holds none of them.
func (p *Producer) acquire(ctx context.Context, keys []laneKey) error {
	for n, k := range keys {
		p.mu.Lock()
		l, ok := p.mu.lanes[k]
		if !ok {
			l = &lane{slot: make(chan struct{}, 1)}
			p.mu.lanes[k] = l
		}
		l.users++
		p.mu.Unlock()
		select {
		case l.slot <- struct{}{}:
		case <-ctx.Done():
			p.leave(k, l)
			p.release(keys[:n])
			return ctx.Err()
		}
	}
	return nil
}

// release gives back the lanes of keys, held by the caller.
func (p *Producer) release(keys []laneKey) {
	for _, k := range keys {
		p.mu.Lock()
		l := p.mu.lanes[k]
		p.mu.Unlock()
		<-l.slot
		p.leave(k, l)
	}
}

// leave drops the caller from a lane's users, and the lane when unused.
func (p *Producer) leave(k laneKey, l *lane) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l.users--
	if l.users == 0 {
		delete(p.mu.lanes, k)
	}
}
