package jobs

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Manager's collectors; the gauges read its state when
// scraped, so they cannot drift from it.
type metrics struct {
	queued, running, spool prometheus.GaugeFunc
	finished, expired      *prometheus.CounterVec
}

func newMetrics(m *Manager) *metrics {
	gauge := func(name, help string, f func() float64) prometheus.GaugeFunc {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "stenofleet", Name: name, Help: help,
		}, func() float64 {
			m.mu.Lock()
			defer m.mu.Unlock()
			return f()
		})
	}
	return &metrics{
		queued: gauge("jobs_queued", "Jobs waiting to run.",
			func() float64 { return float64(len(m.queue)) }),
		running: gauge("jobs_running", "Jobs running now.",
			func() float64 { return float64(m.running) }),
		spool: gauge("spool_bytes", "Bytes of completed results in the spool.",
			func() float64 { return float64(m.spoolBytesLocked()) }),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "stenofleet", Name: "jobs_finished_total",
			Help: "Jobs finished, by outcome (completed, partial, failed).",
		}, []string{"outcome"}),
		expired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "stenofleet", Name: "jobs_expired_total",
			Help: "Jobs removed from the spool, by reason (age, space).",
		}, []string{"reason"}),
	}
}

func (mt *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{mt.queued, mt.running, mt.spool, mt.finished, mt.expired} {
		if err := r.Register(c); err != nil {
			return fmt.Errorf("jobs: register metrics: %w", err)
		}
	}
	return nil
}
