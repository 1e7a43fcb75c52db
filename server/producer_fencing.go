package server

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// initProducerCommand is the body of init_producer (absent in entries
// written before producer epochs, which gave ids "p<counter>"). Persisted
// in the controller's Raft log: fields are append-only.
type initProducerCommand struct {
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

// producerGrant is the result of init_producer: a producer id and its
// epoch. The epoch's high 32 bits are the controller's producer counter,
// which every init_producer advances, so a later grant for the same id
// always has a higher epoch and fences the earlier ones; its low 32 bits
// are random.
type producerGrant struct {
	ID    string
	Epoch uint64
}

// grantProducer applies init_producer. f.mu must be held.
func (f *controllerFSM) grantProducerLocked(c *initProducerCommand) producerGrant {
	counter := f.mu.reg.NextProducerID
	f.mu.reg.NextProducerID++
	switch {
	case c == nil:
		return producerGrant{ID: fmt.Sprintf("p%d", counter), Epoch: counter}
	case c.ID != "":
		return producerGrant{ID: c.ID, Epoch: counter<<32 | uint64(c.EpochLow)}
	default:
		return producerGrant{ID: fmt.Sprintf("p%d-%s", counter, c.Random), Epoch: counter<<32 | uint64(c.EpochLow)}
	}
}

// initProducer proposes init_producer on the controller leader: a new
// producer (unguessable id, fresh epoch) when id is "", else a new, higher
// epoch for id, which fences its older holders in every partition.
func (n *Node) initProducer(_ context.Context, id string) (*heraldpb.InitProducerResponse, error) {
	if len(id) > idBytesMax {
		return nil, wire.InvalidArgument("producer_id", "producer_id is %d bytes; the limit is %d", len(id), idBytesMax)
	}
	random := make([]byte, 16+4)
	if _, err := rand.Read(random); err != nil {
		return nil, fmt.Errorf("server: init producer: %w", err)
	}
	res, err := n.proposeController(controllerCommand{Op: opInitProducer, InitProducer: &initProducerCommand{
		ID: id, Random: hex.EncodeToString(random[:16]), EpochLow: binary.BigEndian.Uint32(random[16:])}})
	if err != nil {
		return nil, err
	}
	grant := res.(producerGrant)
	return &heraldpb.InitProducerResponse{ProducerId: grant.ID, ProducerEpoch: grant.Epoch}, nil
}

func (s *heraldService) InitProducer(ctx context.Context, req *heraldpb.InitProducerRequest) (*heraldpb.InitProducerResponse, error) {
	n := s.node
	return controllerCall(ctx, n, "InitProducer", func() (*heraldpb.InitProducerResponse, error) {
		return n.initProducer(ctx, req.GetProducerId())
	}, func(ctx context.Context, hc heraldpb.HeraldClient) (*heraldpb.InitProducerResponse, error) {
		return hc.InitProducer(ctx, req)
	})
}
