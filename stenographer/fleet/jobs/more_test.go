package jobs

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestConcurrentSubmit: many users of one id at once get one job and one run.
func TestConcurrentSubmit(t *testing.T) {
	f := &fakeFleet{}
	s := start(t, Config{SpoolDir: t.TempDir(), Run: f.Run, MaxRunning: 4})
	var wg sync.WaitGroup
	ids := make([]string, 16)
	for i := range ids {
		wg.Go(func() {
			clauses := []string{"host 1.2.3.4", "tcp"}
			if i%2 == 1 {
				clauses = []string{"tcp", "host 1.2.3.4"}
			}
			j, err := s.m.Submit(context.Background(), "alice", clauses, []string{"s2", "s1"})
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = j.ID
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("ids differ: %q", ids)
		}
	}
	j := waitState(t, s.m, ids[0], Completed)
	_, _, calls := f.stats()
	f.mu.Lock()
	args := f.sensorArgs
	f.mu.Unlock()
	if len(calls) != 1 || strings.Join(args[0], ",") != "s1,s2" || strings.Join(j.Sensors, ",") != "s1,s2" {
		t.Errorf("runs %q with sensors %q, job sensors %q: want one run on s1,s2", calls, args, j.Sensors)
	}
}

// TestRestartResultGone: a Completed job whose result vanished is run
// again rather than served as missing.
func TestRestartResultGone(t *testing.T) {
	dir := t.TempDir()
	f := &fakeFleet{}
	s := start(t, Config{SpoolDir: dir, Run: f.Run})
	j := waitState(t, s.m, submit(t, s.m, "alice", "udp").ID, Completed)
	s.stop()
	if err := os.Remove(filepath.Join(dir, j.ID, resultName)); err != nil {
		t.Fatal(err)
	}
	f2 := &fakeFleet{}
	s2 := start(t, Config{SpoolDir: dir, Run: f2.Run})
	waitState(t, s2.m, j.ID, Completed)
	if code, b := s2.get(t, "alice", j.URL()); code != http.StatusOK || checkPcap(t, b) != 2 {
		t.Errorf("re-run result: %d, %d bytes", code, len(b))
	}
	if _, _, calls := f2.stats(); len(calls) != 1 {
		t.Errorf("%d re-runs, want 1", len(calls))
	}
}

func TestHandlerMethodsAndSensors(t *testing.T) {
	f := &fakeFleet{}
	s := start(t, Config{SpoolDir: t.TempDir(), Run: f.Run})
	var q map[string]string
	s.getJSON(t, "alice", "/q/tcp?sensors=core,dmz", &q)
	j := waitState(t, s.m, q["id"], Completed)
	if strings.Join(j.Sensors, ",") != "core,dmz" {
		t.Errorf("sensors %q, want core,dmz", j.Sensors)
	}
	req, err := http.NewRequest(http.MethodPost, s.srv.URL+"/q/tcp", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-User", "alice")
	resp, err := s.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /q: %d, want 405", resp.StatusCode)
	}
}

func TestStatfsFree(t *testing.T) {
	n, err := statfsFree(t.TempDir())
	if err != nil || n <= 0 {
		t.Errorf("statfsFree = %d, %v; want free bytes", n, err)
	}
	if _, err := statfsFree(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("statfs of a missing dir: %v, want an error naming it", err)
	}
}
