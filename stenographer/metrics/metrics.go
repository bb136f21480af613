// Package metrics holds the daemon's Prometheus metrics. They are the only
// process-wide mutable state: one stenographer process serves one sensor,
// and /metrics exposes the default registry.
package metrics

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	capturedPackets = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stenographer_captured_packets_total",
		Help: "Packets stenotype stored, per thread (from its STATS lines).",
	}, []string{"thread"})
	capturedBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stenographer_captured_bytes_total",
		Help: "Packet bytes stenotype stored, per thread.",
	}, []string{"thread"})
	droppedPackets = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stenographer_dropped_packets_total",
		Help: "Packets the kernel dropped before stenotype read them, per thread.",
	}, []string{"thread"})
	filesDeleted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stenographer_files_deleted_total",
		Help: "File pairs deleted by disk cleanup, per thread and reason (disk_free, max_files).",
	}, []string{"thread", "reason"})
	stenotypeRestarts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "stenographer_stenotype_restarts_total",
		Help: "Times stenotype was (re)started.",
	})
)

func init() {
	prometheus.MustRegister(capturedPackets, capturedBytes, droppedPackets, filesDeleted, stenotypeRestarts)
}

// stenotype's STATS lines carry totals since the process started; the
// counters above need deltas, and a restart starts the totals from zero.
var (
	statsMu   sync.Mutex
	lastStats = map[int][3]uint64{}
)

// RecordStenotypeStats takes one STATS line's totals for a thread. A total
// below the previous one means stenotype restarted and counts from zero.
func RecordStenotypeStats(thread int, packets, bytes, drops uint64) {
	statsMu.Lock()
	defer statsMu.Unlock()
	prev := lastStats[thread]
	cur := [3]uint64{packets, bytes, drops}
	if packets < prev[0] || bytes < prev[1] || drops < prev[2] {
		prev = [3]uint64{}
	}
	t := strconv.Itoa(thread)
	capturedPackets.WithLabelValues(t).Add(float64(cur[0] - prev[0]))
	capturedBytes.WithLabelValues(t).Add(float64(cur[1] - prev[1]))
	droppedPackets.WithLabelValues(t).Add(float64(cur[2] - prev[2]))
	lastStats[thread] = cur
}

// StenotypeStarted counts a (re)start of stenotype and forgets the totals
// of the process before it.
func StenotypeStarted() {
	statsMu.Lock()
	clear(lastStats)
	statsMu.Unlock()
	stenotypeRestarts.Inc()
}

// FileDeleted counts one pair removed by disk cleanup; reason is
// "disk_free" or "max_files".
func FileDeleted(thread int, reason string) {
	filesDeleted.WithLabelValues(strconv.Itoa(thread), reason).Inc()
}
