package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/stenographer-ng/stenographer/stenographer/metrics"
	"github.com/stenographer-ng/stenographer/stenographer/version"
)

// samples gathers g: metric name → label values → value.
func samples(t *testing.T, g prometheus.Gatherer) map[string]map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]float64{}
	for _, mf := range mfs {
		m := map[string]float64{}
		for _, s := range mf.GetMetric() {
			key := ""
			for _, l := range s.GetLabel() {
				key += l.GetName() + "=" + l.GetValue() + " "
			}
			m[key] = value(s)
		}
		out[mf.GetName()] = m
	}
	return out
}

func value(s *dto.Metric) float64 {
	switch {
	case s.Counter != nil:
		return s.Counter.GetValue()
	case s.Gauge != nil:
		return s.Gauge.GetValue()
	case s.Histogram != nil:
		return float64(s.Histogram.GetSampleCount())
	}
	return 0
}

func TestOutcome(t *testing.T) {
	live := context.Background()
	dead, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		ctx       context.Context
		truncated bool
		err       error
		want      string
	}{
		{live, false, nil, metrics.OutcomeOK},
		{live, true, nil, metrics.OutcomeTruncated},
		{live, false, errors.New("disk on fire"), metrics.OutcomeError},
		{live, false, fmt.Errorf("store: %w", context.Canceled), metrics.OutcomeCanceled},
		{dead, false, errors.New("write: broken pipe"), metrics.OutcomeCanceled},
		{dead, true, nil, metrics.OutcomeCanceled},
	} {
		if got := metrics.Outcome(tc.ctx, tc.truncated, tc.err); got != tc.want {
			t.Errorf("Outcome(ctx err %v, %v, %v) = %s, want %s", tc.ctx.Err(), tc.truncated, tc.err, got, tc.want)
		}
	}
}

func TestQueryCounts(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	before := m.Queries()[metrics.TransportGRPC]
	q := m.StartQuery(metrics.TransportGRPC)
	if got := m.Queries()[metrics.TransportGRPC].InFlight - before.InFlight; got != 1 {
		t.Errorf("in flight went up by %d, want 1", got)
	}
	if got := samples(t, reg)["stenographer_queries_in_flight"]["transport=grpc "]; got != 1 {
		t.Errorf("stenographer_queries_in_flight{transport=grpc} = %v, want 1", got)
	}
	q.End(metrics.OutcomeTruncated, 10, 1000, 2)
	m.Refused(metrics.TransportGRPC, metrics.OutcomeBadQuery)
	after := m.Queries()[metrics.TransportGRPC]
	for _, c := range []struct {
		what      string
		got, want int64
	}{
		{"in flight", after.InFlight - before.InFlight, 0},
		{"truncated", after.ByOutcome[metrics.OutcomeTruncated] - before.ByOutcome[metrics.OutcomeTruncated], 1},
		{"bad_query", after.ByOutcome[metrics.OutcomeBadQuery] - before.ByOutcome[metrics.OutcomeBadQuery], 1},
		{"packets", after.Packets - before.Packets, 10},
		{"bytes", after.Bytes - before.Bytes, 1000},
		{"file errors", after.FileErrors - before.FileErrors, 2},
	} {
		if c.got != c.want {
			t.Errorf("%s went up by %d, want %d", c.what, c.got, c.want)
		}
	}
	s := samples(t, reg)
	for _, c := range []struct {
		name, labels string
		min          float64
	}{
		{"stenographer_queries_total", "outcome=truncated transport=grpc ", 1},
		{"stenographer_queries_total", "outcome=bad_query transport=grpc ", 1},
		{"stenographer_served_bytes_total", "transport=grpc ", 1000},
		{"stenographer_served_packets_total", "transport=grpc ", 10},
		{"stenographer_query_file_errors_total", "transport=grpc ", 2},
		{"stenographer_query_duration_seconds", "transport=grpc ", 1}, // bad queries not observed
	} {
		if got, ok := s[c.name][c.labels]; !ok || got != c.min {
			t.Errorf("%s{%s} = %v (present %v), want %v", c.name, c.labels, got, ok, c.min)
		}
	}
}

// TestBuildInfo: every registry New fills says which build it is.
func TestBuildInfo(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	metrics.New(reg)
	want := fmt.Sprintf("commit=%s goversion=%s version=%s ", version.Commit, runtime.Version(), version.Version)
	if got, ok := samples(t, reg)["stenographer_build_info"][want]; !ok || got != 1 {
		t.Errorf("stenographer_build_info{%s} = %v (present %v), want 1; have %v", want, got, ok, samples(t, reg)["stenographer_build_info"])
	}
	// The process's capture counters are on it too.
	if _, ok := samples(t, reg)["stenographer_stenotype_restarts_total"]; !ok {
		t.Error("stenographer_stenotype_restarts_total missing from a registry New filled")
	}
}
