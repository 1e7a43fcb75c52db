package server

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"

	hraft "github.com/hashicorp/raft"
)

// Controller entries in the Raft log. The first versions wrote the JSON
// command alone (it starts with '{'); entries are now written as
// controllerEntryChecked | CRC32C(json) big-endian | json, so that an entry
// damaged in a replica's Raft log (raft-boltdb has no checksum of its own)
// is found before the registry applies it. Both forms decode. Persisted:
// the marker byte is never reused.
const controllerEntryChecked byte = 0xC1 // never the first byte of JSON

// errDamagedControllerEntry marks a checksummed controller entry that
// fails its checksum or is too short to hold one.
var errDamagedControllerEntry = errors.New("server: damaged controller entry")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// encodeControllerEntry wraps a JSON command with its checksum.
func encodeControllerEntry(command []byte) []byte {
	out := make([]byte, 5, 5+len(command))
	out[0] = controllerEntryChecked
	binary.BigEndian.PutUint32(out[1:5], crc32.Checksum(command, castagnoli))
	return append(out, command...)
}

// decodeControllerEntry returns the JSON command of an entry, checking its
// checksum when it has one.
func decodeControllerEntry(data []byte) ([]byte, error) {
	if len(data) == 0 || data[0] != controllerEntryChecked {
		return data, nil // the first, unchecked form
	}
	if len(data) < 5 {
		return nil, fmt.Errorf("%w: %d bytes", errDamagedControllerEntry, len(data))
	}
	body := data[5:]
	if want, got := binary.BigEndian.Uint32(data[1:5]), crc32.Checksum(body, castagnoli); want != got {
		return nil, fmt.Errorf("%w: checksum mismatch (stored %08x, computed %08x)", errDamagedControllerEntry, want, got)
	}
	return body, nil
}

// checkControllerEntry is the raft.EntryChecker of the controller group:
// a command must pass its checksum (unchecked legacy entries must at least
// be JSON).
func checkControllerEntry(l *hraft.Log) error {
	body, err := decodeControllerEntry(l.Data)
	if err != nil {
		return err
	}
	if len(l.Data) > 0 && l.Data[0] != controllerEntryChecked && !json.Valid(body) {
		return fmt.Errorf("%w: unchecked entry is not JSON", errDamagedControllerEntry)
	}
	return nil
}
