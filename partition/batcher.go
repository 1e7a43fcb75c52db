package partition

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	hraft "github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldlog/herald/partition/partitionpb"
)

// BatcherOptions bound the leader-side batcher.
type BatcherOptions struct {
	// QueueCallsMax bounds produce calls waiting to be batched; a caller
	// blocks (until its context ends) when the queue is full.
	QueueCallsMax int
	// QueueBytesMax bounds the encoded bytes of the calls a leader holds
	// (queued, gathered or in flight, until each has its answer). A call
	// that would take it above the bound is refused at once with
	// *QueueFullError: nothing proposed, retry later. It is at least
	// EntryBytesMax, so one call of any acceptable size fits an idle queue.
	QueueBytesMax int
	// BatchRecordsMax and BatchBytesMax cap one Raft entry, BatchBytesMax
	// by its encoded size (the command as proposed, not the payloads). A
	// single call larger than the caps still goes, alone, up to
	// EntryBytesMax.
	BatchRecordsMax int
	BatchBytesMax   int
	// EntryBytesMax is the hard cap of one entry's encoded size: a call
	// whose records alone would encode larger is refused before anything is
	// proposed (EntryTooLargeError). It must not exceed what one
	// AppendEntries message can carry (raft Transport.EntryBytesMax;
	// ReplicaConfig.Validate checks), or the entry could never replicate.
	EntryBytesMax int
	// InflightMax bounds Raft applies in flight at once. While all slots are
	// busy, arriving calls queue up and leave together in the next entry:
	// this is what makes one fsync carry many events under load.
	InflightMax int
	// Linger is how long to wait for more calls when a batch is not full
	// and slots are free; 0 sends at once (lowest latency when idle).
	Linger time.Duration
	// EnqueueTimeout bounds how long raft.Apply may wait to enqueue.
	EnqueueTimeout time.Duration
}

// DefaultEntryBytesMax is the default BatcherOptions.EntryBytesMax: room for
// two events of the largest size a topic allows (16 MiB with the envelope),
// half of the default 64 MiB Raft message.
const DefaultEntryBytesMax = 32 << 20

// DefaultQueueBytesMax is the default BatcherOptions.QueueBytesMax: two
// entries of the largest size, so a leader of many partitions holds a known
// amount of produce data per partition however many clients push at it.
const DefaultQueueBytesMax = 2 * DefaultEntryBytesMax

// DefaultBatcherOptions are the defaults, chosen so that one 128-byte-event
// entry stays well under the transport's message limit.
func DefaultBatcherOptions() BatcherOptions {
	return BatcherOptions{
		QueueCallsMax:   4096,
		QueueBytesMax:   DefaultQueueBytesMax,
		BatchRecordsMax: 8192,
		BatchBytesMax:   4 << 20,
		EntryBytesMax:   DefaultEntryBytesMax,
		InflightMax:     4,
		Linger:          0,
		EnqueueTimeout:  5 * time.Second,
	}
}

// Validate reports every problem at once.
func (o *BatcherOptions) Validate() error {
	var errs []error
	if o.QueueCallsMax <= 0 {
		errs = append(errs, errors.New("partition: QueueCallsMax must be positive"))
	}
	if o.BatchRecordsMax <= 0 {
		errs = append(errs, errors.New("partition: BatchRecordsMax must be positive"))
	}
	if o.BatchBytesMax <= 0 {
		errs = append(errs, errors.New("partition: BatchBytesMax must be positive"))
	}
	if o.EntryBytesMax < o.BatchBytesMax {
		errs = append(errs, fmt.Errorf("partition: EntryBytesMax %d must be at least BatchBytesMax %d", o.EntryBytesMax, o.BatchBytesMax))
	}
	if o.QueueBytesMax <= 0 || o.QueueBytesMax < o.EntryBytesMax {
		errs = append(errs, fmt.Errorf("partition: QueueBytesMax %d must be at least EntryBytesMax %d", o.QueueBytesMax, o.EntryBytesMax))
	}
	if o.InflightMax <= 0 {
		errs = append(errs, errors.New("partition: InflightMax must be positive"))
	}
	if o.Linger < 0 {
		errs = append(errs, errors.New("partition: Linger must not be negative"))
	}
	if o.EnqueueTimeout <= 0 {
		errs = append(errs, errors.New("partition: EnqueueTimeout must be positive"))
	}
	return errors.Join(errs...)
}

// Batcher gathers concurrent produce calls on a partition leader into one
// raft.Apply each, with up to InflightMax applies in flight.
//
// Submit may be called from any goroutine. One goroutine (run) owns batch
// formation; one goroutine per in-flight apply waits for its future. Close
// stops both and fails every queued call with ErrClosed.
type Batcher struct {
	raft    *hraft.Raft
	opts    BatcherOptions
	logger  *slog.Logger
	metrics *Metrics
	groupID uint64
	now     func() time.Time

	queue       *fairQueue
	queuedBytes atomic.Int64     // of calls taken by Submit and not yet answered
	queueGauge  prometheus.Gauge // herald_admission_queue_bytes of the partition; nil without metrics
	// tenantBytes holds each tenant's share of queuedBytes (tenants with
	// calls held only), bounded by tenantBytesMax.
	tenantMu    sync.Mutex
	tenantBytes map[string]int
	inflight    chan struct{}
	stop        chan struct{} // closed by Close: no new work
	done        chan struct{} // closed by Close once run and every waiter returned
	wg          sync.WaitGroup
	once        sync.Once
}

// The states of a produce call: queued until the batcher takes it into an
// entry (proposed), or withdrawn by its caller (or its deadline) first.
const (
	callQueued int32 = iota
	callTaken
	callWithdrawn
)

type produceCall struct {
	records []*partitionpb.AppendRecord
	bytes   int             // encoded, in an append entry (appendRecordBytes)
	tenant  string          // the first record's: the fair queue's key
	ctx     context.Context // the caller's: a call whose context ended is not proposed
	state   atomic.Int32
	result  chan callResult // buffered 1: the waiter never blocks
}

// answer delivers c's result and releases its bytes from the queue bounds;
// every call Submit reserved is answered exactly once.
func (b *Batcher) answer(c *produceCall, res callResult) {
	b.release(c)
	c.result <- res
}

// newProduceCall returns a call for records, sized as they encode in an
// append entry.
func newProduceCall(ctx context.Context, records []*partitionpb.AppendRecord) *produceCall {
	call := &produceCall{records: records, ctx: ctx, result: make(chan callResult, 1)}
	for _, r := range records {
		call.bytes += appendRecordBytes(r)
	}
	if len(records) > 0 {
		call.tenant = records[0].TenantId
	}
	return call
}

type callResult struct {
	assigned []Assigned
	err      error
}

// NewBatcher starts a batcher proposing to r.
func NewBatcher(groupID uint64, r *hraft.Raft, opts BatcherOptions, logger *slog.Logger, metrics *Metrics) (*Batcher, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	b := &Batcher{
		raft:        r,
		opts:        opts,
		logger:      logger,
		metrics:     metrics,
		groupID:     groupID,
		now:         time.Now,
		queue:       newFairQueue(opts.BatchBytesMax/4, opts.QueueCallsMax),
		tenantBytes: make(map[string]int),
		inflight:    make(chan struct{}, opts.InflightMax),
		queueGauge:  metrics.queueBytesGauge(groupID),
		stop:        make(chan struct{}),
		done:        make(chan struct{}),
	}
	b.wg.Add(1)
	go b.run()
	return b, nil
}

// Submit proposes records and waits until they are committed on a quorum
// and applied here, returning each record's offset and tenant sequence in
// order, and a throttle hint when the queue is more than half full.
// Errors: ErrNotLeader (not proposed), ErrClosed (not proposed),
// *EntryTooLargeError (not proposed), *QueueFullError (not proposed), ctx's
// error alone (it ended before the call was proposed: not proposed),
// ErrUnknownOutcome (proposed; may or may not commit).
//
// tenantBytesMax, when positive, caps the bytes the call's tenant (its
// first record's) may hold here below its default share.
func (b *Batcher) Submit(ctx context.Context, records []*partitionpb.AppendRecord, tenantBytesMax int) ([]Assigned, time.Duration, error) {
	select {
	case <-b.stop:
		return nil, 0, ErrClosed
	default:
	}
	call := newProduceCall(ctx, records)
	if entryBytes := appendCommandOverheadBytes + call.bytes; entryBytes > b.opts.EntryBytesMax {
		return nil, 0, &EntryTooLargeError{Records: len(records), EntryBytes: entryBytes, EntryBytesMax: b.opts.EntryBytesMax}
	}
	if b.raft.State() != hraft.Leader {
		return nil, 0, ErrNotLeader
	}
	throttle, err := b.reserve(call, tenantBytesMax)
	if err != nil {
		return nil, 0, err
	}
	if err := b.queue.push(ctx, call); err != nil {
		b.release(call)
		return nil, 0, err // not queued: nothing proposed
	}
	select {
	case res := <-call.result:
		return res.assigned, throttle, res.err
	case <-ctx.Done():
		if call.state.CompareAndSwap(callQueued, callWithdrawn) {
			// Not taken into an entry, and now never will be: the batcher
			// drops it (and releases its bytes) when it comes to it.
			b.metrics.observeRefused(call.tenant, refusedDeadline)
			return nil, 0, ctx.Err()
		}
		return nil, 0, fmt.Errorf("%w: %w", ErrUnknownOutcome, ctx.Err())
	case <-b.done:
		// Every call run took has its result by now; one still without a
		// result was queued after run stopped and was never proposed.
		select {
		case res := <-call.result:
			return res.assigned, throttle, res.err
		default:
			return nil, 0, ErrClosed
		}
	}
}

// reserve counts call's bytes against the partition's bound and its
// tenant's share (capped by tenantBytesMax when positive), or refuses it (*QueueFullError) with nothing reserved.
// An idle queue, or a tenant holding nothing, always takes one call. The
// throttle hint grows from zero at half of a bound to queueThrottleMax at
// the bound.
func (b *Batcher) reserve(call *produceCall, tenantBytesMax int) (time.Duration, error) {
	queued := b.queuedBytes.Add(int64(call.bytes))
	if queued > int64(b.opts.QueueBytesMax) && queued > int64(call.bytes) {
		b.queuedBytes.Add(-int64(call.bytes))
		b.metrics.observeQueueFull()
		b.metrics.observeRefused(call.tenant, refusedPartitionQueue)
		return 0, &QueueFullError{QueuedBytes: int(queued) - call.bytes, CallBytes: call.bytes, QueueBytesMax: b.opts.QueueBytesMax}
	}
	share := b.tenantBytesMax()
	if tenantBytesMax > 0 {
		share = min(share, tenantBytesMax)
	}
	b.tenantMu.Lock()
	held := b.tenantBytes[call.tenant]
	if held > 0 && held+call.bytes > share {
		b.tenantMu.Unlock()
		b.queuedBytes.Add(-int64(call.bytes))
		b.metrics.observeQueueFull()
		b.metrics.observeRefused(call.tenant, refusedPartitionQueue)
		return 0, &QueueFullError{Tenant: call.tenant, QueuedBytes: held, CallBytes: call.bytes, QueueBytesMax: share}
	}
	b.tenantBytes[call.tenant] = held + call.bytes
	b.tenantMu.Unlock()
	b.setQueueGauge(queued)
	fill := max(float64(queued)/float64(b.opts.QueueBytesMax), float64(held+call.bytes)/float64(share))
	if fill <= 0.5 {
		return 0, nil
	}
	return time.Duration(float64(queueThrottleMax) * min(1, (fill-0.5)*2)), nil
}

// setQueueGauge exports the queue's bytes.
func (b *Batcher) setQueueGauge(bytes int64) {
	if b.queueGauge != nil {
		b.queueGauge.Set(float64(bytes))
	}
}

// release gives back a call's reservation: once answered, or when it was
// never queued.
func (b *Batcher) release(call *produceCall) {
	b.setQueueGauge(b.queuedBytes.Add(-int64(call.bytes)))
	b.tenantMu.Lock()
	if left := b.tenantBytes[call.tenant] - call.bytes; left > 0 {
		b.tenantBytes[call.tenant] = left
	} else {
		delete(b.tenantBytes, call.tenant)
	}
	b.tenantMu.Unlock()
}

// tenantBytesMax is the most of the queue bound one tenant may hold: half
// of it, and at least one entry, so that a tenant in a tight loop leaves
// the other half to everyone else.
func (b *Batcher) tenantBytesMax() int {
	return max(b.opts.QueueBytesMax/2, b.opts.EntryBytesMax)
}

// queueThrottleMax is the throttle hint of a full queue: about the time a
// leader takes to commit what its queue holds.
const queueThrottleMax = 100 * time.Millisecond

// Close stops the batcher and waits for in-flight applies to finish.
func (b *Batcher) Close() {
	b.once.Do(func() {
		close(b.stop)
		b.wg.Wait()
		close(b.done)
	})
	<-b.done
}

func (b *Batcher) run() {
	defer b.wg.Done()
	defer b.failQueued()
	var carry *produceCall // a call that did not fit the previous batch
	for {
		first := carry
		carry = nil
		for first == nil {
			c, ready := b.queue.pop()
			if c != nil {
				first = c
				break
			}
			select {
			case <-ready:
			case <-b.stop:
				return
			}
		}
		// Waiting for a free slot is where calls pile up and batch.
		select {
		case b.inflight <- struct{}{}:
		case <-b.stop:
			b.answer(first, callResult{err: ErrClosed})
			return
		}
		calls, leftover := b.gather(first)
		if len(calls) == 0 {
			<-b.inflight
		} else {
			b.propose(calls)
		}
		carry = leftover
	}
}

// take claims c for the entry being formed, unless its caller withdrew it
// or its context ended first; then c is answered (nothing proposed) and
// take reports false.
func (b *Batcher) take(c *produceCall) bool {
	if c.ctx.Err() == nil && c.state.CompareAndSwap(callQueued, callTaken) {
		return true
	}
	if c.state.CompareAndSwap(callQueued, callWithdrawn) {
		b.metrics.observeRefused(c.tenant, refusedDeadline)
	}
	b.answer(c, callResult{err: c.ctx.Err()})
	return false
}

// gather takes first plus whatever else is queued, up to the caps, waiting
// up to Linger for more when the batch is not full. A call that would
// overflow the caps is returned as leftover to lead the next batch, so
// each tenant's calls keep their arrival order. Calls whose context ended
// are dropped, answered, without being proposed.
func (b *Batcher) gather(first *produceCall) (calls []*produceCall, leftover *produceCall) {
	records, size := 0, appendCommandOverheadBytes
	if b.take(first) {
		calls = []*produceCall{first}
		records, size = len(first.records), size+first.bytes
	}
	var linger <-chan time.Time
	if b.opts.Linger > 0 {
		t := time.NewTimer(b.opts.Linger)
		defer t.Stop()
		linger = t.C
	}
	for records < b.opts.BatchRecordsMax && size < b.opts.BatchBytesMax {
		c, ready := b.queue.pop()
		if c == nil {
			if linger == nil {
				return calls, nil
			}
			select {
			case <-ready:
				continue
			case <-linger:
				return calls, nil
			case <-b.stop:
				return calls, nil
			}
		}
		if len(calls) > 0 && (records+len(c.records) > b.opts.BatchRecordsMax || size+c.bytes > b.opts.BatchBytesMax) {
			return calls, c
		}
		if !b.take(c) {
			continue
		}
		calls = append(calls, c)
		records += len(c.records)
		size += c.bytes
	}
	return calls, nil
}

// propose sends one Raft entry for calls; it owns one inflight slot, which
// the waiter goroutine releases.
func (b *Batcher) propose(calls []*produceCall) {
	cmd := &partitionpb.AppendCommand{ProducedAtUnixNano: b.now().UnixNano()}
	for _, c := range calls {
		cmd.Records = append(cmd.Records, c.records...)
	}
	data, err := encodeAppend(cmd)
	if err == nil && len(data) > b.opts.EntryBytesMax { // Submit and gather keep it below: assert before proposing
		err = fmt.Errorf("entry of %d bytes above EntryBytesMax %d", len(data), b.opts.EntryBytesMax)
	}
	if err != nil {
		b.finish(calls, nil, fmt.Errorf("partition %d: encode: %w", b.groupID, err))
		<-b.inflight
		return
	}
	start := b.now()
	future := b.raft.Apply(data, b.opts.EnqueueTimeout)
	b.metrics.observeBatch(len(cmd.Records), len(data))
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer func() { <-b.inflight }()
		err := future.Error()
		b.metrics.observeApply(b.now().Sub(start), err)
		if err != nil {
			b.finish(calls, nil, classifyApplyError(err))
			return
		}
		res, ok := future.Response().(*appendResult)
		if !ok || res == nil {
			b.finish(calls, nil, fmt.Errorf("%w: partition %d: entry applied without a result", ErrUnknownOutcome, b.groupID))
			return
		}
		if res.err != nil {
			b.finish(calls, nil, res.err)
			return
		}
		b.finish(calls, res.assigned, nil)
	}()
}

// finish hands each call its slice of the assigned positions, or the error.
func (b *Batcher) finish(calls []*produceCall, assigned []Assigned, err error) {
	i := 0
	for _, c := range calls {
		if err != nil {
			b.answer(c, callResult{err: err})
			continue
		}
		n := len(c.records)
		if i+n > len(assigned) {
			b.answer(c, callResult{err: fmt.Errorf("%w: partition %d: %d positions for %d records", ErrUnknownOutcome, b.groupID, len(assigned), i+n)})
			continue
		}
		mine := assigned[i : i+n : i+n]
		i += n
		var refused error
		for _, a := range mine {
			if a.Err != nil {
				refused = a.Err
				break
			}
		}
		if refused != nil {
			b.answer(c, callResult{err: refused})
			continue
		}
		b.answer(c, callResult{assigned: mine})
	}
}

func (b *Batcher) failQueued() {
	for _, c := range b.queue.close() {
		b.answer(c, callResult{err: ErrClosed})
	}
}

// classifyApplyError separates "never proposed" from "fate unknown".
func classifyApplyError(err error) error {
	switch {
	case errors.Is(err, hraft.ErrNotLeader), errors.Is(err, hraft.ErrEnqueueTimeout),
		errors.Is(err, hraft.ErrLeadershipTransferInProgress):
		// Answered before the entry reached the log.
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	default:
		// ErrLeadershipLost, ErrRaftShutdown, ...: it may be in the log.
		return fmt.Errorf("%w: %v", ErrUnknownOutcome, err)
	}
}
