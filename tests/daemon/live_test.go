package daemon_test

import (
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/tests/internal/daemon"
	"github.com/stenographer-ng/stenographer/tests/internal/netns"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// TestLiveQuery: with the daemon's defaults, packets are queryable while
// their file is still being written. The file stays open for the whole
// test (--fileage_sec=3600), so whatever a query returns comes through
// the delta tables: the generated frames (every encapsulation) by key
// and by time alone, byte for byte, then later frames as the chain of
// deltas grows. The reference's reader sees nothing new: no visible
// file appears. Then stenotype is killed at an arbitrary instant: the
// restart's cleanup removes the deltas, recovers the packet file, and
// every packet is served once.
func TestLiveQuery(t *testing.T) {
	testenv.RequireTools(t, "tcpreplay")
	pair := netns.NewPair(t)
	dirs := newThreadDirs(t)
	d := daemon.Start(t, pair, daemon.Options{ThreadDirs: dirs, Flags: []string{"--fileage_sec=3600", "--blocks=16", "--stats_sec=1"}})
	pid := d.Stenotype()

	gp := generatedPcap(t)
	frames := framesOf(t, gp)
	replay(t, pair, 500, len(frames), gp)
	waitCount(t, d, everything, len(frames), 2*time.Minute)
	exact(t, d, everything, frames)
	for _, q := range []string{"udp", "tcp", "icmp", "port 53", "net 10.0.0.0/8"} {
		waitCount(t, d, q, count(t, q, frames), time.Minute)
	}
	noVisibleFiles(t, d)

	// More blocks: the next deltas continue the chain.
	var all [][]byte
	all = append(all, frames...)
	for round := 0; round < 3; round++ {
		more := udpFrames(400+10*round, 5)
		replayFrames(t, pair, more)
		all = append(all, more...)
		waitCount(t, d, everything, len(all), time.Minute)
	}
	exact(t, d, everything, all)
	exact(t, d, "port 7421", udpFrames(421, 1))
	noVisibleFiles(t, d)
	if deltas := deltaTables(d); len(deltas) == 0 {
		t.Errorf("no delta tables in the index directory: %v", d.Hidden(0))
	}

	// A crash at an arbitrary instant.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	old := deltaTables(d)
	d.WaitStenotype(pid, 2*time.Minute)
	d.WaitFor("the recovered packet file to be indexed", 2*time.Minute, func() bool { return len(d.IndexFiles(0)) == 1 })
	for _, name := range old {
		if slices.Contains(deltaTables(d), name) {
			t.Errorf("delta table %s outlived the crash of its stenotype", name)
		}
	}
	exact(t, d, everything, all)
	exact(t, d, "port 7421", udpFrames(421, 1))
}

func noVisibleFiles(t *testing.T, d *daemon.Daemon) {
	t.Helper()
	if f, x := d.Files(0), d.IndexFiles(0); len(f)+len(x) != 0 {
		t.Fatalf("visible files %v %v: the test needs every packet in the open file", f, x)
	}
}

// deltaTables lists thread 0's delta tables.
func deltaTables(d *daemon.Daemon) []string {
	var out []string
	for _, h := range d.Hidden(0) {
		if strings.HasPrefix(h, "idx/.") && strings.Contains(h, ".d") {
			out = append(out, h)
		}
	}
	return out
}
