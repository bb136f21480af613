package jobs

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestSubmitDedup(t *testing.T) {
	c := newClock()
	f := &fakeFleet{}
	s := start(t, Config{SpoolDir: t.TempDir(), Run: f.Run, Now: c.Now})
	a := submit(t, s.m, "alice", "host 1.2.3.4", "port 80", "after 5m ago")
	waitState(t, s.m, a.ID, Completed)
	c.Add(10 * time.Second)
	b := submit(t, s.m, "alice", "after 5m ago", "port 80", "host 1.2.3.4")
	if b.ID != a.ID || b.State != Completed {
		t.Errorf("same clauses in another order: job %s %s, want %s Completed", b.ID, b.State, a.ID)
	}
	c.Add(time.Minute)
	d := submit(t, s.m, "alice", "host 1.2.3.4", "port 80", "after 5m ago")
	if d.ID == a.ID {
		t.Errorf("next window: same id %s", d.ID)
	}
	waitState(t, s.m, d.ID, Completed)
	if _, _, calls := f.stats(); len(calls) != 2 {
		t.Errorf("%d runs, want 2 (one per window): %q", len(calls), calls)
	}
	want := "host 1.2.3.4 and port 80 and after 2018-01-10T22:06:00Z and before 2018-01-10T22:12:00Z"
	if a.Query != want {
		t.Errorf("query %q, want %q", a.Query, want)
	}
}

func TestOutcomes(t *testing.T) {
	tests := []struct {
		sensors     []string
		state       State
		partial     bool
		missing     string
		wantResults int
	}{
		{[]string{"s1", "s2", "s3"}, Completed, false, "", 3},
		{[]string{"s1", "down", "picky"}, Completed, true, "down,picky", 3},
		{[]string{"down", "picky"}, Failed, false, "down,picky", 2},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.sensors, "+"), func(t *testing.T) {
			f := &fakeFleet{sensors: tc.sensors}
			s := start(t, Config{SpoolDir: t.TempDir(), Run: f.Run})
			j := submit(t, s.m, "alice", "tcp")
			j = waitState(t, s.m, j.ID, tc.state)
			if j.Partial != tc.partial || strings.Join(j.Missing, ",") != tc.missing || len(j.Results) != tc.wantResults {
				t.Errorf("partial %v missing %q results %d; want %v %q %d",
					j.Partial, j.Missing, len(j.Results), tc.partial, tc.missing, tc.wantResults)
			}
			var st map[string]statusBody
			s.getJSON(t, "alice", "/status/"+j.ID, &st)
			b := st[j.ID]
			if b.State != tc.state || b.Partial != tc.partial || len(b.Requests) != tc.wantResults {
				t.Errorf("status %+v", b)
			}
			if r, ok := b.Requests["s1"]; ok && (r.Packets != 1 || r.Bytes != 76 || r.DurationSeconds <= 0) {
				t.Errorf("s1 result %+v", r)
			}
			if r, ok := b.Requests["down"]; ok && r.Error == "" {
				t.Errorf("down sensor without error: %+v", r)
			}
			code, _ := s.get(t, "alice", j.URL())
			if want := map[State]int{Completed: 200, Failed: 409}[tc.state]; code != want {
				t.Errorf("GET result: %d, want %d", code, want)
			}
			// A failed job submitted again runs again.
			if tc.state == Failed {
				f.mu.Lock()
				f.sensors = []string{"s1"}
				f.mu.Unlock()
				again := submit(t, s.m, "alice", "tcp")
				if again.ID != j.ID {
					t.Fatalf("resubmitted failed job got id %s, want %s", again.ID, j.ID)
				}
				waitState(t, s.m, j.ID, Completed)
			}
		})
	}
}

func TestQueueBound(t *testing.T) {
	const n, bound = 7, 2
	f := &fakeFleet{gate: make(chan struct{})}
	reg := prometheus.NewRegistry()
	s := start(t, Config{SpoolDir: t.TempDir(), Run: f.Run, MaxRunning: bound, Registerer: reg})
	var ids []string
	for i := range n {
		ids = append(ids, submit(t, s.m, "alice", fmt.Sprintf("port %d", 1000+i)).ID)
	}
	waitFor(t, "two jobs running", func() bool { r, _, _ := f.stats(); return r >= bound })
	if got := metric(t, reg, "stenofleet_jobs_running"); got != bound {
		t.Errorf("stenofleet_jobs_running %v, want %d", got, bound)
	}
	if got := metric(t, reg, "stenofleet_jobs_queued"); got != n-bound {
		t.Errorf("stenofleet_jobs_queued %v, want %d", got, n-bound)
	}
	for range n {
		f.gate <- struct{}{}
	}
	for _, id := range ids {
		waitState(t, s.m, id, Completed)
	}
	_, maxRunning, calls := f.stats()
	if maxRunning != bound {
		t.Errorf("at most %d ran at once, want %d", maxRunning, bound)
	}
	// Workers take jobs in submission order; with two workers the first
	// two may start in either order, so check the rest came after them.
	for i := bound; i < n; i++ {
		want := fmt.Sprintf("port %d ", 1000+i)
		if !strings.HasPrefix(calls[i], want) && !strings.HasPrefix(calls[i-1], want) && (i+1 == n || !strings.HasPrefix(calls[i+1], want)) {
			t.Errorf("run %d was %q, want %q near it", i, calls[i], want)
		}
	}
	if got := metric(t, reg, "stenofleet_spool_bytes"); got <= 0 {
		t.Errorf("stenofleet_spool_bytes %v, want > 0", got)
	}
	if got := metric(t, reg, "stenofleet_jobs_finished_total"); got != n {
		t.Errorf("stenofleet_jobs_finished_total %v, want %d", got, n)
	}
}

// TestRestart stops a Manager with a job complete, one running and one
// queued, plants the partial file a crash would leave, and starts another
// on the same spool.
func TestRestart(t *testing.T) {
	dir := t.TempDir()
	f := &fakeFleet{gate: make(chan struct{})}
	s := start(t, Config{SpoolDir: dir, Run: f.Run})
	done := submit(t, s.m, "alice", "port 1")
	f.gate <- struct{}{}
	waitState(t, s.m, done.ID, Completed)
	running := submit(t, s.m, "alice", "port 2")
	queued := submit(t, s.m, "alice", "port 3")
	waitFor(t, "port 2 running", func() bool {
		r, _, _ := f.stats()
		return r == 1 && exists(filepath.Join(dir, running.ID, hiddenPcap))
	})
	code, before := s.get(t, "alice", done.URL())
	if code != http.StatusOK || checkPcap(t, before) != 2 {
		t.Fatalf("completed result: %d, %d bytes", code, len(before))
	}
	// The running job's packets are on disk, hidden, and not served.
	if code, b := s.get(t, "alice", running.URL()); code != http.StatusConflict {
		t.Errorf("running job's result: %d %s, want 409", code, b)
	}
	s.stop()
	if j, err := loadJob(filepath.Join(dir, running.ID)); err != nil || j.State != Running {
		t.Fatalf("stopped mid-run: job.json %+v %v, want Running", j, err)
	}
	crashLeft := filepath.Join(dir, running.ID, hiddenPcap)
	if err := os.WriteFile(crashLeft, []byte("half a pcap"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "0123456789abcdef0123456789abcdef"), 0o700); err != nil {
		t.Fatal(err) // a directory whose Submit never wrote job.json
	}

	f2 := &fakeFleet{gate: make(chan struct{})}
	s2 := start(t, Config{SpoolDir: dir, Run: f2.Run})
	if exists(crashLeft) {
		t.Error("hidden partial result survived the restart")
	}
	if exists(filepath.Join(dir, "0123456789abcdef0123456789abcdef")) {
		t.Error("directory without state survived the restart")
	}
	code, after := s2.get(t, "alice", done.URL())
	if code != http.StatusOK || !bytes.Equal(before, after) {
		t.Errorf("completed result after restart: %d, %d bytes, identical %v", code, len(after), bytes.Equal(before, after))
	}
	for _, j := range []Job{running, queued} {
		if code, _ := s2.get(t, "alice", j.URL()); code != http.StatusConflict {
			t.Errorf("%s before its re-run: %d, want 409", j.Query, code)
		}
	}
	close(f2.gate)
	for _, j := range []Job{running, queued} {
		waitState(t, s2.m, j.ID, Completed)
		code, b := s2.get(t, "alice", j.URL())
		if code != http.StatusOK || checkPcap(t, b) != 2 || !bytes.Contains(b, []byte(j.Query)) {
			t.Errorf("%s after restart: %d, %d bytes", j.Query, code, len(b))
		}
	}
	if _, _, calls := f2.stats(); len(calls) != 2 || !strings.HasPrefix(calls[0], "port 2 ") {
		t.Errorf("re-runs %q: want the interrupted job first, then the queued one", calls)
	}
}

func TestExpireAge(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	f := &fakeFleet{}
	s := start(t, Config{SpoolDir: dir, Run: f.Run, Now: c.Now, ExpireTime: time.Hour, CleanupInterval: time.Hour})
	old := waitState(t, s.m, submit(t, s.m, "alice", "port 1").ID, Completed)
	c.Add(30 * time.Minute)
	young := waitState(t, s.m, submit(t, s.m, "alice", "port 2").ID, Completed)
	c.Add(29 * time.Minute)
	if err := s.m.Expire(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.m.Get(old.ID); err != nil {
		t.Fatalf("job expired before ExpireTime: %v", err)
	}
	c.Add(2 * time.Minute)
	if err := s.m.Expire(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.m.Get(old.ID); err == nil || exists(filepath.Join(dir, old.ID)) {
		t.Errorf("job %s older than ExpireTime kept", old.ID)
	}
	if code, _ := s.get(t, "alice", "/status/"+old.ID); code != http.StatusGone {
		t.Errorf("status of an expired job: %d, want 410", code)
	}
	if code, _ := s.get(t, "alice", young.URL()); code != http.StatusOK {
		t.Errorf("younger job: %d, want 200", code)
	}
}

func TestExpireSpace(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	// A file system of 3.5 results, one to be kept free: two results fit.
	f := &fakeFleet{}
	var one int64
	free := func(string) (int64, error) {
		var used int64
		for _, p := range spoolFiles(t, dir) {
			if filepath.Base(p) == resultName {
				st, err := os.Stat(filepath.Join(dir, p))
				if err != nil {
					continue // expired under us
				}
				used += st.Size()
			}
		}
		return 7*one/2 - used, nil
	}
	s := start(t, Config{SpoolDir: dir, Run: f.Run, Now: c.Now, CleanupInterval: time.Hour})
	first := waitState(t, s.m, submit(t, s.m, "alice", "port 1").ID, Completed)
	one = first.Bytes
	s.stop()

	s = start(t, Config{SpoolDir: dir, Run: f.Run, Now: c.Now, CleanupInterval: time.Hour,
		ExpireSpace: one, FreeSpace: free})
	var ids []string
	for i := 2; i <= 4; i++ {
		c.Add(time.Minute)
		ids = append(ids, waitState(t, s.m, submit(t, s.m, "alice", fmt.Sprintf("port %d", i)).ID, Completed).ID)
	}
	if err := s.m.Expire(); err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, j := range s.m.List() {
		left = append(left, j.Query[:6])
	}
	if want := "port 3,port 4"; strings.Join(left, ",") != want {
		t.Errorf("kept %q, want %q (the newest that leave ExpireSpace free)", left, want)
	}
	if n, _ := free(""); n < one {
		t.Errorf("free %d after expiry, want >= %d", n, one)
	}
	if exists(filepath.Join(dir, first.ID)) || exists(filepath.Join(dir, ids[0])) {
		t.Error("expired job directories remain")
	}
}

func TestAccess(t *testing.T) {
	f := &fakeFleet{}
	s := start(t, Config{SpoolDir: t.TempDir(), Run: f.Run,
		Allowed: func(user, owner string) bool { return user == owner || user == "admin" }})
	var q map[string]string
	s.getJSON(t, "alice", "/q/host/1.2.3.4/tcp", &q)
	id := q["id"]
	waitState(t, s.m, id, Completed)
	for _, tc := range []struct {
		user, path string
		code       int
	}{
		{"alice", "/status/" + id, 200},
		{"alice", "/" + id + "/merged.pcap", 200},
		{"admin", "/" + id + "/merged.pcap", 200},
		{"bob", "/status/" + id, 403},
		{"bob", "/" + id + "/merged.pcap", 403},
		{"", "/status/" + id, 401},
		{"", "/q/tcp", 401},
		{"bob", "/status/ffffffffffffffffffffffffffffffff", 404},
		{"bob", "/" + id + "/" + hiddenPcap, 404},
		{"alice", "/" + id + "/" + stateName, 404},
		{"alice", "/" + id + "/../" + id + "/" + hiddenState, 404},
		{"alice", "/q/bogus/1", 400},
		{"alice", "/q/after/5m", 400},
	} {
		if code, b := s.get(t, tc.user, tc.path); code != tc.code {
			t.Errorf("GET %s as %q: %d %s, want %d", tc.path, tc.user, code, b, tc.code)
		}
	}
	var ids []string
	s.getJSON(t, "bob", "/ids", &ids)
	if len(ids) != 0 {
		t.Errorf("bob sees ids %q of alice's jobs", ids)
	}
	s.getJSON(t, "admin", "/ids", &ids)
	if len(ids) != 1 || ids[0] != id {
		t.Errorf("admin sees %q, want [%s]", ids, id)
	}
}

func TestHandler(t *testing.T) {
	c := newClock()
	f := &fakeFleet{gate: make(chan struct{})}
	s := start(t, Config{SpoolDir: t.TempDir(), Run: f.Run, Now: c.Now})
	var q map[string]string
	s.getJSON(t, "alice", "/q/host/1.2.3.4/port/80/after/5m", &q)
	want := map[string]string{
		"Requested": "2018-01-10T22:11:40Z",
		"query":     "host 1.2.3.4 and port 80 and after 2018-01-10T22:06:00Z and before 2018-01-10T22:12:00Z",
		"url":       "/" + q["id"] + "/merged.pcap",
	}
	for k, v := range want {
		if q[k] != v {
			t.Errorf("%s = %q, want %q", k, q[k], v)
		}
	}
	if len(q) != 4 || len(q["id"]) != 32 {
		t.Errorf("answer %v: want exactly Requested, id, query, url", q)
	}
	var other map[string]string
	s.getJSON(t, "alice", "/q/port/21", &other)
	if want := "port 21 and after 2018-01-09T22:11:00Z and before 2018-01-10T22:12:00Z"; other["query"] != want {
		t.Errorf("default window: %q, want %q", other["query"], want)
	}
	var st map[string]statusBody
	s.getJSON(t, "alice", "/status/"+q["id"], &st)
	if got := st[q["id"]].State; got != Running && got != Queued {
		t.Errorf("state %s before the run ends", got)
	}
	var urls map[string]string
	s.getJSON(t, "alice", "/urls", &urls)
	if len(urls) != 0 {
		t.Errorf("urls %v before any job completed", urls)
	}
	close(f.gate)
	waitState(t, s.m, q["id"], Completed)
	waitState(t, s.m, other["id"], Completed)
	s.getJSON(t, "alice", "/urls?id="+q["id"]+",nope", &urls)
	if len(urls) != 1 || urls[q["id"]] != q["url"] {
		t.Errorf("urls filtered %v, want {%s: %s}", urls, q["id"], q["url"])
	}
	var ids []string
	s.getJSON(t, "alice", "/ids", &ids)
	if len(ids) != 2 {
		t.Errorf("ids %q, want both jobs", ids)
	}
	code, b := s.get(t, "alice", q["url"])
	if code != http.StatusOK || checkPcap(t, b) != 2 {
		t.Errorf("result: %d, %d bytes", code, len(b))
	}
}

// metric is the sum of the gathered samples named name.
func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var v float64
		for _, m := range mf.GetMetric() {
			v += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
		return v
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}
