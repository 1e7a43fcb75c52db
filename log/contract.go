package log

import "encoding/binary"

// The contract version is the version of its topic's contract (the
// registry's Raft index of the topic's creation or latest alter) that a
// partition has been fenced with: the partition's state machine refuses
// produce calls checked against an older contract. It only grows. It is a
// meta value of the partition, so it is in every snapshot.

// ContractVersion returns the partition's contract version as b sees it
// (its own writes over the committed state); 0 when never fenced.
func (b *Batch) ContractVersion() (uint64, error) {
	if err := b.begin(); err != nil {
		return 0, err
	}
	defer b.end()
	return b.contractVersionLocked()
}

func (b *Batch) contractVersionLocked() (uint64, error) {
	value, found, err := b.getLocked(appendMetaKey(nil, b.partition.id, metaContract), "contract version")
	if err != nil || !found {
		return 0, err
	}
	if len(value) != 8 {
		return 0, b.corrupt("meta %q is %d bytes, want 8", metaContract, len(value))
	}
	return binary.BigEndian.Uint64(value), nil
}

// FenceContract raises the partition's contract version to version and
// returns the version in force afterwards; a lower version changes
// nothing.
func (b *Batch) FenceContract(version uint64) (uint64, error) {
	if err := b.begin(); err != nil {
		return 0, err
	}
	defer b.end()
	current, err := b.contractVersionLocked()
	if err != nil {
		return 0, err
	}
	if version <= current {
		return current, nil
	}
	if err := b.set(appendMetaKey(nil, b.partition.id, metaContract), encodeUint64(version), "contract version"); err != nil {
		return 0, err
	}
	return version, nil
}

// ContractVersion returns the committed contract version (0: never fenced).
func (p *Partition) ContractVersion() (uint64, error) {
	if err := p.db.acquire(); err != nil {
		return 0, err
	}
	defer p.db.release()
	v, _, err := p.getUint64(p.db.pebble, metaContract)
	return v, err
}
