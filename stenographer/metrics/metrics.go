// Package metrics holds the daemon's Prometheus metrics.
//
// Query metrics live in a Metrics made by New on a registry the caller
// owns, so every server (and every test) counts on its own. The capture
// and cleanup counters below are fed by the one supervisor and the one
// cleaner of the process through package functions; they stay on the
// default registry for those packages' tests and are also registered on
// every registry given to New.
package metrics

import (
	"strconv"
	"sync"
	"sync/atomic"

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
	droppedBlocks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stenographer_dropped_blocks_total",
		Help: "Blocks of packets stenotype could not write (e.g. disk full, ENOSPC) and dropped, per thread.",
	}, []string{"thread"})
	socketErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stenographer_capture_socket_errors_total",
		Help: "Errors stenotype's capture socket reported, e.g. the interface going down (ENETDOWN), per thread.",
	}, []string{"thread"})
	filesDeleted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stenographer_files_deleted_total",
		Help: "File pairs deleted by disk cleanup, per thread and reason (disk_free, max_files).",
	}, []string{"thread", "reason"})
	stenotypeRestarts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "stenographer_stenotype_restarts_total",
		Help: "Times stenotype was (re)started.",
	})
	processCollectors = []prometheus.Collector{capturedPackets, capturedBytes, droppedPackets, droppedBlocks, socketErrors, filesDeleted, stenotypeRestarts}
)

func init() {
	prometheus.MustRegister(processCollectors...)
}

// StenotypeStats are the totals of one STATS line of a thread.
type StenotypeStats struct {
	Packets, Bytes, Drops uint64
	BlocksDropped         uint64 // blocks whose write failed
	SocketErrors          uint64 // errors of the capture socket (link down)
}

func (s StenotypeStats) counts() []uint64 {
	return []uint64{s.Packets, s.Bytes, s.Drops, s.BlocksDropped, s.SocketErrors}
}

// stenotype's STATS lines carry totals since the process started; the
// counters above need deltas, and a restart starts the totals from zero.
var (
	statsMu   sync.Mutex
	lastStats = map[int]StenotypeStats{}
)

// RecordStenotypeStats takes one STATS line's totals for a thread. A total
// below the previous one means stenotype restarted and counts from zero.
func RecordStenotypeStats(thread int, cur StenotypeStats) {
	statsMu.Lock()
	defer statsMu.Unlock()
	prev := lastStats[thread].counts()
	now := cur.counts()
	for i := range now {
		if now[i] < prev[i] {
			prev = StenotypeStats{}.counts()
			break
		}
	}
	t := strconv.Itoa(thread)
	for i, c := range []*prometheus.CounterVec{capturedPackets, capturedBytes, droppedPackets, droppedBlocks, socketErrors} {
		c.WithLabelValues(t).Add(float64(now[i] - prev[i]))
	}
	lastStats[thread] = cur
}

// StenotypeStarted counts a (re)start of the stenotype running threads
// and forgets the totals of the process before it. The other threads run
// in other stenotypes (other interfaces) and keep theirs; no threads
// means every thread.
func StenotypeStarted(threads ...int) {
	statsMu.Lock()
	if len(threads) == 0 {
		clear(lastStats)
	}
	for _, t := range threads {
		delete(lastStats, t)
	}
	statsMu.Unlock()
	stenotypeRestarts.Inc()
}

// FileDeleted counts one pair removed by disk cleanup; reason is
// "disk_free" or "max_files".
func FileDeleted(thread int, reason string) {
	filesDeleted.WithLabelValues(strconv.Itoa(thread), reason).Inc()
	agedFiles.Add(1)
}

// agedFiles is the reference's aged_files: pairs cleanup deleted since the
// process started, readable back for /debug/stats.
var agedFiles atomic.Int64

// AgedFiles returns how many pairs cleanup deleted since the process started.
func AgedFiles() int64 { return agedFiles.Load() }
