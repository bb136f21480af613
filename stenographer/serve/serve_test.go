package serve_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stenographer-ng/stenographer/stenographer/metrics"
	"github.com/stenographer-ng/stenographer/stenographer/pcap"
	"github.com/stenographer-ng/stenographer/stenographer/serve"
	"github.com/stenographer-ng/stenographer/stenographer/server/servertest"
)

var layout = servertest.Layout{Packets: 400, PerFile: 100, Step: 100 * time.Millisecond}

// sink records what reaches it; with hold set, its first Write blocks
// until hold is closed.
type sink struct {
	buf     bytes.Buffer
	flushes int
	hold    chan struct{}
	writing chan struct{} // closed at the first Write
}

func (s *sink) Write(p []byte) (int, error) {
	if s.writing != nil {
		close(s.writing)
		s.writing = nil
		<-s.hold
	}
	return s.buf.Write(p)
}

func (s *sink) Flush() error { s.flushes++; return nil }

func newRunner(t *testing.T, maxRunning int, maxWait time.Duration) (*serve.Runner, *metrics.Metrics) {
	t.Helper()
	m := metrics.New(prometheus.NewRegistry())
	r, err := serve.New(serve.Config{Store: servertest.Store(t, layout), Metrics: m, MaxRunning: maxRunning, MaxWait: maxWait})
	if err != nil {
		t.Fatal(err)
	}
	return r, m
}

func TestRun(t *testing.T) {
	t.Parallel()
	r, m := newRunner(t, 0, 0)
	want, _ := servertest.Expected(t, r.Store(), "port 1003", pcap.Limits{})
	var s sink
	o := r.Run(context.Background(), serve.Request{Transport: metrics.TransportLocal, Text: "port 1003"}, &s)
	if o.Outcome != metrics.OutcomeOK || o.Err != nil || !bytes.Equal(s.buf.Bytes(), want) || o.Bytes != int64(len(want)) {
		t.Errorf("outcome %+v, %d bytes; want ok and the store's %d", o, s.buf.Len(), len(want))
	}
	// The header leaves before the query runs, the first packet at once,
	// the rest at the end.
	if s.flushes < 3 {
		t.Errorf("%d flushes, want at least header, first packet, end", s.flushes)
	}
	if q := m.Queries()[metrics.TransportLocal]; q.ByOutcome[metrics.OutcomeOK] != 1 || q.InFlight != 0 {
		t.Errorf("counts %+v", q)
	}
}

func TestRefusedBeforeWriting(t *testing.T) {
	t.Parallel()
	r, m := newRunner(t, 0, 0)
	for _, tc := range []struct{ text, err string }{
		{"port 70000", "position"},
		{strings.Repeat("(", serve.MaxQueryBytes+1), "MaxQueryBytes"},
	} {
		var s sink
		o := r.Run(context.Background(), serve.Request{Transport: metrics.TransportLocal, Text: tc.text}, &s)
		if o.Outcome != metrics.OutcomeBadQuery || o.Err == nil || !strings.Contains(o.Err.Error(), tc.err) {
			t.Errorf("%.20q: %+v; want bad_query naming %q", tc.text, o, tc.err)
		}
		if s.buf.Len() != 0 || s.flushes != 0 {
			t.Errorf("%.20q: the sink was written to before the refusal", tc.text)
		}
	}
	if n := m.Queries()[metrics.TransportLocal].ByOutcome[metrics.OutcomeBadQuery]; n != 2 {
		t.Errorf("%d bad queries counted, want 2", n)
	}
}

// TestBusy holds the one running slot: the next query waits MaxWait and
// is refused busy without touching its sink, one whose client leaves
// while waiting is canceled, and once the slot is free a query runs.
func TestBusy(t *testing.T) {
	t.Parallel()
	r, m := newRunner(t, 1, 200*time.Millisecond)
	held := &sink{hold: make(chan struct{}), writing: make(chan struct{})}
	writing := held.writing
	first := make(chan serve.Outcome, 1)
	go func() {
		first <- r.Run(context.Background(), serve.Request{Transport: metrics.TransportHTTP, Text: "port 1001"}, held)
	}()
	<-writing

	var s sink
	o := r.Run(context.Background(), serve.Request{Transport: metrics.TransportGRPC, Text: "port 1001"}, &s)
	if o.Outcome != metrics.OutcomeBusy || !errors.Is(o.Err, serve.ErrBusy) || s.buf.Len() != 0 {
		t.Errorf("second query: %+v, %d bytes written; want busy before writing", o, s.buf.Len())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if o := r.Run(ctx, serve.Request{Transport: metrics.TransportGRPC, Text: "port 1001"}, &s); o.Outcome != metrics.OutcomeCanceled {
		t.Errorf("query whose client left while waiting: %+v; want canceled", o)
	}
	if n := m.Queries()[metrics.TransportGRPC].InFlight + m.Queries()[metrics.TransportHTTP].InFlight; n != 1 {
		t.Errorf("%d in flight, want the 1 holding the slot", n)
	}
	close(held.hold)
	if o := <-first; o.Outcome != metrics.OutcomeOK {
		t.Errorf("first query: %+v", o)
	}
	if o := r.Run(context.Background(), serve.Request{Transport: metrics.TransportGRPC, Text: "port 1001"}, &s); o.Outcome != metrics.OutcomeOK {
		t.Errorf("query after the slot was freed: %+v", o)
	}
	// Every query's wait is in /metrics: gRPC's busy one waited MaxWait.
	count, sum, waiting := waits(t, m, metrics.TransportGRPC)
	if count != 3 || sum < 0.2 || waiting != 0 {
		t.Errorf("gRPC waits: %d observed, %.3f s in all, %v waiting; want 3, at least 0.2 s, 0", count, sum, waiting)
	}
	if count, _, _ := waits(t, m, metrics.TransportHTTP); count != 1 {
		t.Errorf("HTTP waits: %d observed, want 1", count)
	}
}

// waits reads stenographer_query_wait_seconds and
// stenographer_queries_waiting of transport from m's registry.
func waits(t *testing.T, m *metrics.Metrics, transport string) (count uint64, sum, waiting float64) {
	t.Helper()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			if len(mt.GetLabel()) != 1 || mt.GetLabel()[0].GetValue() != transport {
				continue
			}
			switch f.GetName() {
			case "stenographer_query_wait_seconds":
				count, sum = mt.GetHistogram().GetSampleCount(), mt.GetHistogram().GetSampleSum()
			case "stenographer_queries_waiting":
				waiting = mt.GetGauge().GetValue()
			}
		}
	}
	return count, sum, waiting
}
