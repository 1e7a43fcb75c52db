package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/heraldlog/herald/client"
)

// Limits of `herald produce`.
const (
	defaultProduceBatch = 100
	produceBatchMax     = 10_000
	// defaultMaxEventBytes is the server's default topic limit (herald.proto).
	defaultMaxEventBytes = 1 << 20
	stdinBufferBytes     = 64 << 10
)

// newProduceCommand sends one event per stdin line.
func newProduceCommand(env environment) *cobra.Command {
	var (
		opts                            clientOptions
		topic, tenant, key, causationID string
		eventID, schema                 string
		suffixLine                      bool
		ttlMs                           int64
		schemaVersion                   uint32
		batch                           int
	)
	cmd := &cobra.Command{
		Use:   "produce --topic T --tenant A",
		Short: "Produce one event per line of stdin",
		Long: `Produce one event per line of stdin (the trailing newline stripped; a line
may be as long as the topic's max event size). Lines are sent in batches of
--batch, or sooner when stdin pauses. For every acknowledged event one JSON
line is printed, in input order:
  {"partition":0,"offset":12,"sequence":5,"event_id":"...","duplicate":false}
duplicate is true when the cluster already had the event (sent again by a
retry, or by --event-id within the topic's dedupe window); offset and
sequence are then where it was first stored.

Events are sent by an idempotent producer: a failure that may have left a
batch in the log (a timeout, a lost connection, a leader change) is retried
(--retries) without storing it twice. If the retries run out with the
outcome still unknown, herald exits with code 4: that batch's events may or
may not be in the log. Re-running with --event-id ID --event-id-suffix-line
gives the lines the same ids again (ID-1, ID-2, ... by line number), which
a topic with a dedupe window recognises.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case topic == "":
				return usagef("--topic is required")
			case tenant == "":
				return usagef("--tenant is required and must not be empty")
			case batch < 1 || batch > produceBatchMax:
				return usagef("--batch %d: want 1 to %d", batch, produceBatchMax)
			case suffixLine && eventID == "":
				return usagef("--event-id-suffix-line needs --event-id")
			case cmd.Flags().Changed("schema-version") && schema == "":
				return usagef("--schema-version needs --schema")
			}
			if _, err := opts.serverList(); err != nil {
				return err
			}
			ctx := cmd.Context()
			c, err := opts.connect(ctx, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer c.Close()
			info, err := c.DescribeTopic(ctx, topic)
			if err != nil {
				return err
			}
			maxBytes := info.GetConfig().GetMaxEventBytes()
			if maxBytes == 0 {
				maxBytes = defaultMaxEventBytes
			}
			sender, err := c.NewProducer(ctx, topic)
			if err != nil {
				return err
			}
			defer sender.Close()
			template := &client.Event{TenantId: tenant, CausationId: causationID, TtlMs: ttlMs, Schema: schema, SchemaVersion: schemaVersion}
			if key != "" {
				template.Key = []byte(key)
			}
			p := &producer{
				sender: sender, template: template, eventID: eventID, suffixLine: suffixLine,
				batch: batch, out: newJSONWriter(cmd.OutOrStdout()),
			}
			return p.run(ctx, cmd.InOrStdin(), int(min(maxBytes, uint64(produceLineBytesMax))))
		},
	}
	f := cmd.Flags()
	opts.register(f, env)
	f.StringVar(&topic, "topic", "", "topic to produce to (required)")
	f.StringVar(&tenant, "tenant", "", "tenant of every event (required)")
	f.StringVar(&key, "key", "", "key of every event")
	f.StringVar(&causationID, "causation-id", "", "causation id of every event")
	f.StringVar(&eventID, "event-id", "", "event id of every event (a prefix with --event-id-suffix-line); default: a fresh UUIDv7 each")
	f.BoolVar(&suffixLine, "event-id-suffix-line", false, "make each event id --event-id, a dash and the input line number (from 1)")
	f.Var(millisFlag{&ttlMs}, "ttl", "time to live of every event, e.g. 90m or 7d (0: the topic's default)")
	f.StringVar(&schema, "schema", "", "schema name of every event")
	f.Uint32Var(&schemaVersion, "schema-version", 0, "schema version of every event (needs --schema)")
	f.IntVar(&batch, "batch", defaultProduceBatch, "lines per produce request, at most")
	return cmd
}

// produceLineBytesMax bounds one stdin line whatever the topic says.
const produceLineBytesMax = 64 << 20

// producer sends stdin lines in batches and prints their results.
type producer struct {
	sender     *client.Producer
	template   *client.Event // the envelope of every event
	eventID    string        // "": the SDK makes one per event
	suffixLine bool          // eventID is a prefix: ID-<line number>
	batch      int
	out        *jsonWriter
}

// stdinLine is one line read from stdin, or the error that ended reading.
type stdinLine struct {
	number  int
	payload []byte
	err     error
}

// run reads lines of at most maxBytes from r and produces them.
//
// A reader goroutine, owned by run, reads ahead into a channel of one
// batch; it ends at EOF, on a read error, or when run returns (it is then
// blocked at most in one Read of r, which ends when the process does).
func (p *producer) run(ctx context.Context, r io.Reader, maxBytes int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lines := make(chan stdinLine, p.batch)
	go readLines(ctx, bufio.NewReaderSize(r, stdinBufferBytes), maxBytes, lines)

	for {
		first, ok := <-lines
		if !ok {
			return nil
		}
		pending := []stdinLine{first}
		// Fill the batch with what is already read; a pause in stdin
		// sends what we have.
	fill:
		for len(pending) < p.batch && pending[len(pending)-1].err == nil {
			select {
			case l, ok := <-lines:
				if !ok {
					break fill
				}
				pending = append(pending, l)
			default:
				break fill
			}
		}
		var readErr error
		if last := pending[len(pending)-1]; last.err != nil {
			readErr = last.err
			pending = pending[:len(pending)-1]
		}
		if err := p.send(ctx, pending); err != nil {
			return err
		}
		if readErr != nil {
			return readErr
		}
	}
}

// send produces one batch and prints a line per acknowledged event.
func (p *producer) send(ctx context.Context, batch []stdinLine) error {
	if len(batch) == 0 {
		return nil
	}
	events := make([]*client.Event, len(batch))
	for i, l := range batch {
		t := p.template
		events[i] = &client.Event{
			TenantId: t.GetTenantId(), Key: t.GetKey(), CausationId: t.GetCausationId(), TtlMs: t.GetTtlMs(),
			Schema: t.GetSchema(), SchemaVersion: t.GetSchemaVersion(), EventId: p.eventIDOf(l.number), Payload: l.payload,
		}
	}
	results, err := p.sender.Send(ctx, events...)
	for _, r := range results {
		if r == nil {
			continue
		}
		line := producedLine{Partition: r.GetPartition(), Offset: r.GetOffset(), Sequence: r.GetSequence(), EventID: r.GetEventId(), Duplicate: r.GetDuplicate()}
		if werr := p.out.write(line); werr != nil {
			return werr
		}
	}
	if err != nil {
		return fmt.Errorf("stdin lines %d-%d: %w", batch[0].number, batch[len(batch)-1].number, err)
	}
	return nil
}

// eventIDOf returns the event id of input line number ("" lets the SDK
// make one).
func (p *producer) eventIDOf(number int) string {
	if p.suffixLine {
		return fmt.Sprintf("%s-%d", p.eventID, number)
	}
	return p.eventID
}

// readLines sends each line of r to lines, then closes it. A line longer
// than maxBytes, or a read error, is sent as the last item.
func readLines(ctx context.Context, r *bufio.Reader, maxBytes int, lines chan<- stdinLine) {
	defer close(lines)
	for number := 1; ; number++ {
		payload, err := readLine(r, maxBytes)
		if errors.Is(err, io.EOF) {
			return
		}
		item := stdinLine{number: number, payload: payload}
		if err != nil {
			item.err = fmt.Errorf("stdin line %d: %w", number, err)
		}
		select {
		case lines <- item:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// readLine reads one line without its trailing "\n". A line of more than
// maxBytes is read to its end and refused with client.PayloadTooLarge;
// io.EOF means no line was left. A last line without "\n" counts.
func readLine(r *bufio.Reader, maxBytes int) ([]byte, error) {
	var (
		line []byte
		size int
	)
	for {
		chunk, err := r.ReadSlice('\n')
		size += len(chunk)
		if len(line) <= maxBytes { // keep at most maxBytes+1 bytes: enough to tell too long
			line = append(line, chunk[:min(len(chunk), maxBytes+1-len(line))]...)
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if size == 0 {
				return nil, io.EOF
			}
		case err != nil:
			return nil, err
		}
		if size > 0 && err == nil { // ended by "\n"
			size--
			if len(line) > size {
				line = line[:size]
			}
		}
		if size > maxBytes {
			return nil, client.PayloadTooLarge(uint64(size), uint64(maxBytes))
		}
		if line == nil {
			line = []byte{}
		}
		return line, nil
	}
}
