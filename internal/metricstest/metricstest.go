// Package metricstest checks Prometheus collectors in tests: Lint gathers a
// registry and reports every problem promlint finds as a test error, so each
// package's metrics follow the naming guide (docs/ARCHITECTURE.md, Conventions).
//
// It is imported only by _test.go files; nothing in the server links it.
package metricstest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
)

// Lint gathers g, fails the test if gathering fails, reports each lint
// problem with t.Errorf and returns the gathered families for further checks.
func Lint(t testing.TB, g prometheus.Gatherer) []*dto.MetricFamily {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	LintFamilies(t, mfs)
	return mfs
}

// LintFamilies is Lint over families the test has already gathered.
func LintFamilies(t testing.TB, mfs []*dto.MetricFamily) {
	t.Helper()
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatalf("lint metrics: %v", err)
	}
	for _, p := range problems {
		t.Errorf("metric lint: %s: %s", p.Metric, p.Text)
	}
}
