package metrics

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stenographer-ng/stenographer/stenographer/version"
)

// Transports label the query metrics.
const (
	TransportHTTP = "http"
	TransportGRPC = "grpc"
	// TransportLocal is stenoquery's pipe.
	TransportLocal = "local"
)

// Outcomes of a query, the outcome label of stenographer_queries_total.
const (
	OutcomeOK        = "ok"        // complete result
	OutcomeTruncated = "truncated" // complete up to a limit the request or the server set
	OutcomeBadQuery  = "bad_query" // refused before running: bad query text or parameter
	OutcomeBusy      = "busy"      // refused before running: too many queries at once
	OutcomeCanceled  = "canceled"  // the client went away or the server shut down
	OutcomeError     = "error"     // the result could not be produced or sent
)

// Metrics are one server's query metrics, on the registry given to New.
type Metrics struct {
	reg             *prometheus.Registry
	queriesTotal    *prometheus.CounterVec
	queryDuration   *prometheus.HistogramVec
	servedBytes     *prometheus.CounterVec
	servedPackets   *prometheus.CounterVec
	queriesInFlight *prometheus.GaugeVec
	queryFileErrors *prometheus.CounterVec
	queryWait       *prometheus.HistogramVec
	queriesWaiting  *prometheus.GaugeVec

	// Prometheus counters cannot be read back cheaply, so the totals that
	// /debug/stats shows are kept beside them.
	countsMu sync.Mutex
	counts   map[string]*QueryCounts
}

// New registers the query metrics, the process's capture counters and
// stenographer_build_info on reg.
func New(reg *prometheus.Registry) *Metrics {
	m := &Metrics{
		reg: reg,
		queriesTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stenographer_queries_total",
			Help: "Queries answered, by transport (http, grpc) and outcome (ok, truncated, bad_query, busy, canceled, error).",
		}, []string{"transport", "outcome"}),
		queryDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "stenographer_query_duration_seconds",
			Help:    "Time from receiving a query to its last byte sent, by transport (refused queries excluded).",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"transport"}),
		servedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stenographer_served_bytes_total",
			Help: "PCAP bytes produced for queries, headers included, by transport.",
		}, []string{"transport"}),
		servedPackets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stenographer_served_packets_total",
			Help: "Packets produced for queries, by transport.",
		}, []string{"transport"}),
		queriesInFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "stenographer_queries_in_flight",
			Help: "Queries running now, by transport.",
		}, []string{"transport"}),
		queryFileErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stenographer_query_file_errors_total",
			Help: "Files a query could not read completely (the query went on without them), by transport.",
		}, []string{"transport"}),
		queryWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "stenographer_query_wait_seconds",
			Help:    "Time each query (or explain) waited for a running slot (--max_queries), by transport: 0 when one was free; those that gave up count too.",
			Buckets: []float64{.001, .01, .1, .5, 1, 2.5, 5, 10},
		}, []string{"transport"}),
		queriesWaiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "stenographer_queries_waiting",
			Help: "Queries waiting now for a running slot, by transport.",
		}, []string{"transport"}),
		counts: map[string]*QueryCounts{},
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "stenographer_build_info",
		Help: "Always 1; the labels say which build is running.",
		ConstLabels: prometheus.Labels{
			"version": version.Version, "commit": version.Commit, "goversion": runtime.Version(),
		},
	})
	buildInfo.Set(1)
	reg.MustRegister(m.queriesTotal, m.queryDuration, m.servedBytes, m.servedPackets,
		m.queriesInFlight, m.queryFileErrors, m.queryWait, m.queriesWaiting, buildInfo)
	reg.MustRegister(processCollectors...)
	return m
}

// StartWait counts a query of transport waiting for a running slot; the
// returned function ends the wait.
func (m *Metrics) StartWait(transport string) (done func()) {
	start := time.Now()
	m.queriesWaiting.WithLabelValues(transport).Inc()
	return func() {
		m.queriesWaiting.WithLabelValues(transport).Dec()
		m.queryWait.WithLabelValues(transport).Observe(time.Since(start).Seconds())
	}
}

// Registry returns the registry New registered on, for /metrics.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// QueryCounts are one transport's query totals since the process started,
// for /debug/stats.
type QueryCounts struct {
	InFlight   int64            `json:"in_flight"`
	ByOutcome  map[string]int64 `json:"by_outcome"`
	Packets    int64            `json:"packets_served"`
	Bytes      int64            `json:"bytes_served"`
	FileErrors int64            `json:"file_errors"`
}

func (m *Metrics) countsFor(transport string) *QueryCounts {
	c := m.counts[transport]
	if c == nil {
		c = &QueryCounts{ByOutcome: map[string]int64{}}
		m.counts[transport] = c
	}
	return c
}

// Queries returns a copy of the query totals per transport.
func (m *Metrics) Queries() map[string]QueryCounts {
	m.countsMu.Lock()
	defer m.countsMu.Unlock()
	out := map[string]QueryCounts{}
	for _, t := range []string{TransportHTTP, TransportGRPC} {
		m.countsFor(t)
	}
	for t, c := range m.counts {
		cp := *c
		cp.ByOutcome = map[string]int64{}
		for k, v := range c.ByOutcome {
			cp.ByOutcome[k] = v
		}
		out[t] = cp
	}
	return out
}

// Query tracks one query from its arrival to its end. Create it with
// StartQuery and end it exactly once with End.
type Query struct {
	m         *Metrics
	transport string
	start     time.Time
}

// StartQuery counts a query in flight on transport.
func (m *Metrics) StartQuery(transport string) *Query {
	m.queriesInFlight.WithLabelValues(transport).Inc()
	m.countsMu.Lock()
	m.countsFor(transport).InFlight++
	m.countsMu.Unlock()
	return &Query{m: m, transport: transport, start: time.Now()}
}

// Refused counts a query that never ran (OutcomeBadQuery, OutcomeBusy).
// It is never in flight, not even for an instant: a sampler of the
// in-flight gauge must not see a refused query beside the running ones.
func (m *Metrics) Refused(transport, outcome string) {
	m.queriesTotal.WithLabelValues(transport, outcome).Inc()
	m.countsMu.Lock()
	m.countsFor(transport).ByOutcome[outcome]++
	m.countsMu.Unlock()
}

// End records the query's outcome, the packets and PCAP bytes it
// produced (also when it ended early) and the files it could not read.
func (q *Query) End(outcome string, packets, bytes int64, fileErrors int) {
	m, t := q.m, q.transport
	m.queriesInFlight.WithLabelValues(t).Dec()
	m.queriesTotal.WithLabelValues(t, outcome).Inc()
	if outcome != OutcomeBadQuery && outcome != OutcomeBusy {
		m.queryDuration.WithLabelValues(t).Observe(time.Since(q.start).Seconds())
	}
	m.servedPackets.WithLabelValues(t).Add(float64(packets))
	m.servedBytes.WithLabelValues(t).Add(float64(bytes))
	m.queryFileErrors.WithLabelValues(t).Add(float64(fileErrors))
	m.countsMu.Lock()
	c := m.countsFor(t)
	c.InFlight--
	c.ByOutcome[outcome]++
	c.Packets += packets
	c.Bytes += bytes
	c.FileErrors += int64(fileErrors)
	m.countsMu.Unlock()
}

// Outcome classifies the end of a query run under ctx: err is what
// running it returned, truncated whether a limit cut it short.
func Outcome(ctx context.Context, truncated bool, err error) string {
	switch {
	case ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return OutcomeCanceled
	case err != nil:
		return OutcomeError
	case truncated:
		return OutcomeTruncated
	}
	return OutcomeOK
}
