package server

import "errors"

// errNodeClosed is returned by calls made while the node shuts down.
var errNodeClosed = errors.New("server: node is closed")
