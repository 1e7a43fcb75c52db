package controller

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
)

// Op is a command's number: the first byte of its Raft entry. Persisted in
// the controller's Raft log: append-only, never renumber or reuse. Op
// numbers stay below '{' (0x7B), the first byte of the entries the first
// versions wrote (see decodeEntry).
type Op byte

// The controller's commands.
const (
	OpCreateTopic    Op = 1
	OpAlterTopic     Op = 2
	OpDeleteTopic    Op = 3
	OpCreateTenant   Op = 4
	OpSetTenantQuota Op = 5
	OpInitProducer   Op = 6
	OpMarkLive       Op = 7
)

// Entries in the controller's Raft log, by their first byte:
//
//	1..7  op | CRC32C(op | body) big-endian | body   (written now)
//	0xC1  0xC1 | CRC32C(json) big-endian | json       (read only)
//	'{'   json                                        (read only)
//
// body is the op's command as JSON (low volume, readable with any tool;
// fields are only ever added). It is the frame of a partition command
// (partition/command.go: type, CRC32C, body), except that the checksum
// also covers the op byte: a flipped op would otherwise apply one
// command's body as another's. The two read-only forms are the first
// versions': a JSON envelope ({"version":1,"op":"create_topic",...}),
// first without, then with a checksum.
const (
	entryLegacyChecked byte = 0xC1
	entryLegacyJSON    byte = '{'
	// frameHeaderBytes is the op byte and the CRC32C before a body.
	frameHeaderBytes = 5
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Command is one of the controller's commands: *CreateTopic, *AlterTopic,
// *DeleteTopic, *CreateTenant, *SetTenantQuota, *InitProducer, *MarkLive.
type Command interface {
	Op() Op
}

// CreateTopic creates a topic and places its partitions.
type CreateTopic struct {
	Name              string `json:"name"`
	Partitions        uint32 `json:"partitions"`
	ReplicationFactor uint32 `json:"replication_factor"`
	MaxEventBytes     uint64 `json:"max_event_bytes"`
	CreatedAtUnixNano int64  `json:"created_at_unix_nano"`
	// Nodes are the ids placement may choose from, sorted, as the leader saw
	// the cluster when it proposed; apply places deterministically from them.
	Nodes []string `json:"nodes"`
	Contract
}

// AlterTopic replaces the named contract fields of a topic (with
// Config.AlterContract) and sets its contract version to the entry's index.
type AlterTopic struct {
	Name     string   `json:"name"`
	Fields   []string `json:"fields"`
	Contract Contract `json:"contract"`
}

// DeleteTopic removes a topic and tombstones its groups.
type DeleteTopic struct {
	Name string `json:"name"`
}

// CreateTenant registers a tenant.
type CreateTenant struct {
	Tenant
}

// SetTenantQuota replaces a tenant's quota.
type SetTenantQuota struct {
	ID    string `json:"id"`
	Quota Quota  `json:"quota"`
}

// InitProducer issues a producer id and epoch (see ProducerGrant).
type InitProducer struct {
	// ID is the producer to issue a new epoch for; "" for a new producer.
	ID string `json:"id,omitempty"`
	// Random is 128 random bits in hex, drawn by the leader before
	// proposing (apply stays deterministic), that make a new id
	// unguessable.
	Random string `json:"random,omitempty"`
	// EpochLow is 32 random bits, drawn by the leader, in the low half of
	// the epoch: a reader who learns a producer id (it is in the events'
	// envelope) cannot guess its current epoch.
	EpochLow uint32 `json:"epoch_low,omitempty"`
}

// MarkLive records that groups have been bootstrapped (Partition.Live).
type MarkLive struct {
	GroupIDs []uint64 `json:"group_ids"`
}

// Op implements Command.
func (*CreateTopic) Op() Op { return OpCreateTopic }

// Op implements Command.
func (*AlterTopic) Op() Op { return OpAlterTopic }

// Op implements Command.
func (*DeleteTopic) Op() Op { return OpDeleteTopic }

// Op implements Command.
func (*CreateTenant) Op() Op { return OpCreateTenant }

// Op implements Command.
func (*SetTenantQuota) Op() Op { return OpSetTenantQuota }

// Op implements Command.
func (*InitProducer) Op() Op { return OpInitProducer }

// Op implements Command.
func (*MarkLive) Op() Op { return OpMarkLive }

// newCommand returns an empty command of op, or nil for an op this
// version does not know.
func newCommand(op Op) Command {
	switch op {
	case OpCreateTopic:
		return &CreateTopic{}
	case OpAlterTopic:
		return &AlterTopic{}
	case OpDeleteTopic:
		return &DeleteTopic{}
	case OpCreateTenant:
		return &CreateTenant{}
	case OpSetTenantQuota:
		return &SetTenantQuota{}
	case OpInitProducer:
		return &InitProducer{}
	case OpMarkLive:
		return &MarkLive{}
	}
	return nil
}

// Encode builds the Raft entry of a command: op | CRC32C(op | body) | body.
func Encode(cmd Command) ([]byte, error) {
	body, err := json.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("controller: encode op %d: %w", cmd.Op(), err)
	}
	out := make([]byte, frameHeaderBytes, frameHeaderBytes+len(body))
	out[0] = byte(cmd.Op())
	out = append(out, body...)
	binary.BigEndian.PutUint32(out[1:frameHeaderBytes], frameChecksum(out[0], body))
	return out, nil
}

// frameChecksum is the CRC32C of the op byte followed by the body.
func frameChecksum(op byte, body []byte) uint32 {
	return crc32.Update(crc32.Checksum([]byte{op}, castagnoli), castagnoli, body)
}

// decodeEntry decodes a command entry in any of its forms. Its errors:
// ErrDamagedEntry (with ErrBadEntry) for an entry that fails its
// checksum, ErrBadEntry for a framed entry this version cannot decode,
// and errLegacyRefused for a JSON envelope that cannot be applied.
func decodeEntry(data []byte) (Command, error) {
	switch {
	case len(data) == 0 || data[0] == entryLegacyJSON:
		return decodeLegacy(data)
	case data[0] == entryLegacyChecked:
		if len(data) < frameHeaderBytes {
			return nil, fmt.Errorf("%w: %w: %d bytes", ErrBadEntry, ErrDamagedEntry, len(data))
		}
		body := data[frameHeaderBytes:]
		if want, got := binary.BigEndian.Uint32(data[1:frameHeaderBytes]), crc32.Checksum(body, castagnoli); want != got {
			return nil, fmt.Errorf("%w: %w: checksum mismatch (stored %08x, computed %08x)", ErrBadEntry, ErrDamagedEntry, want, got)
		}
		return decodeLegacy(body)
	}
	if len(data) < frameHeaderBytes {
		return nil, fmt.Errorf("%w: %w: op %d: %d bytes", ErrBadEntry, ErrDamagedEntry, data[0], len(data))
	}
	body := data[frameHeaderBytes:]
	if want, got := binary.BigEndian.Uint32(data[1:frameHeaderBytes]), frameChecksum(data[0], body); want != got {
		return nil, fmt.Errorf("%w: %w: op %d: checksum mismatch (stored %08x, computed %08x): the entry is damaged in this replica's Raft log",
			ErrBadEntry, ErrDamagedEntry, data[0], want, got)
	}
	cmd := newCommand(Op(data[0]))
	if cmd == nil {
		return nil, fmt.Errorf("%w: unknown op %d (written by a newer version?)", ErrBadEntry, data[0])
	}
	if err := json.Unmarshal(body, cmd); err != nil {
		return nil, fmt.Errorf("%w: op %d: %v", ErrBadEntry, data[0], err)
	}
	return cmd, nil
}

// errLegacyRefused marks a JSON envelope that cannot be applied (not JSON,
// or an op this version does not know). Every replica fails the same way on
// the same bytes, so Apply refuses it and the registry stays unchanged
// everywhere, as the first versions did.
var errLegacyRefused = errors.New("controller: entry refused")

// legacyCommand is the JSON envelope of the first versions, with the ops
// named by strings.
type legacyCommand struct {
	Version        int           `json:"version"`
	Op             string        `json:"op"`
	CreateTopic    *CreateTopic  `json:"create_topic,omitempty"`
	AlterTopic     *AlterTopic   `json:"alter_topic,omitempty"`
	DeleteTopic    string        `json:"delete_topic,omitempty"`
	CreateTenant   *Tenant       `json:"create_tenant,omitempty"`
	SetTenantQuota *Tenant       `json:"set_tenant_quota,omitempty"`
	InitProducer   *InitProducer `json:"init_producer,omitempty"`
	MarkLive       []uint64      `json:"mark_live,omitempty"`
}

// decodeLegacy decodes a JSON envelope. A command without its body (the
// envelope allowed it) decodes to a nil pointer of its type: apply refuses
// those, except InitProducer, whose body the first producers' entries did
// not have.
func decodeLegacy(body []byte) (Command, error) {
	var c legacyCommand
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, fmt.Errorf("%w: undecodable command: %w", errLegacyRefused, err)
	}
	switch c.Op {
	case "create_topic":
		return c.CreateTopic, nil
	case "alter_topic":
		return c.AlterTopic, nil
	case "delete_topic":
		return &DeleteTopic{Name: c.DeleteTopic}, nil
	case "create_tenant":
		if c.CreateTenant == nil {
			return (*CreateTenant)(nil), nil
		}
		return &CreateTenant{Tenant: *c.CreateTenant}, nil
	case "set_tenant_quota":
		if c.SetTenantQuota == nil {
			return (*SetTenantQuota)(nil), nil
		}
		return &SetTenantQuota{ID: c.SetTenantQuota.ID, Quota: c.SetTenantQuota.Quota}, nil
	case "init_producer":
		return c.InitProducer, nil
	case "mark_live":
		return &MarkLive{GroupIDs: c.MarkLive}, nil
	}
	return nil, fmt.Errorf("%w: unknown op %q", errLegacyRefused, c.Op)
}
