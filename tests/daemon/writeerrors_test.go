package daemon_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/tests/internal/daemon"
	"github.com/stenographer-ng/stenographer/tests/internal/netns"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// TestWriteErrorsInMetrics fills the packet disk with a file that is not
// the daemon's to delete: stenotype's writes fail with ENOSPC, it drops
// those blocks and goes on (same process), and the drops reach /metrics as
// stenographer_dropped_blocks_total through its STATS lines.
func TestWriteErrorsInMetrics(t *testing.T) {
	testenv.RequireTools(t, "tcpreplay")
	mnt := smallDisk(t, 32)
	// Only the packets on the small disk: the indexes still get written,
	// so every file the run leaves has its index.
	th := daemon.Thread{PacketsDirectory: filepath.Join(mnt, "pkt"), IndexDirectory: filepath.Join(testenv.DiskTempDir(t), "idx")}
	for _, p := range []string{th.PacketsDirectory, th.IndexDirectory} {
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pair := netns.NewPair(t)
	d := daemon.Start(t, pair, daemon.Options{ThreadDirs: []daemon.Thread{th}})
	pid := d.Stenotype()

	// Full to the last 4 KiB block: stenotype writes sparse blocks only up
	// to their used bytes, so a disk left with less than a megabyte free
	// would still take many of them.
	testenv.FillDisk(t, mnt, 0)

	sender := startSender(t, pair, "tcpreplay", "-i", pair.SenderIf, "--pps=500", "--loop=100000", generatedPcap(t))
	dropped := func() float64 { return metric(d, "stenographer_dropped_blocks_total") }
	if !d.Poll(2*time.Minute, func() bool { return dropped() >= 1 }) {
		t.Fatalf("stenographer_dropped_blocks_total = %v two minutes into capturing onto a full disk (tcpreplay: %s); log:\n%s",
			dropped(), testenv.Tail([]byte(sender.output()), 300), d.LogTail())
	}
	if now := d.Stenotype(); now != pid {
		t.Errorf("stenotype is pid %d, was %d: a full disk restarted it", now, pid)
	}
}
