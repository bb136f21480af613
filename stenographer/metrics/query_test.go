package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/stenographer-ng/stenographer/stenographer/metrics"
	"github.com/stenographer-ng/stenographer/stenographer/server/servertest"
	"github.com/stenographer-ng/stenographer/stenographer/store"
)

// samples gathers the default registry: metric name → label values → value.
func samples(t *testing.T) map[string]map[string]float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
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
		ctx  context.Context
		res  *store.Result
		err  error
		want string
	}{
		{live, &store.Result{}, nil, metrics.OutcomeOK},
		{live, &store.Result{Truncated: true}, nil, metrics.OutcomeTruncated},
		{live, nil, errors.New("disk on fire"), metrics.OutcomeError},
		{live, &store.Result{}, fmt.Errorf("store: %w", context.Canceled), metrics.OutcomeCanceled},
		{dead, &store.Result{}, errors.New("write: broken pipe"), metrics.OutcomeCanceled},
		{dead, &store.Result{}, nil, metrics.OutcomeCanceled},
	} {
		if got := metrics.Outcome(tc.ctx, tc.res, tc.err); got != tc.want {
			t.Errorf("Outcome(ctx err %v, %+v, %v) = %s, want %s", tc.ctx.Err(), tc.res, tc.err, got, tc.want)
		}
	}
}

func TestQueryCounts(t *testing.T) {
	before := metrics.Queries()[metrics.TransportGRPC]
	q := metrics.StartQuery(metrics.TransportGRPC)
	if got := metrics.Queries()[metrics.TransportGRPC].InFlight - before.InFlight; got != 1 {
		t.Errorf("in flight went up by %d, want 1", got)
	}
	if got := samples(t)["stenographer_queries_in_flight"]["transport=grpc "]; got < 1 {
		t.Errorf("stenographer_queries_in_flight{transport=grpc} = %v, want ≥ 1", got)
	}
	q.End(metrics.OutcomeTruncated, 10, 1000, 2)
	metrics.StartQuery(metrics.TransportGRPC).End(metrics.OutcomeBadQuery, 0, 0, 0)
	after := metrics.Queries()[metrics.TransportGRPC]
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
	s := samples(t)
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
		if got, ok := s[c.name][c.labels]; !ok || got < c.min {
			t.Errorf("%s{%s} = %v (present %v), want ≥ %v", c.name, c.labels, got, ok, c.min)
		}
	}
}

// TestRegisterStore registers two stores in turn: the registry reports the
// latest one's files, and registering again does not panic.
func TestRegisterStore(t *testing.T) {
	a := servertest.Store(t, servertest.Layout{Packets: 40, PerFile: 10, Step: time.Second})
	b := servertest.Store(t, servertest.Layout{Packets: 100, PerFile: 10, Size: 500, Step: time.Second})
	for _, st := range []*store.Store{a, b, b} {
		metrics.RegisterStore(st)
		s := samples(t)
		for th := range st.Threads() {
			files := st.Files(th)
			var size int64
			for _, f := range files {
				size += f.Size
			}
			label := fmt.Sprintf("thread=%d ", th)
			if got := s["stenographer_stored_files"][label]; got != float64(len(files)) {
				t.Errorf("thread %d: stored_files %v, want %d", th, got, len(files))
			}
			if got := s["stenographer_stored_bytes"][label]; got != float64(size) {
				t.Errorf("thread %d: stored_bytes %v, want %d", th, got, size)
			}
			age := s["stenographer_oldest_packet_age_seconds"][label]
			if want := time.Since(files[0].Start).Seconds(); age < want-60 || age > want+60 {
				t.Errorf("thread %d: oldest age %.0f s, want about %.0f", th, age, want)
			}
		}
	}
	metrics.RegisterStore(nil)
	if s := samples(t); len(s["stenographer_stored_files"]) != 0 {
		t.Errorf("stored_files reported with no store: %v", s["stenographer_stored_files"])
	}
}
