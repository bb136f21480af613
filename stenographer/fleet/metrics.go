package fleet

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are stenofleet's Prometheus metrics, on their own registry.
type Metrics struct {
	reg           *prometheus.Registry
	queries       *prometheus.CounterVec
	sensorSeconds *prometheus.HistogramVec
	sensorErrors  *prometheus.CounterVec
	bytesServed   prometheus.Counter
}

// Query outcomes (the outcome label of stenofleet_queries_total).
const (
	OutcomeOK       = "ok"        // every selected sensor answered in full
	OutcomePartial  = "partial"   // some sensor is missing from the result
	OutcomeBadQuery = "bad_query" // refused: every sensor, or stenofleet, said it is invalid
	OutcomeFailed   = "failed"    // no sensor answered, or the client went away
)

// NewMetrics registers the metrics on reg (a new registry when nil).
func NewMetrics(reg *prometheus.Registry) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &Metrics{
		reg: reg,
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stenofleet_queries_total",
			Help: "Queries by outcome (ok, partial, bad_query, failed)."}, []string{"outcome"}),
		sensorSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "stenofleet_sensor_query_seconds",
			Help:    "Time from sending a query to a sensor to the end of its stream.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 9)}, []string{"sensor"}),
		sensorErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stenofleet_sensor_errors_total",
			Help: "Sensor parts of queries that failed (kind=refused for a 400, error otherwise)."}, []string{"sensor", "kind"}),
		bytesServed: prometheus.NewCounter(prometheus.CounterOpts{Name: "stenofleet_bytes_served_total",
			Help: "Bytes of merged PCAP sent to analysts, headers included."}),
	}
	reg.MustRegister(m.queries, m.sensorSeconds, m.sensorErrors, m.bytesServed)
	return m
}

// Registry is the registry /metrics serves.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

func (m *Metrics) sensorDone(r SensorResult) {
	m.sensorSeconds.WithLabelValues(r.Name).Observe(r.Duration.Seconds())
	switch {
	case r.Refused:
		m.sensorErrors.WithLabelValues(r.Name, "refused").Inc()
	case r.Err != "":
		m.sensorErrors.WithLabelValues(r.Name, "error").Inc()
	}
}

// QueryDone counts one query's outcome and the bytes it served.
func (m *Metrics) QueryDone(outcome string, bytes int64) {
	m.queries.WithLabelValues(outcome).Inc()
	m.bytesServed.Add(float64(bytes))
}
