package log

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// restoreBatchBytesMax bounds the Pebble batch a restore fills before it
// commits it and starts another.
const restoreBatchBytesMax = 4 << 20

// Restore replaces the partition's whole content with a snapshot stream
// written by [Snapshot.WriteTo] (of any partition id). In order: it writes
// the "restoring" marker and deletes the partition's range in one synced
// batch; writes the entries in batches of at most 4 MiB; checks the
// trailer's CRC and entry count, the restored meta against the records and
// the consumer groups' headers against their pending deliveries;
// then deletes the marker with a synced write, which makes everything
// durable, and publishes the restored state.
//
// A truncated or corrupt stream is an error matching ErrCorruption; a
// failing reader returns its error. On any error the marker stays: the
// partition refuses writes and snapshots (ErrRestoreIncomplete) until a
// Restore or Drop succeeds, and if the node restarts first, DB.Partition
// wipes it. Readers meanwhile see an empty partition. Writer only.
func (p *Partition) Restore(r io.Reader) error {
	db := p.db
	if err := db.acquire(); err != nil {
		return err
	}
	defer db.release()
	p.writeMu.Lock()
	defer p.writeMu.Unlock()

	p.restoring.Store(true)
	p.resetLocked()

	lower, upper := partitionBounds(p.id)
	restoringKey := appendMetaKey(nil, p.id, metaRestoring)
	start := db.pebble.NewBatch()
	defer start.Close()
	if err := start.DeleteRange(lower, upper, nil); err != nil {
		return fmt.Errorf("log: partition %d: restore: %w", p.id, err)
	}
	// Set after DeleteRange in one batch: the marker survives the delete.
	if err := start.Set(restoringKey, nil, nil); err != nil {
		return fmt.Errorf("log: partition %d: restore: %w", p.id, err)
	}
	if err := start.Commit(db.durableWriteOptions()); err != nil {
		return fmt.Errorf("log: partition %d: restore: write marker: %w", p.id, err)
	}
	if err := db.makeDurableLocked(); err != nil {
		return fmt.Errorf("log: partition %d: restore: write marker: %w", p.id, err)
	}

	streamApplied, err := p.restoreEntriesLocked(r)
	if err != nil {
		return err
	}
	state, err := p.loadState(db.pebble)
	if err != nil {
		return fmt.Errorf("log: partition %d: restored image is inconsistent: %w", p.id, err)
	}
	if state.applied != streamApplied {
		return p.streamCorrupt("header applied index %d, restored meta says %d", streamApplied, state.applied)
	}
	if err := (groupStore{partition: p.id, r: db.pebble, nearOffset: state.nextOffset}).check(); err != nil {
		return fmt.Errorf("log: partition %d: restored consumer groups are inconsistent: %w", p.id, err)
	}
	if err := (groupStore{partition: p.id, r: db.pebble, nearOffset: state.nextOffset}).checkMarks(); err != nil {
		return fmt.Errorf("log: partition %d: restored consumer group marks are inconsistent: %w", p.id, err)
	}
	// The WAL is ordered, and so are flushes: making the marker's deletion
	// durable makes the entry batches before it durable too.
	if err := db.pebble.Delete(restoringKey, db.durableWriteOptions()); err != nil {
		return fmt.Errorf("log: partition %d: restore: delete marker: %w", p.id, err)
	}
	if err := db.makeDurableLocked(); err != nil {
		return fmt.Errorf("log: partition %d: restore: delete marker: %w", p.id, err)
	}
	p.publishState(state)
	p.generation.Add(1)
	p.restoring.Store(false)
	p.logger.Info("log: partition restored",
		"applied", state.applied, "low_watermark", state.lowWatermark, "high_watermark", state.nextOffset)
	return nil
}

// streamCorrupt returns an error matching ErrCorruption for a bad stream.
func (p *Partition) streamCorrupt(format string, args ...any) error {
	return fmt.Errorf("%w: partition %d: snapshot stream: %s", ErrCorruption, p.id, fmt.Sprintf(format, args...))
}

// restoreEntriesLocked reads the stream and writes its entries under the
// partition's prefix in bounded batches (NoSync), checking every entry and
// the trailer. It returns the applied index of the header. db.lifecycle
// must be read-held and p.writeMu held.
func (p *Partition) restoreEntriesLocked(r io.Reader) (appliedIndex uint64, err error) {
	sr := &snapshotReader{partition: p, buf: bufio.NewReaderSize(r, snapshotBufferBytes), crc: crc32.New(castagnoli)}

	var header [snapshotHeaderBytes]byte
	if err := sr.readFull(header[:]); err != nil {
		return 0, err
	}
	appliedIndex, problem := parseSnapshotHeader(header)
	if problem != "" {
		return 0, p.streamCorrupt("%s", problem)
	}

	batch := p.db.pebble.NewBatch()
	defer func() { batch.Close() }()
	var (
		count        uint64
		previousKey  []byte
		key          = appendPartitionPrefix(make([]byte, 0, partitionPrefixBytes+relativeKeyBytesMax), p.id)
		value        []byte
		views        []recordView
		lengthBuffer [8]byte
	)
	for {
		if count%snapshotEntriesPerCloseCheck == 0 && p.db.closing.Load() {
			return 0, ErrClosed
		}
		tag, err := sr.readByte()
		if err != nil {
			return 0, err
		}
		if tag == snapshotTagTrailer {
			break
		}
		if tag != snapshotTagEntry {
			return 0, p.streamCorrupt("unknown tag %q after %d entries", tag, count)
		}

		if err := sr.readFull(lengthBuffer[:4]); err != nil {
			return 0, err
		}
		keyBytes := binary.BigEndian.Uint32(lengthBuffer[:4])
		if keyBytes == 0 || keyBytes > relativeKeyBytesMax {
			return 0, p.streamCorrupt("entry %d: key length %d out of bounds", count, keyBytes)
		}
		key = key[:partitionPrefixBytes+int(keyBytes)]
		if err := sr.readFull(key[partitionPrefixBytes:]); err != nil {
			return 0, err
		}
		if err := sr.readFull(lengthBuffer[:4]); err != nil {
			return 0, err
		}
		valueBytes := binary.BigEndian.Uint32(lengthBuffer[:4])
		if uint64(valueBytes) > valueBytesMax(key[partitionPrefixBytes]) {
			return 0, p.streamCorrupt("entry %d: value length %d out of bounds for key %x", count, valueBytes, key[partitionPrefixBytes:])
		}
		// Grow the buffer as the bytes arrive, not to the announced length:
		// a corrupt length on a short stream costs no more than the stream.
		value = value[:0]
		for remaining := int(valueBytes); remaining > 0; {
			chunk := min(remaining, snapshotBufferBytes)
			value = slices.Grow(value, chunk)[:len(value)+chunk]
			if err := sr.readFull(value[len(value)-chunk:]); err != nil {
				return 0, err
			}
			remaining -= chunk
		}
		if previousKey != nil && bytes.Compare(key, previousKey) <= 0 {
			return 0, p.streamCorrupt("entry %d: key %x is not above the previous key", count, key[partitionPrefixBytes:])
		}
		if err := p.checkEntry(key, value, &views); err != nil {
			return 0, err
		}
		previousKey = append(previousKey[:0], key...)

		if err := batch.Set(key, value, nil); err != nil {
			return 0, fmt.Errorf("log: partition %d: restore: %w", p.id, err)
		}
		count++
		if batch.Len() >= restoreBatchBytesMax {
			if err := batch.Commit(pebble.NoSync); err != nil {
				return 0, fmt.Errorf("log: partition %d: restore: commit: %w", p.id, err)
			}
			batch.Close()
			batch = p.db.pebble.NewBatch()
		}
	}

	if err := sr.readFull(lengthBuffer[:8]); err != nil {
		return 0, err
	}
	if streamCount := binary.BigEndian.Uint64(lengthBuffer[:8]); streamCount != count {
		return 0, p.streamCorrupt("trailer counts %d entries, stream has %d", streamCount, count)
	}
	computed := sr.crc.Sum32()
	if _, err := io.ReadFull(sr.buf, lengthBuffer[:4]); err != nil {
		return 0, sr.readError(err)
	}
	if stored := binary.BigEndian.Uint32(lengthBuffer[:4]); stored != computed {
		return 0, p.streamCorrupt("checksum mismatch: stored %08x, computed %08x", stored, computed)
	}
	if _, err := sr.buf.ReadByte(); err == nil {
		return 0, p.streamCorrupt("data after the trailer")
	} else if !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("log: partition %d: read snapshot stream: %w", p.id, err)
	}
	if err := batch.Commit(pebble.NoSync); err != nil {
		return 0, fmt.Errorf("log: partition %d: restore: commit: %w", p.id, err)
	}
	return appliedIndex, nil
}

// valueBytesMax bounds the value of an entry of kind.
func valueBytesMax(kind byte) uint64 {
	switch kind {
	case kindRecord:
		return recordValueBytesMax
	case kindChunk:
		return chunkValueBytesMax
	case kindTenantChunk:
		return tenantChunkValueBytes
	case kindEventID:
		return eventEntryValueBytes
	case kindProducer, kindProducerWindow:
		return producerValueBytes
	case kindGroup:
		return groupHeaderBytesMax
	case kindGroupPending:
		return groupPendingValueMax
	case kindGroupDue, kindGroupMarkOffset:
		return 0
	case kindGroupMark:
		return groupMarkValueBytes
	default:
		return 8
	}
}

// checkEntry checks one restored entry (full key, under p's prefix);
// views is scratch space for decoding chunks.
func (p *Partition) checkEntry(key, value []byte, views *[]recordView) error {
	relative := key[partitionPrefixBytes:]
	switch relative[0] {
	case kindRecord:
		offset, ok := parseRecordKey(p.id, key)
		if !ok {
			return p.streamCorrupt("malformed record key %x", relative)
		}
		if _, err := parseRecordValue(p.id, offset, value); err != nil {
			return err
		}
	case kindTenantIndex:
		if _, _, ok := parseTenantIndexKey(p.id, key); !ok || len(value) != 8 {
			return p.streamCorrupt("malformed tenant index entry %x", relative)
		}
	case kindChunk:
		base, ok := parseChunkKey(p.id, key)
		if !ok {
			return p.streamCorrupt("malformed chunk key %x", relative)
		}
		_, decoded, err := decodeChunk(p.id, base, value, *views)
		*views = decoded
		if err != nil {
			return err
		}
	case kindTenantChunk:
		_, firstSeq, ok := parseTenantChunkKey(p.id, key)
		if _, count, valueOK := decodeTenantChunkValue(value); !ok || !valueOK || firstSeq == 0 || firstSeq+count < firstSeq {
			return p.streamCorrupt("malformed sparse tenant index entry %x", relative)
		}
	case kindMeta:
		switch string(relative[1:]) {
		case metaApplied, metaNextOffset, metaLowWatermark, metaLastTimestamp, metaBytes, metaContract:
		default:
			return p.streamCorrupt("unexpected meta key %q", relative[1:])
		}
		if len(value) != 8 {
			return p.streamCorrupt("meta %q is %d bytes, want 8", relative[1:], len(value))
		}
	case kindTenantNext:
		if !validTenant(string(relative[1:])) || len(value) != 8 {
			return p.streamCorrupt("malformed tenant next entry %x", relative)
		}
	case kindProducer:
		if _, _, ok := parseProducerKey(p.id, key); !ok {
			return p.streamCorrupt("malformed producer key %x", relative)
		}
		if _, ok := decodeProducerState(value); !ok {
			return p.streamCorrupt("malformed producer state %x", value)
		}
	case kindProducerWindow:
		if _, _, _, ok := parseProducerWindowKey(p.id, key); !ok || len(value) != producerWindowValueBytes {
			return p.streamCorrupt("malformed producer window entry %x", relative)
		}
	case kindEventID:
		if _, _, ok := parseEventIDKey(p.id, key); !ok || len(value) != eventEntryValueBytes {
			return p.streamCorrupt("malformed event id entry %x", relative)
		}
	case kindEventExpiry:
		if _, _, _, ok := parseEventExpiryKey(p.id, key); !ok || len(value) != 0 {
			return p.streamCorrupt("malformed event expiry entry %x", relative)
		}
	case kindTimeIndex:
		if _, _, ok := parseTimeIndexKey(p.id, key); !ok || len(value) != 0 {
			return p.streamCorrupt("malformed time index entry %x", relative)
		}
	case kindGroup, kindGroupPending, kindGroupDue, kindGroupMark, kindGroupMarkOffset, kindGroupMarkCount:
		if err := p.checkGroupEntry(key, value); err != nil {
			return p.streamCorrupt("%v", err)
		}
	default:
		return p.streamCorrupt("unknown key kind %q", relative[0])
	}
	return nil
}

// snapshotReader reads a snapshot stream, keeping its CRC.
type snapshotReader struct {
	partition *Partition
	buf       *bufio.Reader
	crc       hash.Hash32
}

// readFull fills b from the stream and adds it to the CRC.
func (sr *snapshotReader) readFull(b []byte) error {
	if _, err := io.ReadFull(sr.buf, b); err != nil {
		return sr.readError(err)
	}
	sr.crc.Write(b) // hash.Hash.Write never fails
	return nil
}

// readByte reads one byte from the stream and adds it to the CRC.
func (sr *snapshotReader) readByte() (byte, error) {
	var b [1]byte
	if err := sr.readFull(b[:]); err != nil {
		return 0, err
	}
	return b[0], nil
}

// readError classifies a read failure: an early end of the stream is
// corruption (a truncated stream); anything else is the reader's error.
func (sr *snapshotReader) readError(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return sr.partition.streamCorrupt("truncated")
	}
	return fmt.Errorf("log: partition %d: read snapshot stream: %w", sr.partition.id, err)
}
