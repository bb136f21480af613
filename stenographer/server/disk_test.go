package server_test

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// freeOf is the space statfs says an unprivileged writer has under dir.
func freeOf(t *testing.T, dir string) float64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatalf("statfs %s: %v", dir, err)
	}
	return float64(st.Bavail) * float64(st.Bsize)
}

// near allows for other writers on the shared test machine between the
// server's statfs and ours.
func near(got, want float64) bool {
	const slack = 512 << 20
	return got > want-slack && got < want+slack
}

// TestDiskFree checks stenographer_disk_free_bytes and the free-space
// lines and JSON of /debug/stats against statfs of the store's directories.
func TestDiskFree(t *testing.T) {
	t.Parallel()
	e := start(t, small)
	_, body := e.get(t, "/metrics")
	metricsText := string(body)
	_, body = e.get(t, "/debug/stats")
	text := parseStatsText(t, body)
	var disks struct {
		Disks []struct {
			Thread int
			Kind   string
			Dir    string  `json:"directory"`
			Free   float64 `json:"free_bytes"`
			Err    string  `json:"error"`
		} `json:"disk_free"`
	}
	if err := json.Unmarshal(e.getJSON(t, "/debug/stats?format=json", ""), &disks); err != nil {
		t.Fatal(err)
	}
	if len(disks.Disks) != 2*e.st.Threads() {
		t.Fatalf("/debug/stats JSON disk_free has %d entries, want %d", len(disks.Disks), 2*e.st.Threads())
	}
	least := -1.0
	for i := range e.st.Threads() {
		th := e.st.Thread(i)
		for _, d := range []struct{ kind, dir string }{{"packets", th.PacketsDirectory}, {"index", th.IndexDirectory}} {
			want := freeOf(t, d.dir)
			if want <= 0 {
				t.Fatalf("statfs %s: no space free; the test needs some", d.dir)
			}
			if least < 0 || want < least {
				least = want
			}
			labels := `kind="` + d.kind + `",thread="` + strconv.Itoa(i) + `"`
			if got := metricValue(t, metricsText, "stenographer_disk_free_bytes", labels); !near(got, want) {
				t.Errorf("stenographer_disk_free_bytes{%s} = %.0f, statfs says %.0f", labels, got, want)
			}
			name := fmt.Sprintf("t%d_%s_free_bytes", i, d.kind)
			if got, ok := text[name]; !ok || !near(float64(got), want) {
				t.Errorf("/debug/stats %s = %d (present %v), statfs says %.0f", name, got, ok, want)
			}
			found := false
			for _, j := range disks.Disks {
				if j.Thread == i && j.Kind == d.kind {
					found = true
					if j.Dir != d.dir || j.Err != "" || !near(j.Free, want) {
						t.Errorf("/debug/stats JSON %+v; want %s, no error, about %.0f free", j, d.dir, want)
					}
				}
			}
			if !found {
				t.Errorf("/debug/stats JSON has no disk_free entry for thread %d %s", i, d.kind)
			}
		}
	}
	if got, ok := text["disk_free_bytes"]; !ok || !near(float64(got), least) {
		t.Errorf("/debug/stats disk_free_bytes = %d (present %v), want about %.0f (the least)", got, ok, least)
	}
}
