package server

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	"github.com/heraldlog/herald/server/controller"
)

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
	res, err := n.proposeController(&controller.InitProducer{
		ID: id, Random: hex.EncodeToString(random[:16]), EpochLow: binary.BigEndian.Uint32(random[16:])})
	if err != nil {
		return nil, err
	}
	grant := res.(controller.ProducerGrant)
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
