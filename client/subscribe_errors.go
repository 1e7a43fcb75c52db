package client

import "github.com/heraldlog/herald/client/wire"

// ErrEpochChanged matches the error of a subscription whose position
// belongs to an earlier epoch of the partition (the topic was deleted and
// recreated): the position means nothing now. The error is an
// *EpochChangedError.
var ErrEpochChanged = wire.ErrEpochChanged

// EpochChangedError says a subscription's position was taken at Epoch
// while the partition is now at CurrentEpoch, whose offsets are [Low,
// High) (wire.EpochChangedError). It matches ErrEpochChanged.
type EpochChangedError = wire.EpochChangedError
