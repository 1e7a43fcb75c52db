package client

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// ErrEpochChanged matches the error of a subscription whose position
// belongs to an earlier epoch of the partition (the topic was deleted and
// recreated): the position means nothing now. The error is an
// *EpochChangedError.
var ErrEpochChanged = wire.ErrEpochChanged

// EpochChangedError says a subscription's position was taken at Epoch
// while the partition is now at CurrentEpoch, whose offsets are [Low,
// High). Where to start in the new epoch is the caller's decision. It
// matches ErrEpochChanged.
//
// Package wire decodes EPOCH_CHANGED as a plain *Error with the metadata;
// the SDK makes this type of it (epochChanged) where a subscription ends.
type EpochChangedError struct {
	Epoch, CurrentEpoch uint64
	Low, High           uint64
}

func (e *EpochChangedError) Error() string {
	return fmt.Sprintf("herald: partition epoch changed: position from epoch %d, partition now at epoch %d (offsets %d..%d)",
		e.Epoch, e.CurrentEpoch, e.Low, e.High)
}

// Is matches ErrEpochChanged.
func (e *EpochChangedError) Is(target error) bool { return target == ErrEpochChanged }

// epochChanged returns err as an *EpochChangedError when it is an
// EPOCH_CHANGED answer, and err otherwise.
func epochChanged(err error) error {
	var herr *wire.Error
	if !errors.As(err, &herr) || herr.Reason != heraldpb.ErrorReason_EPOCH_CHANGED {
		return err
	}
	n := func(key string) uint64 {
		v, _ := strconv.ParseUint(herr.Metadata[key], 10, 64)
		return v
	}
	return &EpochChangedError{
		Epoch: n(wire.MetadataEpoch), CurrentEpoch: n(wire.MetadataCurrentEpoch),
		Low: n(wire.MetadataLowWatermark), High: n(wire.MetadataHighWatermark),
	}
}
