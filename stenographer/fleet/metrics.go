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
	health        healthGauges
}

// healthGauges are the sensors' latest health samples.
type healthGauges struct {
	up, oldest, packetRate, dropRate, diskBytes, diskFree *prometheus.GaugeVec
}

func newHealthGauges() healthGauges {
	g := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"sensor"})
	}
	return healthGauges{
		up:         g("stenofleet_sensor_up", "1 when the sensor's /debug/stats and /metrics answered at the last health poll."),
		oldest:     g("stenofleet_sensor_oldest_packet_timestamp_seconds", "Unix time from which the sensor has packets on every thread."),
		packetRate: g("stenofleet_sensor_capture_packets_per_second", "Packets the sensor stored per second between its last two polls."),
		dropRate:   g("stenofleet_sensor_drops_per_second", "Packets the sensor's kernel dropped per second between its last two polls."),
		diskBytes:  g("stenofleet_sensor_disk_bytes", "Size of the sensor's stored packet files."),
		diskFree:   g("stenofleet_sensor_disk_free_bytes", "Space left in the fullest of the sensor's directories."),
	}
}

func (g healthGauges) all() []*prometheus.GaugeVec {
	return []*prometheus.GaugeVec{g.up, g.oldest, g.packetRate, g.dropRate, g.diskBytes, g.diskFree}
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
	m.health = newHealthGauges()
	reg.MustRegister(m.queries, m.sensorSeconds, m.sensorErrors, m.bytesServed)
	for _, g := range m.health.all() {
		reg.MustRegister(g)
	}
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

// sensorHealth shows a sensor's latest sample. A down sensor keeps only
// stenofleet_sensor_up: its last figures would read as current.
func (m *Metrics) sensorHealth(name string, s Sample) {
	g := m.health
	if !s.Up {
		for _, v := range g.all()[1:] {
			v.DeleteLabelValues(name)
		}
		g.up.WithLabelValues(name).Set(0)
		return
	}
	g.up.WithLabelValues(name).Set(1)
	set := func(v *prometheus.GaugeVec, x float64, ok bool) {
		if ok {
			v.WithLabelValues(name).Set(x)
		} else {
			v.DeleteLabelValues(name)
		}
	}
	set(g.oldest, float64(s.Oldest.UnixNano())/1e9, !s.Oldest.IsZero())
	set(g.packetRate, deref(s.PacketsPerSecond), s.PacketsPerSecond != nil)
	set(g.dropRate, deref(s.DropsPerSecond), s.DropsPerSecond != nil)
	set(g.diskBytes, float64(s.DiskBytes), true)
	set(g.diskFree, float64(deref(s.DiskFree)), s.DiskFree != nil)
}

func deref[T int64 | float64](p *T) T {
	if p == nil {
		return 0
	}
	return *p
}
