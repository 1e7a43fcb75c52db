package controller

import "fmt"

// ProducerGrant is the result of InitProducer: a producer id and its
// epoch. The epoch's high 32 bits are the controller's producer counter,
// which every InitProducer advances, so a later grant for the same id
// always has a higher epoch and fences the earlier ones; its low 32 bits
// are random.
type ProducerGrant struct {
	ID    string
	Epoch uint64
}

// grantProducerLocked applies InitProducer. c is nil for the entries
// written before producer epochs, which gave ids "p<counter>". f.mu must be
// held.
func (f *FSM) grantProducerLocked(c *InitProducer) ProducerGrant {
	counter := f.mu.reg.NextProducerID
	f.mu.reg.NextProducerID++
	switch {
	case c == nil:
		return ProducerGrant{ID: fmt.Sprintf("p%d", counter), Epoch: counter}
	case c.ID != "":
		return ProducerGrant{ID: c.ID, Epoch: counter<<32 | uint64(c.EpochLow)}
	default:
		return ProducerGrant{ID: fmt.Sprintf("p%d-%s", counter, c.Random), Epoch: counter<<32 | uint64(c.EpochLow)}
	}
}
