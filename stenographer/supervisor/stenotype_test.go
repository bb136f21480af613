package supervisor

import (
	"bytes"
	"encoding/binary"
	"net"
	"os"
	"os/exec"
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
	// A hidden packet file holding packets is recovered (renamed and
	// indexed); anything else hidden is deleted.
	handled := map[string]bool{}
	for _, r := range rec.find("deleted leftover file") {
		handled[r.Attrs["path"]] = true
	}
	for _, r := range rec.find("recovered the packet file of an unfinished write") {
		p := r.Attrs["path"]
		handled[filepath.Join(filepath.Dir(p), "."+filepath.Base(p))] = true
		if _, err := os.Stat(filepath.Join(th[0].IndexDirectory, filepath.Base(p))); err != nil {
			t.Errorf("recovered %s has no index: %v", p, err)
		}
	}
	for _, l := range leftovers {
		if !handled[l] {
			t.Errorf("neither deletion nor recovery of leftover %s logged; log:\n%s", l, rec.dump())
		}
	}
	if ex := rec.find("stenotype exited"); len(ex) != 1 || ex[0].Attrs["status"] != "killed by signal killed" {
		t.Errorf("exit logged as %v", ex)
	}
	// Newer than the killed run's files, recovered ones included.
	newest := before[len(before)-1]
	for _, l := range leftovers {
		newest = max(newest, strings.TrimPrefix(filepath.Base(l), "."))
	}
	waitFor(t, "a file pair from the restarted stenotype", rec, func() bool {
		p, _ := pairs(t, th[0])
		return len(p) > 0 && p[len(p)-1] > newest
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

// tinyPcap writes a little-endian pcap of n Ethernet/IPv4/UDP frames, a
// millisecond apart.
func tinyPcap(t *testing.T, n int) string {
	t.Helper()
	le := binary.LittleEndian
	b := le.AppendUint32(nil, 0xa1b2c3d4)
	b = le.AppendUint16(b, 2)
	b = le.AppendUint16(b, 4)
	b = append(b, make([]byte, 8)...) // thiszone, sigfigs
	b = le.AppendUint32(b, 65535)
	b = le.AppendUint32(b, 1) // Ethernet
	for i := 0; i < n; i++ {
		frame := append([]byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00},
			0x45, 0, 0, 28+4, 0, 0, 0, 0, 64, 17, 0, 0, 10, 9, 0, 1, 10, 9, 0, 2, // IPv4, UDP
			0x30, 0x39, 0, 53, 0, 12, 0, 0, byte(i), 1, 2, 3) // 12345 → 53, 4 bytes
		b = le.AppendUint32(b, uint32(1700000000))
		b = le.AppendUint32(b, uint32(i*1000))
		b = le.AppendUint32(b, uint32(len(frame)))
		b = le.AppendUint32(b, uint32(len(frame)))
		b = append(b, frame...)
	}
	p := filepath.Join(t.TempDir(), "tiny.pcap")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A packet file that lost its index (an index write that failed) and a
// hidden one (stenotype killed before the rename) are given an index by
// `stenodump reindex` and put in place, so their packets stay queryable:
// the rebuilt index is the one stenotype wrote.
func TestReindexLeftovers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (stenotype drops privileges)")
	}
	bin := stenotypeBinary(t)
	pcap := tinyPcap(t, 20)
	_, th := threads(t, 2)
	var name string
	var index []byte
	for i, x := range th {
		// stenotype --dir wants PKT0/IDX0: import there, then move.
		dir := filepath.Join(t.TempDir(), "steno")
		out, err := exec.Command(bin, "--pcap_in="+pcap, "--dir="+dir, "--uid=0", "--gid=0").CombinedOutput()
		if err != nil {
			t.Fatalf("import: %v\n%s", err, out)
		}
		for _, m := range [][2]string{{"PKT0", x.PacketsDirectory}, {"IDX0", x.IndexDirectory}} {
			if err := os.MkdirAll(filepath.Dir(m[1]), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(filepath.Join(dir, m[0]), m[1]); err != nil {
				t.Fatal(err)
			}
		}
		names := listDir(t, x.IndexDirectory)
		if len(names) != 1 {
			t.Fatalf("import made index files %q, want one", names)
		}
		name = names[0]
		if index, err = os.ReadFile(filepath.Join(x.IndexDirectory, name)); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(x.IndexDirectory, name)); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			if err := os.Rename(filepath.Join(x.PacketsDirectory, name), filepath.Join(x.PacketsDirectory, "."+name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	rec := newRecorder()
	rx := newReindexer(bin, nil)
	for i, x := range th {
		if n, err := cleanLeftovers(rec.logger(), i, x, rx); err != nil || n != 0 {
			t.Errorf("thread %d: cleanLeftovers deleted %d files, err %v; want the packets kept; log:\n%s", i, n, err, rec.dump())
		}
		if p, hidden := pairs(t, x); len(p) != 1 || p[0] != name || len(hidden) != 0 {
			t.Errorf("thread %d: pairs %q, hidden %q; want the pair %s", i, p, hidden, name)
		}
		if got, err := os.ReadFile(filepath.Join(x.IndexDirectory, name)); err != nil || !bytes.Equal(got, index) {
			t.Errorf("thread %d: rebuilt index (%d bytes, %v) differs from stenotype's (%d bytes)", i, len(got), err, len(index))
		}
	}
	if n := len(rec.find("re-indexed packet file without index")); n != 2 {
		t.Errorf("%d re-indexings logged, want 2; log:\n%s", n, rec.dump())
	}
	if n := len(rec.find("recovered the packet file of an unfinished write")); n != 1 {
		t.Errorf("%d recoveries logged, want 1", n)
	}
	// Without stenodump the packets are kept, not deleted, and the
	// failure is logged.
	if err := os.Remove(filepath.Join(th[0].IndexDirectory, name)); err != nil {
		t.Fatal(err)
	}
	if n, _ := cleanLeftovers(rec.logger(), 0, th[0], reindexer{blockSize: 1 << 20}); n != 0 {
		t.Errorf("without stenodump %d files deleted, want the packet file kept", n)
	}
	if _, err := os.Stat(filepath.Join(th[0].PacketsDirectory, name)); err != nil {
		t.Errorf("packet file without index deleted: %v", err)
	}
	if len(rec.find("packet file without index kept unqueryable: cannot re-index it (retention counts it)")) != 1 {
		t.Errorf("the failed re-index is not logged; log:\n%s", rec.dump())
	}
}
