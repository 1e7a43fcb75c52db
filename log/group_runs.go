package log

import (
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// Pending deliveries stored as runs (key layout version 7). A run is one
// 'q' key for consecutive pending offsets that share their delivery count,
// times and member, with one due key ('r') at its not-before: a delivery
// of N new offsets writes one run, and a cumulative acknowledgement
// deletes whole runs and trims at most one. A command that names offsets
// one by one (a redelivery, an acknowledgement, a nack, a dead letter)
// splits the runs that hold them: the offsets it names leave their run
// (acknowledged) or form runs of their own with their new value, and the
// rest of each run stays as it was. k offsets named in one run of a
// command split it into at most 2k+1 runs (k+1 when they leave it), so a
// command of N offsets (at most GroupCommandOffsetsMax) writes at most 3N
// runs, two keys each, and deletes at most N.

// runEdit says what a command does to the offsets it names in run r: the
// outcome of each of them, and, when it is OffsetApplied, whether they
// stop being pending (remove) or else their new value v.
type runEdit func(r pendingRun) (outcome OffsetOutcome, v pendingValue, remove bool)

// runsHolding calls fn, in offset order, with each of group's runs that
// holds an offset of sorted (strictly increasing) and the offsets of
// sorted it holds. It reads through one iterator, which sees the batch as
// it was when the call began.
func (s groupStore) runsHolding(group string, sorted []uint64, fn func(r pendingRun, held []uint64) error) error {
	if len(sorted) == 0 {
		return nil
	}
	prefix := appendGroupPendingPrefix(nil, s.partition, group)
	iter, err := s.r.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixSuccessor(prefix)})
	if err != nil {
		return fmt.Errorf("log: partition %d: consumer group iterator: %w", s.partition, err)
	}
	defer iter.Close()
	key := make([]byte, 0, len(prefix)+8)
	for i := 0; i < len(sorted); {
		// The run holding sorted[i], if any, is the last one starting at
		// or below it. sorted[i] is below the cursor, so +1 cannot wrap.
		key = appendGroupPendingKey(key[:0], s.partition, group, sorted[i]+1)
		if !iter.SeekLT(key) {
			if err := iter.Error(); err != nil {
				return fmt.Errorf("log: partition %d: consumer group scan: %w", s.partition, err)
			}
			i++
			continue
		}
		r, err := s.runFromIter(group, iter)
		if err != nil {
			return err
		}
		if r.last < sorted[i] {
			i++
			continue
		}
		j := i + 1
		for j < len(sorted) && sorted[j] <= r.last {
			j++
		}
		if err := fn(r, sorted[i:j]); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// splitRun returns what is left of run r when its offsets held (strictly
// increasing, all in r) take value v, or leave it when remove: the pieces
// of r not held keep r's value, each stretch of consecutive held offsets
// becomes one run of v (none when remove). The pieces are in offset order.
func splitRun(r pendingRun, held []uint64, v pendingValue, remove bool) []pendingRun {
	pieces := make([]pendingRun, 0, 2*len(held)+1)
	at := r.first
	for i := 0; i < len(held); {
		j := i
		for j+1 < len(held) && held[j+1] == held[j]+1 {
			j++
		}
		if held[i] > at {
			pieces = append(pieces, pendingRun{first: at, last: held[i] - 1, v: r.v})
		}
		if !remove {
			pieces = append(pieces, pendingRun{first: held[i], last: held[j], v: v})
		}
		at = held[j] + 1 // held[j] is at most r.last, below the cursor
		i = j + 1
	}
	if at <= r.last {
		pieces = append(pieces, pendingRun{first: at, last: r.last, v: r.v})
	}
	return pieces
}

// editRunsLocked applies edit to group's pending offsets among offsets
// (h is the group's header before; any order, repeats allowed) and returns
// each offset's outcome in offsets' order, and how many offsets left the
// pending state. An offset at or above the cursor is OffsetNotDelivered,
// one below it and not pending OffsetAlreadyDone; a pending one gets
// edit's outcome for its run, except that an offset named again after it
// was removed is OffsetAlreadyDone. db.lifecycle must be read-held.
// Failures are sticky.
func (b *Batch) editRunsLocked(name string, h groupHeader, offsets []uint64, edit runEdit) ([]OffsetOutcome, uint64, error) {
	outcomes := make([]OffsetOutcome, len(offsets))
	sorted := make([]uint64, 0, len(offsets))
	for i, offset := range offsets {
		if offset >= h.delivered {
			outcomes[i] = OffsetNotDelivered
			continue
		}
		sorted = append(sorted, offset)
	}
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	sortedOutcomes := make([]OffsetOutcome, len(sorted))
	removes := make([]bool, len(sorted))

	// Every run is read before the first write.
	type change struct {
		r      pendingRun
		pieces []pendingRun
	}
	var changes []change
	var removed uint64
	next := 0 // index in sorted of the first offset not yet placed
	err := b.groupStoreLocked().runsHolding(name, sorted, func(r pendingRun, held []uint64) error {
		for sorted[next] != held[0] {
			sortedOutcomes[next] = OffsetAlreadyDone
			next++
		}
		outcome, v, remove := edit(r)
		for i := range held {
			sortedOutcomes[next+i], removes[next+i] = outcome, remove && outcome == OffsetApplied
		}
		next += len(held)
		if outcome != OffsetApplied {
			return nil
		}
		if remove {
			removed += uint64(len(held))
		}
		changes = append(changes, change{r: r, pieces: splitRun(r, held, v, remove)})
		return nil
	})
	if err != nil {
		return nil, 0, b.fail(err)
	}
	for ; next < len(sorted); next++ {
		sortedOutcomes[next] = OffsetAlreadyDone
	}

	for _, c := range changes {
		pieces := c.pieces
		if len(pieces) > 0 && pieces[0].first == c.r.first {
			if err := b.putRun(name, pieces[0], c.r, true); err != nil {
				return nil, 0, err
			}
			pieces = pieces[1:]
		} else if err := b.deleteRun(name, c.r); err != nil {
			return nil, 0, err
		}
		for _, piece := range pieces {
			if err := b.putRun(name, piece, pendingRun{}, false); err != nil {
				return nil, 0, err
			}
		}
	}

	seen := make([]bool, len(sorted))
	for i, offset := range offsets {
		if offset >= h.delivered {
			continue
		}
		k, _ := slices.BinarySearch(sorted, offset)
		outcomes[i] = sortedOutcomes[k]
		if removes[k] && seen[k] {
			outcomes[i] = OffsetAlreadyDone
		}
		seen[k] = true
	}
	return outcomes, removed, nil
}
