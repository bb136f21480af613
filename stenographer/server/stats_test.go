package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/stenographer/metrics"
	"github.com/stenographer-ng/stenographer/stenographer/server"
	"github.com/stenographer-ng/stenographer/stenographer/store"
)

func TestDebug(t *testing.T) {
	t.Parallel()
	e := start(t, small)
	resp := e.post(t, "port 1001", nil)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	// The reference's text by default: sorted name<TAB>integer lines.
	code, body := e.get(t, "/debug/stats")
	if code != 200 {
		t.Fatalf("/debug/stats: %d", code)
	}
	text := parseStatsText(t, body)
	var allFiles int64
	var newestOldest time.Time
	for i := range e.st.Threads() {
		files := e.st.Files(i)
		allFiles += int64(len(files))
		if files[0].Start.After(newestOldest) {
			newestOldest = files[0].Start
		}
		if got := text[fmt.Sprintf("t%d_current_files", i)]; got != int64(len(files)) {
			t.Errorf("t%d_current_files %d, want %d", i, got, len(files))
		}
	}
	for name, want := range map[string]int64{
		"current_files":                     allFiles,
		"oldest_timestamp":                  newestOldest.UnixNano(),
		"aged_files":                        metrics.AgedFiles(),
		"http_queries_ok":                   1,
		"http_queries_in_flight":            0,
		"http_request_query_POST_completed": 1,
	} {
		if got, ok := text[name]; !ok || got != want {
			t.Errorf("/debug/stats %s = %d (present %v), want %d", name, got, ok, want)
		}
	}

	for _, how := range []struct {
		path   string
		header string
	}{{"/debug/stats?format=json", ""}, {"/debug/stats", "application/json"}} {
		body := e.getJSON(t, how.path, how.header)
		var stats struct {
			Threads []server.ThreadStat
			Queries map[string]metrics.QueryCounts
		}
		if err := json.Unmarshal(body, &stats); err != nil {
			t.Fatalf("%s (Accept %q): %v\n%s", how.path, how.header, err, body)
		}
		if len(stats.Threads) != 2 {
			t.Fatalf("/debug/stats: %d threads, want 2", len(stats.Threads))
		}
		for i, th := range stats.Threads {
			files := e.st.Files(i)
			var size, length int64
			for _, f := range files {
				size += f.Allocated
				length += f.Size
			}
			if th.Files != len(files) || th.Bytes != size || th.LengthBytes != length || size == 0 || !th.Oldest.Equal(files[0].Start) {
				t.Errorf("thread %d stats %+v; store has %d files, %d bytes, oldest %v", i, th, len(files), size, files[0].Start)
			}
			if th.OldestAgeSeconds < 7000 || th.OldestAgeSeconds > 8000 {
				t.Errorf("thread %d oldest packet age %.0f s; files are about 2 h old", i, th.OldestAgeSeconds)
			}
		}
		if q := stats.Queries["http"]; q.ByOutcome["ok"] < 1 || q.Packets < 200 || q.Bytes <= 0 {
			t.Errorf("/debug/stats queries %+v; want the query just run counted", q)
		}
	}

	code, body = e.get(t, "/debug/config")
	var cfg runningConfig
	if err := json.Unmarshal(body, &cfg); code != 200 || err != nil || cfg.Port != 1234 || len(cfg.Threads) != 2 {
		t.Errorf("/debug/config: %d %v %s", code, err, body)
	}

	for _, tc := range []struct {
		path string
		code int
		n    int
	}{
		{"/debug/t0/files", 200, 10},
		{"/debug/t1/files", 200, 10},
		{"/debug/t2/files", 404, 0},
		{"/debug/t-1/files", 404, 0},
		{"/debug/t01/files", 404, 0},
		{"/debug/x0/files", 404, 0},
		{"/debug/t/files", 404, 0},
		{"/debug/nothing", 404, 0},
	} {
		code, body := e.get(t, tc.path)
		if code != tc.code {
			t.Errorf("%s: status %d, want %d", tc.path, code, tc.code)
			continue
		}
		if code != 200 {
			continue
		}
		// The reference's text: a heading naming the directories, then
		// a tab and a name per file.
		thread, _ := strconv.Atoi(tc.path[len("/debug/t"):][:1])
		th := e.st.Thread(thread)
		want := fmt.Sprintf("Thread %d (IDX: %q, PKT: %q)\n", thread, th.IndexDirectory, th.PacketsDirectory)
		for _, f := range e.st.Files(thread) {
			want += "\t" + f.Name + "\n"
		}
		if string(body) != want {
			t.Errorf("%s:\n%s\nwant\n%s", tc.path, body, want)
		}
		var files []store.FileInfo
		if err := json.Unmarshal(e.getJSON(t, tc.path+"?format=json", ""), &files); err != nil {
			t.Errorf("%s: %v", tc.path, err)
		}
		if w := e.st.Files(thread)[0]; len(files) != tc.n || files[0].Name != w.Name || !files[0].Start.Equal(w.Start) || files[0].Size != w.Size || files[0].Thread != thread {
			t.Errorf("%s: %d files, first %+v; want %d, first %+v", tc.path, len(files), files[0], tc.n, w)
		}
	}
}

// parseStatsText parses /debug/stats text: sorted name<TAB>integer lines.
func parseStatsText(t *testing.T, body []byte) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	last := ""
	for _, line := range strings.Split(strings.TrimSuffix(string(body), "\n"), "\n") {
		name, val, ok := strings.Cut(line, "\t")
		n, err := strconv.ParseInt(val, 10, 64)
		if !ok || err != nil || strings.ContainsAny(name, " \t") || name <= last {
			t.Fatalf("/debug/stats line %q: want sorted name<TAB>integer lines\n%s", line, body)
		}
		out[name], last = n, name
	}
	return out
}

// getJSON GETs path (with Accept: accept when set) and wants JSON back.
func (e *env) getJSON(t *testing.T, path, accept string) []byte {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.url+path, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET %s (Accept %q): %d %q %v", path, accept, resp.StatusCode, resp.Header.Get("Content-Type"), err)
	}
	return body
}

// metricValue finds one sample in Prometheus text output.
func metricValue(t *testing.T, text, name, labels string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{` + labels + `\})? (\S+)$`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		t.Errorf("no sample %s{%s} in /metrics", name, labels)
		return 0
	}
	v, err := strconv.ParseFloat(m[2], 64)
	if err != nil {
		t.Errorf("%s: %v", name, err)
	}
	return v
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	e := start(t, small)
	for _, q := range []string{"port 1001", "port 1002"} {
		resp := e.post(t, q, nil)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	resp := e.post(t, "port 99999", nil)
	resp.Body.Close()
	code, body := e.get(t, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	text := string(body)
	files0 := e.st.Files(0)
	var size0 int64
	for _, f := range files0 {
		size0 += f.Allocated
	}
	for _, c := range []struct {
		name, labels string
		lo, hi       float64
	}{
		{"stenographer_stored_files", `thread="0"`, float64(len(files0)), float64(len(files0))},
		{"stenographer_stored_bytes", `thread="0"`, float64(size0), float64(size0)},
		{"stenographer_oldest_packet_age_seconds", `thread="1"`, 7000, 8000},
		{"stenographer_queries_total", `outcome="ok",transport="http"`, 2, 1e9},
		{"stenographer_queries_total", `outcome="bad_query",transport="http"`, 1, 1e9},
		{"stenographer_query_duration_seconds_count", `transport="http"`, 2, 1e9},
		{"stenographer_served_packets_total", `transport="http"`, 400, 1e9},
		{"stenographer_served_bytes_total", `transport="http"`, 400 * 76, 1e12},
		{"stenographer_queries_in_flight", `transport="http"`, 0, 0},
	} {
		if v := metricValue(t, text, c.name, c.labels); v < c.lo || v > c.hi {
			t.Errorf("%s{%s} = %v, want in [%v, %v]", c.name, c.labels, v, c.lo, c.hi)
		}
	}
	for _, name := range []string{"stenographer_query_duration_seconds_bucket", "stenographer_query_file_errors_total"} {
		if !strings.Contains(text, name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}
