package main

import (
	"errors"
	"fmt"
	"net"
	"strings"

	dto "github.com/prometheus/client_model/go"

	"github.com/heraldlog/herald/server"
)

// Where `herald top` and `herald tenant describe` read the nodes' /metrics.
// By default, each node's public HTTP address from the cluster status. A
// cluster that requires client credentials hides every tenant series
// there (it says so with server.MetricTenantSeriesHidden); its admin
// listeners (`serve --admin-addr`) serve them, and --admin names those.

// adminFlagUsage is the help of the --admin flag of both commands.
const adminFlagUsage = "the nodes' admin listeners (their --admin-addr) to read /metrics from, as host:port,...: a cluster that requires credentials shows tenant series only there (default: each node's HTTP address from the cluster status)"

// tenantSeriesHiddenHint is printed when a node's public /metrics hides
// its tenant series.
const tenantSeriesHiddenHint = "no tenant series: this cluster hides them on its public port; use --admin"

// adminAddrsMax bounds the addresses --admin takes.
const adminAddrsMax = 1000

// parseAdminAddrs parses --admin: host:port addresses separated by commas
// (blanks ignored, repeats dropped, order kept).
func parseAdminAddrs(s string) ([]string, error) {
	var (
		out  []string
		errs []error
		seen = map[string]bool{}
	)
	for _, a := range strings.Split(s, ",") {
		a = strings.TrimSpace(a)
		if a == "" || seen[a] {
			continue
		}
		seen[a] = true
		if _, _, err := net.SplitHostPort(a); err != nil {
			errs = append(errs, fmt.Errorf("--admin %q: want host:port", a))
			continue
		}
		out = append(out, a)
	}
	if len(out) > adminAddrsMax {
		errs = append(errs, fmt.Errorf("--admin: %d addresses, at most %d", len(out), adminAddrsMax))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, usageError{err}
	}
	return out, nil
}

// tenantSeriesHidden reports whether an exposition says it hides its
// tenant series.
func tenantSeriesHidden(families map[string]*dto.MetricFamily) bool {
	for _, m := range families[server.MetricTenantSeriesHidden].GetMetric() {
		if sampleValue(m) == 1 {
			return true
		}
	}
	return false
}
