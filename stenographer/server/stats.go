package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stenographer-ng/stenographer/stenographer/metrics"
	"github.com/stenographer-ng/stenographer/stenographer/serve"
	"github.com/stenographer-ng/stenographer/stenographer/store"
	"github.com/stenographer-ng/stenographer/stenographer/supervisor"
)

// CaptureState is what the supervisor says about capture (serve.CaptureState).
type CaptureState = serve.CaptureState

// ThreadStat summarizes one thread's stored files.
type ThreadStat struct {
	Thread           int       `json:"thread"`
	Interface        string    `json:"interface,omitempty"`
	Files            int       `json:"files"`
	Bytes            int64     `json:"bytes"`        // on disk (allocated): sparse files count their data
	LengthBytes      int64     `json:"length_bytes"` // the files' lengths, holes included
	Oldest           time.Time `json:"oldest_file,omitzero"`
	Newest           time.Time `json:"newest_file,omitzero"`
	OldestAgeSeconds float64   `json:"oldest_packet_age_seconds,omitempty"`
}

// ThreadStats summarizes every thread of st as of now.
func ThreadStats(st *store.Store, now time.Time) []ThreadStat {
	out := make([]ThreadStat, st.Threads())
	for i := range out {
		files := st.Files(i)
		t := ThreadStat{Thread: i, Interface: st.Thread(i).Interface, Files: len(files)}
		for _, f := range files {
			t.Bytes += f.Allocated
			t.LengthBytes += f.Size
		}
		if len(files) > 0 {
			t.Oldest, t.Newest = files[0].Start, files[len(files)-1].Start
			t.OldestAgeSeconds = now.Sub(t.Oldest).Seconds()
		}
		out[i] = t
	}
	return out
}

// collector reports what a store holds, and the capture state, at scrape
// time. The daemon registers it once, beside metrics.New's collectors.
type collector struct {
	st      *store.Store
	capture CaptureState // nil: not reported
}

var (
	storedFiles = prometheus.NewDesc("stenographer_stored_files",
		"File pairs available to queries, per thread.", []string{"thread"}, nil)
	storedBytes = prometheus.NewDesc("stenographer_stored_bytes",
		"Disk space (allocated blocks) of the packet files available to queries, per thread: less than their length when slow-link files are sparse.", []string{"thread"}, nil)
	oldestAge = prometheus.NewDesc("stenographer_oldest_packet_age_seconds",
		"Age of the oldest stored file (now minus the time its name encodes): the retention the thread really has. Absent while a thread has no files.",
		[]string{"thread"}, nil)
	captureUp = prometheus.NewDesc("stenographer_capture_up",
		"1 while stenotype runs and captures for the thread, 0 while capture is down (not running, restarting, stale).",
		[]string{"thread"}, nil)
	captureDownSince = prometheus.NewDesc("stenographer_capture_down_since_seconds",
		"Unix time capture went down; absent while it is up.", []string{"thread"}, nil)
	threadInterface = prometheus.NewDesc("stenographer_thread_interface_info",
		"Always 1: the interface a thread captures on, to join the per-thread metrics by interface.",
		[]string{"thread", "interface"}, nil)
	interfaceUp = prometheus.NewDesc("stenographer_interface_capture_up",
		"1 while the interface's stenotype runs, 0 while it is down (each interface has its own).",
		[]string{"interface"}, nil)
	interfaceStarts = prometheus.NewDesc("stenographer_interface_stenotype_starts_total",
		"Times the interface's stenotype was started.", []string{"interface"}, nil)
)

// interfaceCapture is a CaptureState that knows each interface's
// (supervisor.Group).
type interfaceCapture interface {
	ThreadCaptureState(thread int) (up bool, since time.Time)
	States() []supervisor.InterfaceState
}

// NewCollector returns a collector of st's files and, when capture is not
// nil, of the capture state, for the daemon's registry.
func NewCollector(st *store.Store, capture CaptureState) prometheus.Collector {
	return &collector{st: st, capture: capture}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{storedFiles, storedBytes, oldestAge, captureUp, captureDownSince, diskFree,
		threadInterface, interfaceUp, interfaceStarts} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	var up bool
	var since time.Time
	if c.capture != nil {
		up, since = c.capture.CaptureState()
	}
	ic, perInterface := c.capture.(interfaceCapture)
	if perInterface {
		for _, st := range ic.States() {
			ch <- prometheus.MustNewConstMetric(interfaceUp, prometheus.GaugeValue, boolGauge(st.Up), st.Name)
			ch <- prometheus.MustNewConstMetric(interfaceStarts, prometheus.CounterValue, float64(st.Starts), st.Name)
		}
	}
	for _, t := range ThreadStats(c.st, time.Now()) {
		label := strconv.Itoa(t.Thread)
		if t.Interface != "" {
			ch <- prometheus.MustNewConstMetric(threadInterface, prometheus.GaugeValue, 1, label, t.Interface)
		}
		if perInterface {
			up, since = ic.ThreadCaptureState(t.Thread)
		}
		ch <- prometheus.MustNewConstMetric(storedFiles, prometheus.GaugeValue, float64(t.Files), label)
		ch <- prometheus.MustNewConstMetric(storedBytes, prometheus.GaugeValue, float64(t.Bytes), label)
		if t.Files > 0 {
			ch <- prometheus.MustNewConstMetric(oldestAge, prometheus.GaugeValue, t.OldestAgeSeconds, label)
		}
		if c.capture == nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(captureUp, prometheus.GaugeValue, boolGauge(up), label)
		if !up {
			ch <- prometheus.MustNewConstMetric(captureDownSince, prometheus.GaugeValue,
				float64(since.UnixNano())/1e9, label)
		}
	}
	collectDiskFree(c.st, ch)
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// wantsJSON: the debug pages answer in the reference's text by default,
// JSON when asked with Accept: application/json or ?format=json.
func wantsJSON(r *http.Request) bool {
	if f := r.URL.Query().Get("format"); f != "" {
		return f == "json"
	}
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, _, _ := strings.Cut(part, ";")
		if strings.EqualFold(strings.TrimSpace(mt), "application/json") {
			return true
		}
	}
	return false
}

// statsJSON is /debug/stats?format=json.
type statsJSON struct {
	Time       time.Time                      `json:"time"`
	Capture    *captureJSON                   `json:"capture,omitempty"`
	Interfaces []interfaceJSON                `json:"interfaces,omitempty"`
	Threads    []ThreadStat                   `json:"threads"`
	Queries    map[string]metrics.QueryCounts `json:"queries"`
	Aged       int64                          `json:"aged_files"`
	Disks      []diskFreeJSON                 `json:"disk_free"`
}

type diskFreeJSON struct {
	Thread int    `json:"thread"`
	Kind   string `json:"kind"`
	Dir    string `json:"directory"`
	Free   uint64 `json:"free_bytes"`
	Err    string `json:"error,omitempty"`
}

type captureJSON struct {
	Up        bool      `json:"up"`
	DownSince time.Time `json:"down_since,omitzero"`
}

// interfaceJSON is one capture interface in /debug/stats.
type interfaceJSON struct {
	Name      string    `json:"name"`
	Threads   []int     `json:"threads"`
	Up        bool      `json:"up"`
	DownSince time.Time `json:"down_since,omitzero"`
	Starts    int       `json:"stenotype_starts"`
	Pid       int       `json:"stenotype_pid,omitempty"`
	Files     int       `json:"files"`
	Bytes     int64     `json:"bytes"`
}

// interfaceStats sums the threads of each interface the capture reports.
func interfaceStats(capture CaptureState, threads []ThreadStat) []interfaceJSON {
	ic, ok := capture.(interfaceCapture)
	if !ok {
		return nil
	}
	var out []interfaceJSON
	for _, st := range ic.States() {
		j := interfaceJSON{Name: st.Name, Threads: st.Threads, Up: st.Up, DownSince: st.DownSince, Starts: st.Starts, Pid: st.Pid}
		for _, t := range threads {
			if t.Interface == st.Name {
				j.Files += t.Files
				j.Bytes += t.Bytes
			}
		}
		out = append(out, j)
	}
	return out
}

func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	threads := ThreadStats(s.cfg.Store, now)
	queries := s.runner.Metrics().Queries()
	var capture *captureJSON
	if s.cfg.Capture != nil {
		up, since := s.cfg.Capture.CaptureState()
		capture = &captureJSON{Up: up}
		if !up {
			capture.DownSince = since
		}
	}
	frees := DiskFrees(s.cfg.Store)
	ifaces := interfaceStats(s.cfg.Capture, threads)
	if wantsJSON(r) {
		disks := make([]diskFreeJSON, len(frees))
		for i, d := range frees {
			disks[i] = diskFreeJSON{Thread: d.Thread, Kind: d.Kind, Dir: d.Dir, Free: d.Free}
			if d.Err != nil {
				disks[i].Err = d.Err.Error()
			}
		}
		writeJSON(w, statsJSON{now, capture, ifaces, threads, queries, metrics.AgedFiles(), disks})
		return
	}
	v := statsLines(threads, queries, capture)
	diskFreeLines(frees, v)
	// Per interface, in the same name<TAB>integer style.
	for _, i := range ifaces {
		p := "iface_" + i.Name + "_"
		v[p+"capture_up"] = int64(boolGauge(i.Up))
		v[p+"stenotype_starts"] = int64(i.Starts)
		v[p+"current_files"] = int64(i.Files)
		v[p+"current_bytes"] = i.Bytes
	}
	writeText(w, v)
}

// statsLines are /debug/stats as the reference serves it: sorted
// "name<TAB>integer" lines. current_files, aged_files and
// oldest_timestamp (UnixNano of the newest of the threads' oldest files:
// from then on every thread has data) keep the reference's names and
// meanings; http_request_query_POST_{completed,bytes} follow its
// per-handler naming; the rest (and diskFreeLines') are ours, in the
// same style.
func statsLines(threads []ThreadStat, queries map[string]metrics.QueryCounts, capture *captureJSON) map[string]int64 {
	v := map[string]int64{"aged_files": metrics.AgedFiles(), "oldest_timestamp": 0}
	var oldest time.Time
	for _, t := range threads {
		v["current_files"] += int64(t.Files)
		v["current_bytes"] += t.Bytes
		p := fmt.Sprintf("t%d_", t.Thread)
		v[p+"current_files"] = int64(t.Files)
		v[p+"current_bytes"] = t.Bytes
		if t.Files > 0 {
			v[p+"oldest_timestamp"] = t.Oldest.UnixNano()
			if t.Oldest.After(oldest) {
				oldest = t.Oldest
			}
		}
	}
	if !oldest.IsZero() {
		v["oldest_timestamp"] = oldest.UnixNano()
	}
	for transport, q := range queries {
		p := transport + "_queries_"
		v[p+"in_flight"] = q.InFlight
		v[p+"packets"] = q.Packets
		v[p+"bytes"] = q.Bytes
		v[p+"file_errors"] = q.FileErrors
		var total int64
		for outcome, n := range q.ByOutcome {
			v[p+outcome] = n
			total += n
		}
		if transport == metrics.TransportHTTP {
			v["http_request_query_POST_completed"] = total
			v["http_request_query_POST_bytes"] = q.Bytes
		}
	}
	if capture != nil {
		v["capture_up"] = int64(boolGauge(capture.Up))
		if !capture.Up {
			v["capture_down_since"] = capture.DownSince.UnixNano()
		}
	}
	return v
}

func writeText(w http.ResponseWriter, v map[string]int64) {
	names := make([]string, 0, len(v))
	for k := range v {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, k := range names {
		fmt.Fprintf(&b, "%s\t%d\n", k, v[k])
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte(b.String()))
}

// handleFiles answers GET /debug/t<i>/files with thread i's file pairs:
// the reference's text (a "Thread i (IDX: ..., PKT: ...)" line, then a
// tab and a name per file, here oldest first) or JSON.
func (s *Server) handleFiles(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("thread")
	i, err := strconv.Atoi(strings.TrimPrefix(name, "t"))
	if !strings.HasPrefix(name, "t") || err != nil || i < 0 || i >= s.cfg.Store.Threads() || name != "t"+strconv.Itoa(i) {
		http.NotFound(w, r)
		return
	}
	files := s.cfg.Store.Files(i)
	if wantsJSON(r) {
		writeJSON(w, files)
		return
	}
	th := s.cfg.Store.Thread(i)
	var b strings.Builder
	fmt.Fprintf(&b, "Thread %d (IDX: %q, PKT: %q)\n", i, th.IndexDirectory, th.PacketsDirectory)
	for _, f := range files {
		fmt.Fprintf(&b, "\t%s\n", f.Name)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte(b.String()))
}

func (s *Server) handleConfig(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, s.cfg.RunningConfig)
}

func writeJSON(w http.ResponseWriter, v any) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, oneLine(err.Error()), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(data, '\n'))
}
