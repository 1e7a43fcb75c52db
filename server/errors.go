package server

import (
	"google.golang.org/grpc/codes"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldpb"
)

// errNodeClosed is returned by calls made while the node shuts down. It
// travels as UNAVAILABLE / NO_LEADER: nothing was applied, and the caller
// retries on another node.
var errNodeClosed error = &client.Error{
	Reason:  heraldpb.ErrorReason_NO_LEADER,
	Code:    codes.Unavailable,
	Message: "server: node is stopping; retry another node",
}
