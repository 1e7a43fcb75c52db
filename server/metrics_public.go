package server

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// What the public HTTP port's /metrics shows. With client credentials
// required (Config.Auth), an anonymous scrape must not learn which tenants
// exist or what they do, so every series that carries a tenant label is
// dropped there; the admin listener (admin.go) serves them all. Without
// credentials nothing is secret from a caller who can produce and read, and
// the public /metrics is the full set, as before.

// tenantLabel is the label that marks a series as tenant data.
const tenantLabel = "tenant"

// MetricTenantSeriesHidden is the gauge (value 1) the public /metrics
// carries when it hides the tenant series: tools that read tenant usage
// from it (`herald top`, `herald tenant describe`) tell "hidden" from
// "none yet".
const MetricTenantSeriesHidden = "herald_metrics_tenant_series_hidden"

// withoutTenantSeries wraps a Gatherer and drops every series with a
// tenant label, and every family left without series. It filters what
// the collectors produce at each scrape, so a metric added later with a
// tenant label is hidden without being listed here.
type withoutTenantSeries struct {
	inner prometheus.Gatherer
}

var _ prometheus.Gatherer = withoutTenantSeries{}

// Gather gathers the inner Gatherer's families and filters them; an error
// of the inner Gatherer is passed on with what it did gather (filtered),
// as promhttp expects.
func (g withoutTenantSeries) Gather() ([]*dto.MetricFamily, error) {
	families, err := g.inner.Gather()
	out := families[:0]
	for _, mf := range families {
		kept := mf.Metric[:0]
		for _, m := range mf.Metric {
			if !hasLabel(m, tenantLabel) {
				kept = append(kept, m)
			}
		}
		if len(kept) == 0 {
			continue
		}
		mf.Metric = kept
		out = append(out, mf)
	}
	return out, err
}

// hasLabel reports whether m carries the label name.
func hasLabel(m *dto.Metric, name string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return true
		}
	}
	return false
}

// publicGatherer returns what the public HTTP port's /metrics serves from
// the node's registry: everything without client credentials; with them,
// the registry without tenant series, plus MetricTenantSeriesHidden.
func publicGatherer(reg *prometheus.Registry, auth AuthConfig) prometheus.Gatherer {
	if !auth.Enabled() {
		return reg
	}
	marker := prometheus.NewRegistry()
	marker.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: MetricTenantSeriesHidden,
		Help: "1: this endpoint hides every series with a tenant label (client credentials are required); the admin listener serves them.",
	}, func() float64 { return 1 }))
	return prometheus.Gatherers{withoutTenantSeries{inner: reg}, marker}
}
