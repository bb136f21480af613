package metrics

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stenographer-ng/stenographer/stenographer/store"
)

// Transports label the query metrics.
const (
	TransportHTTP = "http"
	TransportGRPC = "grpc"
)

// Outcomes of a query, the outcome label of stenographer_queries_total.
const (
	OutcomeOK        = "ok"        // complete result
	OutcomeTruncated = "truncated" // complete up to a limit the request or the server set
	OutcomeBadQuery  = "bad_query" // refused before running: bad query text or parameter
	OutcomeCanceled  = "canceled"  // the client went away or the server shut down
	OutcomeError     = "error"     // the result could not be produced or sent
)

var (
	queriesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stenographer_queries_total",
		Help: "Queries answered, by transport (http, grpc) and outcome (ok, truncated, bad_query, canceled, error).",
	}, []string{"transport", "outcome"})
	queryDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "stenographer_query_duration_seconds",
		Help:    "Time from receiving a query to its last byte sent, by transport (bad queries excluded).",
		Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
	}, []string{"transport"})
	servedBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stenographer_served_bytes_total",
		Help: "PCAP bytes produced for queries, headers included, by transport.",
	}, []string{"transport"})
	servedPackets = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stenographer_served_packets_total",
		Help: "Packets produced for queries, by transport.",
	}, []string{"transport"})
	queriesInFlight = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "stenographer_queries_in_flight",
		Help: "Queries running now, by transport.",
	}, []string{"transport"})
	queryFileErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stenographer_query_file_errors_total",
		Help: "Files a query could not read completely (the query went on without them), by transport.",
	}, []string{"transport"})
)

func init() {
	prometheus.MustRegister(queriesTotal, queryDuration, servedBytes, servedPackets, queriesInFlight, queryFileErrors)
}

// QueryCounts are one transport's query totals since the process started,
// for /debug/stats.
type QueryCounts struct {
	InFlight   int64            `json:"in_flight"`
	ByOutcome  map[string]int64 `json:"by_outcome"`
	Packets    int64            `json:"packets_served"`
	Bytes      int64            `json:"bytes_served"`
	FileErrors int64            `json:"file_errors"`
}

// Prometheus counters cannot be read back cheaply, so the totals that
// /debug/stats shows are kept beside them.
var (
	countsMu sync.Mutex
	counts   = map[string]*QueryCounts{}
)

func countsFor(transport string) *QueryCounts {
	c := counts[transport]
	if c == nil {
		c = &QueryCounts{ByOutcome: map[string]int64{}}
		counts[transport] = c
	}
	return c
}

// Queries returns a copy of the query totals per transport.
func Queries() map[string]QueryCounts {
	countsMu.Lock()
	defer countsMu.Unlock()
	out := map[string]QueryCounts{}
	for _, t := range []string{TransportHTTP, TransportGRPC} {
		countsFor(t)
	}
	for t, c := range counts {
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
	transport string
	start     time.Time
}

// StartQuery counts a query in flight on transport.
func StartQuery(transport string) *Query {
	queriesInFlight.WithLabelValues(transport).Inc()
	countsMu.Lock()
	countsFor(transport).InFlight++
	countsMu.Unlock()
	return &Query{transport: transport, start: time.Now()}
}

// End records the query's outcome, the packets and PCAP bytes it
// produced (also when it ended early) and the files it could not read.
func (q *Query) End(outcome string, packets, bytes int64, fileErrors int) {
	t := q.transport
	queriesInFlight.WithLabelValues(t).Dec()
	queriesTotal.WithLabelValues(t, outcome).Inc()
	if outcome != OutcomeBadQuery {
		queryDuration.WithLabelValues(t).Observe(time.Since(q.start).Seconds())
	}
	servedPackets.WithLabelValues(t).Add(float64(packets))
	servedBytes.WithLabelValues(t).Add(float64(bytes))
	queryFileErrors.WithLabelValues(t).Add(float64(fileErrors))
	countsMu.Lock()
	c := countsFor(t)
	c.InFlight--
	c.ByOutcome[outcome]++
	c.Packets += packets
	c.Bytes += bytes
	c.FileErrors += int64(fileErrors)
	countsMu.Unlock()
}

// FileErrors returns how many files res says could not be read.
func FileErrors(res *store.Result) int {
	if res == nil {
		return 0
	}
	return len(res.Errors)
}

// Outcome classifies the return of store.Query run under ctx.
func Outcome(ctx context.Context, res *store.Result, err error) string {
	switch {
	case ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return OutcomeCanceled
	case err != nil:
		return OutcomeError
	case res != nil && res.Truncated:
		return OutcomeTruncated
	}
	return OutcomeOK
}
