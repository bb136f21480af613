// The job spool with real stenofleet processes, each on a spool of its
// own: a restart with jobs queued, running and complete, and expiry by
// age and by space.

package fleet_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// jobStatus is one job of GET /status/<id>.
type jobStatus struct {
	State   string
	Partial bool
	Missing []string
	Query   string
	Reason  string // of a 410
	Events  []struct{ State, Message string }
}

// raw is a GET on p as alice that must answer status.
func (p *fleetProc) raw(t *testing.T, path string, status int) []byte {
	t.Helper()
	return p.e.expect(t, p.e.doAt(t, p.addr, "GET", path, "", "", nil), p.addr+" GET "+path, status).body
}

func (p *fleetProc) submit(t *testing.T, path string) map[string]string {
	t.Helper()
	var j map[string]string
	if err := json.Unmarshal(p.raw(t, path, http.StatusOK), &j); err != nil || j["id"] == "" {
		t.Fatalf("GET %s: %v %v", path, j, err)
	}
	return j
}

// status is the job's /status answer: 200 with its state or 410 with the
// expiry's reason.
func (p *fleetProc) status(t *testing.T, id string) (int, jobStatus) {
	t.Helper()
	a := p.e.doAt(t, p.addr, "GET", "/status/"+id, "", "", nil)
	var st jobStatus
	switch a.status {
	case http.StatusOK:
		var m map[string]jobStatus
		if err := json.Unmarshal(a.body, &m); err != nil {
			t.Fatalf("/status/%s: %v: %s", id, err, a.body)
		}
		st = m[id]
	case http.StatusGone:
		var m map[string]string
		if err := json.Unmarshal(a.body, &m); err != nil {
			t.Fatalf("/status/%s: %v: %s", id, err, a.body)
		}
		st.Reason = m["reason"]
	default:
		t.Fatalf("/status/%s: %d %s", id, a.status, a.body)
	}
	return a.status, st
}

// waitState polls until job id is in state want; Failed ends the wait.
func (p *fleetProc) waitState(t *testing.T, id, want string) jobStatus {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		code, st := p.status(t, id)
		if code == http.StatusOK && st.State == want {
			return st
		}
		if code != http.StatusOK || st.State == "Failed" || time.Now().After(deadline) {
			t.Fatalf("job %s: status %d %+v, want %s", id, code, st, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitGone polls until job id answers 410 and returns the reason.
func (p *fleetProc) waitGone(t *testing.T, id string) string {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		code, st := p.status(t, id)
		if code == http.StatusGone {
			return st.Reason
		}
		if st.State == "Failed" || time.Now().After(deadline) {
			t.Fatalf("job %s: %s, want it expired", id, st.State)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// sameResult checks a job's result against each sensor alone for the
// job's resolved query, fetched now.
func (e *fleetEnv) sameResult(t *testing.T, p *fleetProc, j map[string]string) []byte {
	t.Helper()
	st := p.waitState(t, j["id"], "Completed")
	if st.Partial || len(st.Missing) > 0 {
		t.Errorf("job %s: partial, missing %v", j["id"], st.Missing)
	}
	b := p.raw(t, j["url"], http.StatusOK)
	want := e.union(t, st.Query, e.sensors)
	if got := parse(t, b).Packets; len(got) != len(want) {
		// Say which sensor's part differs, not only that one does.
		for _, s := range e.sensors {
			n := 0
			for _, pk := range got {
				if fmt.Sprintf("sensor-%d", pk.Data[4]) == s.name {
					n++
				}
			}
			t.Logf("job %s: %s: %d packets in the result, %d alone", j["id"], s.name, n, len(parse(t, s.d.MustQuery(st.Query, nil)).Packets))
		}
	}
	e.samePackets(t, "job "+j["id"]+" "+st.Query, parse(t, b).Packets, want)
	return b
}

// jobFiles reads job id's job.json state and whether its merged.pcap and
// hidden result exist.
func jobFiles(t *testing.T, spool, id string) (state string, result, hidden bool) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(spool, id, "job.json"))
	if err != nil {
		t.Fatal(err)
	}
	var j struct{ State string }
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatalf("%s/job.json: %v", id, err)
	}
	_, err = os.Stat(filepath.Join(spool, id, "merged.pcap"))
	_, herr := os.Stat(filepath.Join(spool, id, ".merged.pcap.tmp"))
	return j.State, err == nil, herr == nil
}

// stall SIGSTOPs a sensor's stenographer so its part of a query hangs;
// the returned func (also run at cleanup) resumes it.
func stall(t *testing.T, s *sensorNode) func() {
	if err := syscall.Kill(s.d.PID(), syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP %s: %v", s.name, err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			// ESRCH: killed since, which is the point of some tests.
			if err := syscall.Kill(s.d.PID(), syscall.SIGCONT); err != nil && err != syscall.ESRCH {
				t.Errorf("SIGCONT %s: %v", s.name, err)
			}
		}
	}
	t.Cleanup(resume)
	return resume
}

// jobRestart: a Completed, a Running and a Queued job survive stenofleet
// stopped by sig: the completed result is kept byte for byte, the others
// run again to the full result, and nothing partial is served.
func (e *fleetEnv) jobRestart(t *testing.T, sig syscall.Signal, addr string) {
	spool := filepath.Join(e.dir, "spool-restart-"+strings.ToLower(sig.String()[:4]))
	cfg := e.writeConfig(filepath.Base(spool)+".yaml", fleetOpts{listen: addr, spool: spool,
		sensorTimeout: "600s", extra: "MAX_JOBS: 1\n"})
	p := e.startInstance(t, cfg, addr, nil)

	done := p.submit(t, "/q/host/"+sharedHost+"/udp/?sensors=good")
	donePcap := e.sameResult(t, p, done)
	resume := stall(t, e.sensors[2])
	running := p.submit(t, "/q/host/"+sharedHost+"/tcp/?sensors=good")
	p.waitState(t, running["id"], "Running")
	queued := p.submit(t, "/q/net/10.1.0.0/24/?sensors=good")
	for _, c := range []struct {
		j    map[string]string
		want string
	}{{done, "Completed"}, {running, "Running"}, {queued, "Queued"}} {
		if _, st := p.status(t, c.j["id"]); st.State != c.want {
			t.Fatalf("job %s: %s, want %s", c.j["id"], st.State, c.want)
		}
		if c.want != "Completed" {
			p.raw(t, c.j["url"], http.StatusConflict)
		}
		p.raw(t, "/"+c.j["id"]+"/.merged.pcap.tmp", http.StatusNotFound)
	}

	if _, res, hidden := jobFiles(t, spool, running["id"]); res || !hidden {
		t.Errorf("running job %s: merged.pcap %v, hidden result %v; want only the hidden one", running["id"], res, hidden)
	}
	p.stop(sig)
	if code := p.exitCode(); sig == syscall.SIGTERM && code != 0 {
		t.Errorf("stenofleet exited with %d after SIGTERM, want 0", code)
	}
	for _, c := range []struct {
		j      map[string]string
		state  string
		result bool
	}{{done, "Completed", true}, {running, "Running", false}, {queued, "Queued", false}} {
		st, res, _ := jobFiles(t, spool, c.j["id"])
		if st != c.state || res != c.result {
			t.Errorf("after %v: job %s: job.json %s, merged.pcap %v; want %s, %v", sig, c.j["id"], st, res, c.state, c.result)
		}
	}
	if b, err := os.ReadFile(filepath.Join(spool, done["id"], "merged.pcap")); err != nil || !bytes.Equal(b, donePcap) {
		t.Errorf("after %v: the completed result changed on disk (%d bytes, %v)", sig, len(b), err)
	}

	resume()
	p.restart()
	if b := p.raw(t, done["url"], http.StatusOK); !bytes.Equal(b, donePcap) {
		t.Errorf("after the restart the completed result is %d bytes, was %d", len(b), len(donePcap))
	}
	for _, j := range []map[string]string{running, queued} {
		e.sameResult(t, p, j)
		if _, _, hidden := jobFiles(t, spool, j["id"]); hidden {
			t.Errorf("job %s: hidden result left after it completed", j["id"])
		}
	}
	_, st := p.status(t, running["id"])
	if !slices.ContainsFunc(st.Events, func(ev struct{ State, Message string }) bool {
		return strings.Contains(ev.Message, "restarted")
	}) {
		t.Errorf("job %s: no restart in its history %+v", running["id"], st.Events)
	}
	if b := p.raw(t, done["url"], http.StatusOK); !bytes.Equal(b, donePcap) {
		t.Errorf("the completed result changed after the re-runs")
	}
}

// expireAge: a finished job on an instance with EXPIRE_TIME of seconds
// leaves /ids and the spool, and answers 410.
func (e *fleetEnv) expireAge(t *testing.T, addr string) {
	spool := filepath.Join(e.dir, "spool-age")
	p := e.startInstance(t, e.writeConfig("age.yaml", fleetOpts{listen: addr, spool: spool, expireTime: "5",
		extra: "CLEANUP_TIME: 1\n"}), addr, nil)
	j := p.submit(t, "/q/host/"+sharedHost+"/?sensors=good")
	if reason := p.waitGone(t, j["id"]); reason != "age" {
		t.Errorf("job %s expired for %q, want age", j["id"], reason)
	}
	p.raw(t, j["url"], http.StatusGone)
	var ids []string
	if err := json.Unmarshal(p.raw(t, "/ids", http.StatusOK), &ids); err != nil || slices.Contains(ids, j["id"]) {
		t.Errorf("/ids = %v (%v) after expiry, want %s gone", ids, err, j["id"])
	}
	if _, err := os.Stat(filepath.Join(spool, j["id"])); !os.IsNotExist(err) {
		t.Errorf("expired job's directory: %v, want it removed", err)
	}
}

// expireSpace: on a small tmpfs, finished jobs are removed oldest first
// while free space is below EXPIRE_SPACE; the newest stays, and a
// running job is never removed.
func (e *fleetEnv) expireSpace(t *testing.T, addr string) {
	const limit = 2 << 20
	mnt := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=8m"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", mnt, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, 0); err != nil {
			t.Errorf("umount %s: %v (detached instead)", mnt, err)
			syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
	})
	spool := filepath.Join(mnt, "spool")
	p := e.startInstance(t, e.writeConfig("space.yaml", fleetOpts{listen: addr, spool: spool,
		extra: fmt.Sprintf("EXPIRE_SPACE: %d\nCLEANUP_TIME: 1\n", limit)}), addr, nil)
	ballast := filepath.Join(mnt, "ballast")
	setFree(t, mnt, ballast, limit+(1<<20))
	job := func(hours int) map[string]string {
		// Different bounds, the same packets: jobs of one size.
		return p.submit(t, fmt.Sprintf("/q/host/%s/after/%dh/?sensors=good", sharedHost, hours))
	}
	before := free(t, mnt)
	j1 := job(10)
	e.sameResult(t, p, j1)
	use := before - free(t, mnt)
	if use <= 0 {
		t.Fatalf("a job takes %d bytes of the spool", use)
	}
	setFree(t, mnt, ballast, limit+use+use/2) // room for one more job
	j2 := job(11)
	e.sameResult(t, p, j2)
	if code, st := p.status(t, j1["id"]); code != http.StatusOK {
		t.Errorf("job %s removed with free space above EXPIRE_SPACE (%+v)", j1["id"], st)
	}
	j3 := job(12)
	e.sameResult(t, p, j3)
	if reason := p.waitGone(t, j1["id"]); reason != "space" {
		t.Errorf("job %s expired for %q, want space", j1["id"], reason)
	}
	j4 := job(13)
	e.sameResult(t, p, j4)
	p.waitGone(t, j2["id"])
	for _, j := range []map[string]string{j3, j4} {
		p.raw(t, j["url"], http.StatusOK)
	}
	p.raw(t, j1["url"], http.StatusGone)

	// A running job under a full spool: every finished one goes, it stays.
	resume := stall(t, e.sensors[2])
	j5 := job(14)
	p.waitState(t, j5["id"], "Running")
	setFree(t, mnt, ballast, limit-4*use)
	p.waitGone(t, j3["id"])
	p.waitGone(t, j4["id"])
	time.Sleep(2 * time.Second) // two more cleanups over the running job
	if code, st := p.status(t, j5["id"]); code != http.StatusOK || st.State != "Running" {
		t.Errorf("running job %s under a full spool: %d %+v, want it Running", j5["id"], code, st)
	}
	setFree(t, mnt, ballast, limit+4*use)
	resume()
	e.sameResult(t, p, j5)
}

func free(t *testing.T, dir string) int64 {
	t.Helper()
	var s syscall.Statfs_t
	if err := syscall.Statfs(dir, &s); err != nil {
		t.Fatalf("statfs %s: %v", dir, err)
	}
	return int64(s.Bavail) * s.Bsize
}

// setFree grows or shrinks the ballast file so dir's file system has
// about want bytes free.
func setFree(t *testing.T, dir, ballast string, want int64) {
	t.Helper()
	st, err := os.Stat(ballast)
	size := int64(0)
	if err == nil {
		size = st.Size()
	}
	size += free(t, dir) - want
	if size < 0 {
		t.Fatalf("cannot make %d bytes free in %s", want, dir)
	}
	if err := os.Truncate(ballast, 0); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	// Written, not truncated up: a sparse file takes no room on tmpfs.
	if err := os.WriteFile(ballast, make([]byte, size), 0o600); err != nil {
		t.Fatalf("ballast of %d bytes: %v", size, err)
	}
}
