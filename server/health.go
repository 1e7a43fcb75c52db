package server

import (
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/heraldlog/herald/client/heraldpb"
)

// The standard gRPC health service (grpc.health.v1.Health) on the node's
// gRPC server, for load balancers and orchestrators. Two services are
// reported, "" (the server as a whole) and herald.v1.Herald, both with the
// same status: SERVING while the node is ready (the checks of /readyz,
// ready()), NOT_SERVING before that and from the moment Close begins.
// The health service reads no cluster state and carries no tenant data:
// it needs no credentials and is not held back by the serving gate.

// healthUpdateInterval is how often the health loop re-checks readiness.
const healthUpdateInterval = 250 * time.Millisecond

// healthServices are the service names the health service reports.
var healthServices = []string{"", heraldpb.Herald_ServiceDesc.ServiceName}

// newHealthServer returns the node's health server with every service
// NOT_SERVING (grpc's default for "" is SERVING: the node is not ready
// when its gRPC server starts).
func newHealthServer() *health.Server {
	h := health.NewServer()
	for _, s := range healthServices {
		h.SetServingStatus(s, healthpb.HealthCheckResponse_NOT_SERVING)
	}
	return h
}

// healthLoop keeps the health service's status equal to ready() until the
// node stops. It is the one writer of the status while the node runs;
// Close then calls Shutdown, which sets NOT_SERVING and ignores any later
// update. Started by StartNode once the controller is open; Close waits
// for it (n.wg).
func (n *Node) healthLoop() {
	defer n.wg.Done()
	tick := time.NewTicker(healthUpdateInterval)
	defer tick.Stop()
	last := healthpb.HealthCheckResponse_NOT_SERVING
	for {
		status := healthpb.HealthCheckResponse_NOT_SERVING
		if n.ready() == nil {
			status = healthpb.HealthCheckResponse_SERVING
		}
		if status != last {
			for _, s := range healthServices {
				n.health.SetServingStatus(s, status)
			}
			n.logger.Debug("grpc health", "status", status.String())
			last = status
		}
		select {
		case <-n.stop:
			return
		case <-tick.C:
		}
	}
}
