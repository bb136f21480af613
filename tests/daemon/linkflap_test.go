package daemon_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/tests/internal/daemon"
	"github.com/stenographer-ng/stenographer/tests/internal/netns"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// TestLinkFlap takes the capture interface down and up again under the
// daemon: the outage reaches /metrics as
// stenographer_capture_socket_errors_total (from stenotype's STATS lines),
// the same stenotype goes on capturing by itself, and the frames sent
// before and after the outage are all served.
func TestLinkFlap(t *testing.T) {
	testenv.RequireTools(t, "tcpreplay")
	pair := netns.NewPair(t)
	d := daemon.Start(t, pair, daemon.Options{})
	pid := d.Stenotype()
	gp := generatedPcap(t)
	n := len(framesOf(t, gp))
	replay(t, pair, 500, n, gp)
	waitCount(t, d, everything, n, 2*time.Minute)

	link := func(state string) {
		t.Helper()
		must(t, testenv.Run(testenv.Deadline, "ip", "-n", pair.CaptureNS, "link", "set", "dev", pair.CaptureIf, state))
	}
	link("down")
	socketErrors := func() float64 { return metric(d, "stenographer_capture_socket_errors_total") }
	if !d.Poll(time.Minute, func() bool { return socketErrors() >= 1 }) {
		t.Fatalf("stenographer_capture_socket_errors_total = %v a minute after the link went down; log:\n%s", socketErrors(), d.LogTail())
	}
	link("up")
	d.WaitFor("the link to come back (LOWER_UP)", 30*time.Second, func() bool {
		r := testenv.Run(testenv.Deadline, "ip", "-n", pair.SenderNS, "link", "show", "dev", pair.SenderIf)
		return r.Err == nil && bytes.Contains(r.Stdout, []byte("LOWER_UP"))
	})
	replay(t, pair, 500, n, gp)
	waitCount(t, d, everything, 2*n, 2*time.Minute)
	if now := d.Stenotype(); now != pid {
		t.Errorf("stenotype is pid %d, was %d: it was restarted instead of waiting for the link", now, pid)
	}
}
