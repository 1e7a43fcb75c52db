package server

import (
	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// errNodeClosed is returned by calls made while the node shuts down. It
// travels as UNAVAILABLE / NO_LEADER: nothing was applied, and the caller
// retries on another node. Its code comes from the error table.
var errNodeClosed error = &wire.Error{
	Reason:  heraldpb.ErrorReason_NO_LEADER,
	Message: "server: node is stopping; retry another node",
}
