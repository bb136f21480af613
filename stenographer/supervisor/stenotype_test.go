package supervisor

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/stenographer/store"
)

// stenotypeBinary returns build/bin/stenotype of this checkout; a missing
// binary fails the test (`make test` builds it first).
func stenotypeBinary(t *testing.T) string {
	t.Helper()
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		if filepath.Dir(dir) == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = filepath.Dir(dir)
	}
	p := filepath.Join(dir, "build", "bin", "stenotype")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s not built (%v): run `make build` first", p, err)
	}
	return p
}

// pairs returns the visible pair names of a thread and its hidden files.
func pairs(t *testing.T, th store.Thread) (paired, hidden []string) {
	t.Helper()
	idx := map[string]bool{}
	for _, n := range listDir(t, th.IndexDirectory) {
		if strings.HasPrefix(n, ".") {
			hidden = append(hidden, filepath.Join(th.IndexDirectory, n))
		}
		idx[n] = true
	}
	for _, n := range listDir(t, th.PacketsDirectory) {
		switch {
		case strings.HasPrefix(n, "."):
			hidden = append(hidden, filepath.Join(th.PacketsDirectory, n))
		case idx[n]:
			paired = append(paired, n)
		}
	}
	return paired, hidden
}

// The real stenotype under the supervisor, capturing on lo as the user it
// drops to (nobody, in directories the supervisor created for it): file
// pairs appear; after SIGKILL it is restarted, its leftovers are deleted
// before the restart and capture resumes; Stop flushes it (exit 0, no
// hidden files, every packet file with its index).
func TestRealStenotype(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (AF_PACKET capture)")
	}
	bin := stenotypeBinary(t)
	base, th := threads(t, 1)
	// t.TempDir's parent and itself are 0700; nobody must reach the
	// thread directories below them.
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	rec := newRecorder()
	cfg := fast(bin, th, rec)
	cfg.Flags = []string{"--blocks=16", "--blockage_sec=1", "--fileage_sec=1", "--stats_sec=1", "--no_promisc"}
	cfg.BackoffBase = 2 * time.Second // time to look at the leftovers before the restart
	cfg.StopGrace = 60 * time.Second
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer stop(t, s)

	// Traffic on lo: UDP datagrams to a port nobody listens on.
	done := make(chan struct{})
	defer close(done)
	go func() {
		c, err := net.Dial("udp", "127.0.0.1:9")
		if err != nil {
			return
		}
		defer c.Close()
		for {
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
				c.Write([]byte("stenographer supervisor test"))
			}
		}
	}()

	waitFor(t, "a file pair from the first stenotype", rec, func() bool {
		p, _ := pairs(t, th[0])
		return len(p) > 0
	})
	before, _ := pairs(t, th[0])
	pid := s.Pid()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the killed stenotype to be reaped", rec, func() bool { return s.Pid() == 0 })
	_, leftovers := pairs(t, th[0])
	t.Logf("leftovers of the killed stenotype: %q", leftovers)
	waitFor(t, "the restart", rec, func() bool { return s.Starts() >= 2 })
	for _, l := range leftovers {
		if _, err := os.Stat(l); err == nil {
			t.Errorf("leftover %s of the killed stenotype survived the restart", l)
		}
	}
	deleted := map[string]bool{}
	for _, r := range rec.find("deleted leftover file") {
		deleted[r.Attrs["path"]] = true
	}
	for _, l := range leftovers {
		if !deleted[l] {
			t.Errorf("deletion of leftover %s not logged", l)
		}
	}
	if ex := rec.find("stenotype exited"); len(ex) != 1 || ex[0].Attrs["status"] != "killed by signal killed" {
		t.Errorf("exit logged as %v", ex)
	}
	waitFor(t, "a file pair from the restarted stenotype", rec, func() bool {
		p, _ := pairs(t, th[0])
		return len(p) > 0 && p[len(p)-1] > before[len(before)-1] && len(p) > len(before)
	})
	if err := stop(t, s); err != nil {
		t.Fatal(err)
	}
	stopped := rec.find("stenotype stopped")
	if len(stopped) != 1 || stopped[0].Attrs["status"] != "exit status 0" {
		t.Errorf("stop logged as %v; log:\n%s", stopped, rec.dump())
	}
	p, hidden := pairs(t, th[0])
	if len(hidden) != 0 {
		t.Errorf("hidden files after a clean stop: %q", hidden)
	}
	if n := len(listDir(t, th[0].PacketsDirectory)); n != len(p) {
		t.Errorf("%d packet files, %d with an index", n, len(p))
	}
	if len(rec.find("stenotype")) == 0 {
		t.Error("no stenotype output in the log")
	}
}
