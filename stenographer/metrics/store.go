package metrics

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stenographer-ng/stenographer/stenographer/store"
)

// storeCollector reports what a Store holds at scrape time. One collector
// is registered on the default registry for the life of the process; the
// store it reads can be replaced, so tests that build several servers (and
// a daemon that rebuilds its store) never register twice.
type storeCollector struct {
	st atomic.Pointer[store.Store]
}

var (
	storedFiles = prometheus.NewDesc("stenographer_stored_files",
		"File pairs available to queries, per thread.", []string{"thread"}, nil)
	storedBytes = prometheus.NewDesc("stenographer_stored_bytes",
		"Size of the packet files available to queries, per thread.", []string{"thread"}, nil)
	oldestAge = prometheus.NewDesc("stenographer_oldest_packet_age_seconds",
		"Age of the oldest stored file (now minus the time its name encodes): the retention the thread really has. Absent while a thread has no files.",
		[]string{"thread"}, nil)

	theStore     = &storeCollector{}
	registerOnce sync.Once
)

// RegisterStore makes the default registry report st's files (replacing
// any store registered before; nil stops the report). Safe to call any
// number of times.
func RegisterStore(st *store.Store) {
	registerOnce.Do(func() { prometheus.MustRegister(theStore) })
	theStore.st.Store(st)
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- storedFiles
	ch <- storedBytes
	ch <- oldestAge
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.st.Load()
	if st == nil {
		return
	}
	now := time.Now()
	for _, t := range ThreadStats(st, now) {
		label := strconv.Itoa(t.Thread)
		ch <- prometheus.MustNewConstMetric(storedFiles, prometheus.GaugeValue, float64(t.Files), label)
		ch <- prometheus.MustNewConstMetric(storedBytes, prometheus.GaugeValue, float64(t.Bytes), label)
		if t.Files > 0 {
			ch <- prometheus.MustNewConstMetric(oldestAge, prometheus.GaugeValue, t.OldestAgeSeconds, label)
		}
	}
}

// ThreadStat summarizes one thread's stored files.
type ThreadStat struct {
	Thread           int       `json:"thread"`
	Files            int       `json:"files"`
	Bytes            int64     `json:"bytes"`
	Oldest           time.Time `json:"oldest_file,omitzero"`
	Newest           time.Time `json:"newest_file,omitzero"`
	OldestAgeSeconds float64   `json:"oldest_packet_age_seconds,omitempty"`
}

// ThreadStats summarizes every thread of st as of now.
func ThreadStats(st *store.Store, now time.Time) []ThreadStat {
	out := make([]ThreadStat, st.Threads())
	for i := range out {
		files := st.Files(i)
		t := ThreadStat{Thread: i, Files: len(files)}
		for _, f := range files {
			t.Bytes += f.Size
		}
		if len(files) > 0 {
			t.Oldest, t.Newest = files[0].Start, files[len(files)-1].Start
			t.OldestAgeSeconds = now.Sub(t.Oldest).Seconds()
		}
		out[i] = t
	}
	return out
}
