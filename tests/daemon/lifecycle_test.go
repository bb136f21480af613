package daemon_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/tests/internal/daemon"
	"github.com/stenographer-ng/stenographer/tests/internal/netns"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// openFileFlags keep every packet in one file that stays open (hidden) for
// the whole test, so only a stenotype that flushes on a clean stop saves
// them. No --uid: stenotype drops to nobody, which clears the parent-death
// signal, so a stenotype whose daemon dies keeps running (an orphan).
var openFileFlags = []string{"--fileage_sec=3600", "--blockage_sec=1", "--blocks=16", "--stats_sec=1"}

// newThreadDirs returns thread directories that do not exist yet (the
// daemon creates them for nobody).
func newThreadDirs(t *testing.T) []daemon.Thread {
	base := testenv.DiskTempDir(t)
	return []daemon.Thread{{PacketsDirectory: filepath.Join(base, "t0", "pkt"), IndexDirectory: filepath.Join(base, "t0", "idx")}}
}

var stats0RE = regexp.MustCompile(`STATS thread=0 packets=(\d+)`)

// statsLines returns how many STATS lines of thread 0 the log holds and
// the packet count of the last one.
func statsLines(d *daemon.Daemon) (lines, packets int) {
	m := stats0RE.FindAllSubmatch(d.Log(), -1)
	if len(m) == 0 {
		return 0, 0
	}
	packets, _ = strconv.Atoi(string(m[len(m)-1][1]))
	return len(m), packets
}

// sendToOpenFile replays the generated frames and waits until stenotype
// has taken all of them and written blocks into its open (hidden) file:
// from then on they are on disk, and losing them is the daemon's fault.
func sendToOpenFile(t *testing.T, pair *netns.Pair, d *daemon.Daemon) int {
	t.Helper()
	gp := generatedPcap(t)
	n := len(framesOf(t, gp))
	replay(t, pair, 500, n, gp)
	pkt := d.Config.Threads[0].PacketsDirectory
	d.WaitFor(fmt.Sprintf("STATS to count %d packets and blocks in the hidden packet file", n), 2*time.Minute, func() bool {
		if _, p := statsLines(d); p < n {
			return false
		}
		ents, _ := os.ReadDir(pkt)
		for _, e := range ents {
			if info, err := e.Info(); err == nil && strings.HasPrefix(e.Name(), ".") && info.Size() > 0 {
				return true
			}
		}
		return false
	})
	if f := d.Files(0); len(f) != 0 {
		t.Fatalf("visible packet files %v: the test needs every packet in the open file", f)
	}
	return n
}

// openFile is a daemon whose stenotype holds every packet sent in its
// open file.
type openFile struct {
	pair      *netns.Pair
	dirs      []daemon.Thread
	d         *daemon.Daemon
	n         int // packets sent
	stenotype int // its pid
}

// startOpenFile starts a daemon with openFileFlags on new directories and
// sends the generated frames into its open file.
func startOpenFile(t *testing.T) openFile {
	t.Helper()
	testenv.RequireTools(t, "tcpreplay")
	o := openFile{pair: netns.NewPair(t), dirs: newThreadDirs(t)}
	o.d = daemon.Start(t, o.pair, daemon.Options{ThreadDirs: o.dirs, Flags: openFileFlags})
	o.n = sendToOpenFile(t, o.pair, o.d)
	if o.stenotype = o.d.Stenotype(); o.stenotype == 0 {
		t.Fatalf("no stenotype child of the daemon (pid %d)", o.d.PID())
	}
	return o
}

// TestHangup: SIGHUP to the daemon's process group and to stenotype's
// stops neither. The daemon logs that it ignores it; the same stenotype
// keeps reporting; after a clean stop a new daemon on the same directories
// serves every packet sent before the hangup.
func TestHangup(t *testing.T) {
	o := startOpenFile(t)
	pair, dirs, d, n, pid := o.pair, o.dirs, o.d, o.n, o.stenotype
	before, _ := statsLines(d)
	for _, g := range []int{d.PID(), pid} {
		if err := syscall.Kill(-g, syscall.SIGHUP); err != nil {
			t.Fatalf("SIGHUP to process group %d: %v", g, err)
		}
	}
	d.WaitFor("the daemon to log the SIGHUP", time.Minute, func() bool {
		return strings.Contains(string(d.Log()), "SIGHUP ignored")
	})
	d.WaitFor("three more STATS lines after the SIGHUP", time.Minute, func() bool {
		after, _ := statsLines(d)
		return after >= before+3 || !daemon.ProcessAlive(pid)
	})
	if !daemon.ProcessAlive(pid) || d.Stenotype() != pid {
		t.Fatalf("stenotype %d did not survive SIGHUP (now %d); log:\n%s", pid, d.Stenotype(), d.LogTail())
	}
	if strings.Contains(string(d.Log()), "stenotype exited") {
		t.Errorf("stenotype exited after SIGHUP; log:\n%s", d.LogTail())
	}
	d.Stop()

	d2 := daemon.Start(t, pair, daemon.Options{ThreadDirs: dirs, Flags: openFileFlags})
	waitCount(t, d2, everything, n, time.Minute)
}

// TestDaemonKilled: the daemon dies by SIGKILL and leaves its stenotype
// running. That orphan must survive writing its log into the dead
// daemon's pipe, so that the next daemon on the same directories finds it,
// stops it with SIGTERM (it flushes its open file) and serves every packet
// sent before the kill.
func TestDaemonKilled(t *testing.T) {
	o := startOpenFile(t)
	pair, dirs, d, n, orphan := o.pair, o.dirs, o.d, o.n, o.stenotype
	if err := syscall.Kill(d.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	d.ExitErr()
	t.Logf("daemon %d killed; its stenotype %d is an orphan", d.PID(), orphan)

	d2 := daemon.Start(t, pair, daemon.Options{ThreadDirs: dirs, Flags: openFileFlags})
	waitCount(t, d2, everything, n, time.Minute)
	if !strings.Contains(string(d2.Log()), "stopping a stenotype left running by an earlier stenographer") {
		t.Errorf("the new daemon did not log stopping the orphan %d; log:\n%s", orphan, d2.LogTail())
	}
	if daemon.ProcessAlive(orphan) {
		t.Errorf("the orphan %d still runs", orphan)
	}
}

// TestSecondDaemon: a second daemon on the thread directories of a running
// one (on another port) exits non-zero at once, naming the directory, and
// touches nothing: the first keeps its private directory and files, keeps
// rotating, and serves what is sent afterwards.
func TestSecondDaemon(t *testing.T) {
	testenv.RequireTools(t, "tcpreplay")
	pair := netns.NewPair(t)
	d := daemon.Start(t, pair, daemon.Options{})
	d.WaitFor("a first packet file", time.Minute, func() bool { return len(d.Files(0)) > 0 })
	before := d.Files(0)
	hidden := d.Hidden(0)

	d2 := daemon.Start(t, pair, daemon.Options{ThreadDirs: d.Config.Threads, NoWait: true, Edit: func(c *daemon.Config) {
		c.Port = daemon.HTTPSPort + 1
	}})
	deadline := time.Now().Add(time.Minute)
	for !d2.Exited() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if !d2.Exited() {
		t.Fatalf("the second daemon still runs after a minute; log:\n%s", d2.LogTail())
	}
	if d2.ExitErr() == nil {
		t.Errorf("the second daemon exited with status 0, want non-zero")
	}
	log2 := string(d2.Log())
	if dir := d.Config.Threads[0].PacketsDirectory; !strings.Contains(log2, dir+" is in use") {
		t.Errorf("the second daemon's message does not name %s as in use:\n%s", dir, log2)
	}
	if strings.Contains(log2, "started stenotype") || strings.Contains(log2, "deleted leftover") || strings.Contains(log2, "removed an earlier private directory") {
		t.Errorf("the refused daemon touched something:\n%s", log2)
	}

	for _, n := range before {
		if _, err := os.Stat(filepath.Join(d.Config.Threads[0].PacketsDirectory, n)); err != nil {
			t.Errorf("the first daemon's file %s: %v", n, err)
		}
	}
	// Rotation goes on: the file open at the second start is renamed, and
	// newer files follow (every second with FastFlags).
	last := before[len(before)-1]
	d.WaitFor("two packet files newer than those before the second start", time.Minute, func() bool {
		newer := 0
		for _, n := range d.Files(0) {
			if n > last {
				newer++
			}
		}
		return newer >= 2
	})
	if strings.Contains(string(d.Log()), "stenotype exited") {
		t.Errorf("the first daemon's stenotype failed after the second start; log:\n%s", d.LogTail())
	}
	t.Logf("open file at the second start %v; files now %d", hidden, len(d.Files(0)))
	tB := boundary()
	gp := generatedPcap(t)
	n := len(framesOf(t, gp))
	replay(t, pair, 500, n, gp)
	waitCount(t, d, "after "+rfc3339(tB), n, 2*time.Minute)
}

// TestReindexAtStart: a store where one packet file lost its index (an
// index write that failed) and another is still hidden without one
// (stenotype killed before the rename). A daemon started on it re-indexes
// both and serves every packet that was sent.
func TestReindexAtStart(t *testing.T) {
	testenv.RequireTools(t, "tcpreplay")
	pair := netns.NewPair(t)
	d := daemon.Start(t, pair, daemon.Options{})
	gp := generatedPcap(t)
	n := len(framesOf(t, gp))
	// Two replays a file rotation apart, so the packets are in two files.
	replay(t, pair, 500, n, gp)
	waitCount(t, d, everything, n, 2*time.Minute)
	boundary()
	replay(t, pair, 500, n, gp)
	waitCount(t, d, everything, 2*n, 2*time.Minute)
	d.Stop()

	th := d.Config.Threads[0]
	var withPackets []string
	for _, name := range d.Files(0) {
		if info, err := os.Stat(filepath.Join(th.PacketsDirectory, name)); err == nil && info.Size() > 0 {
			withPackets = append(withPackets, name)
		}
	}
	if len(withPackets) < 2 {
		t.Fatalf("packet files with data %q, want two", withPackets)
	}
	unindexed, hidden := withPackets[0], withPackets[len(withPackets)-1]
	for _, name := range []string{unindexed, hidden} {
		if err := os.Remove(filepath.Join(th.IndexDirectory, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Rename(filepath.Join(th.PacketsDirectory, hidden), filepath.Join(th.PacketsDirectory, "."+hidden)); err != nil {
		t.Fatal(err)
	}

	d2 := daemon.Start(t, pair, daemon.Options{ThreadDirs: d.Config.Threads})
	waitCount(t, d2, everything, 2*n, time.Minute)
	for _, want := range []string{"re-indexed packet file without index", "recovered the packet file of an unfinished write"} {
		if !strings.Contains(string(d2.Log()), want) {
			t.Errorf("the log does not say %q; log:\n%s", want, d2.LogTail())
		}
	}
}

// TestStenoqueryConfig: stenoquery --config reads a store written with
// --blocksize_kb=64 in the config's Flags (it loads the config with the
// daemon's loader) and finds every packet sent; told a wrong block size on
// the command line, it cannot read the files and exits non-zero saying so.
func TestStenoqueryConfig(t *testing.T) {
	testenv.RequireTools(t, "tcpreplay")
	pair := netns.NewPair(t)
	d := daemon.Start(t, pair, daemon.Options{Flags: append([]string{"--blocksize_kb=64"}, daemon.FastFlags...)})
	gp := generatedPcap(t)
	n := len(framesOf(t, gp))
	replay(t, pair, 500, n, gp)
	waitCount(t, d, everything, n, 2*time.Minute)
	d.Stop()

	bin := testenv.Binary(t, "stenoquery")
	r := testenv.Run(time.Minute, bin, "--config", d.ConfigPath, "--count", everything)
	if r.Err != nil {
		t.Fatalf("stenoquery --config: %v", r.Err)
	}
	if got := strings.TrimSpace(string(r.Stdout)); got != strconv.Itoa(n) {
		t.Errorf("stenoquery --config --count %q = %s, want %d; stderr:\n%s", everything, got, n, r.Stderr)
	}
	if len(bytes.TrimSpace(r.Stderr)) != 0 {
		t.Errorf("stenoquery --config warned:\n%s", r.Stderr)
	}
	r = testenv.Run(time.Minute, bin, "--config", d.ConfigPath, "--blocksize_kb=1024", "--count", everything)
	if r.Err == nil || !strings.Contains(string(r.Stderr), "could not be read") {
		t.Errorf("stenoquery with the wrong block size: err %v, stderr %q; want a non-zero exit saying files could not be read", r.Err, r.Stderr)
	}
}
