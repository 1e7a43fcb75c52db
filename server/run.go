package server

import (
	"context"
)

// Run starts a node and blocks until ctx is cancelled, then shuts it down
// cleanly. It returns an error if the node cannot start.
func Run(ctx context.Context, cfg Config) error {
	n, err := StartNodeContext(ctx, cfg)
	if err != nil {
		return err
	}
	<-ctx.Done()
	n.Close()
	return nil
}
