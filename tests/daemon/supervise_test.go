package daemon_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/tests/internal/daemon"
	"github.com/stenographer-ng/stenographer/tests/internal/netns"
	"github.com/stenographer-ng/stenographer/tests/internal/pcapfile"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// Names of planted leftovers: microsecond timestamps of 2001, older than
// anything stenotype writes now.
const (
	plantedPacket = "1000000000000000" // packet file without index
	plantedIndex  = "1000000000000001" // index without packet file
	plantedHidden = ".1000000000000002"
)

// TestStenotypeKilled kills stenotype with SIGKILL while packets arrive:
// the daemon restarts it (a new pid), first deleting the leftovers (the
// killed run's hidden files, and planted unpaired and hidden files); what
// was captured before is still served in full, and capture resumes.
func TestStenotypeKilled(t *testing.T) {
	testenv.RequireTools(t, "tcpreplay")
	pair := netns.NewPair(t)
	d := daemon.Start(t, pair, daemon.Options{})
	gp := generatedPcap(t)
	frames := framesOf(t, gp)
	n := len(frames)

	// A: captured completely before the kill.
	replay(t, pair, 500, n, gp)
	waitCount(t, d, everything, n, 2*time.Minute)
	tA := boundary()

	// C: a slow stream during which stenotype is killed.
	c := startSender(t, pair, "tcpreplay", "-i", pair.SenderIf, "--pps=200", "--loop=100000", gp)
	if !d.Poll(time.Minute, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r, err := d.Query(ctx, "after "+rfc3339(tA), map[string]string{"Steno-Limit-Packets": "1"})
		return err == nil && r.Status == http.StatusOK && len(r.Body) > 24
	}) {
		t.Fatalf("the second replay's packets never became queryable (tcpreplay: %s)", c.output())
	}

	th := d.Config.Threads[0]
	planted := []string{
		filepath.Join(th.PacketsDirectory, plantedPacket), filepath.Join(th.IndexDirectory, plantedIndex),
		filepath.Join(th.PacketsDirectory, plantedHidden), filepath.Join(th.IndexDirectory, plantedHidden),
	}
	for _, p := range planted {
		if err := os.WriteFile(p, []byte("leftover"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var leftovers []string // the killed run's own hidden files
	for _, h := range d.Hidden(0) {
		dir := th.PacketsDirectory
		if strings.HasPrefix(h, "idx/") {
			dir = th.IndexDirectory
		}
		if name := filepath.Base(h); name != plantedHidden {
			leftovers = append(leftovers, filepath.Join(dir, name))
		}
	}
	if len(leftovers) == 0 {
		t.Errorf("no hidden file of the running stenotype found before the kill (files %v)", d.Files(0))
	}

	pid := d.Stenotype()
	if pid == 0 {
		t.Fatalf("no stenotype child of the daemon (pid %d)", d.PID())
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	newPID := d.WaitStenotype(pid, time.Minute)
	c.stop()
	t.Logf("stenotype pid %d killed, restarted as %d; leftovers %v", pid, newPID, leftovers)

	for _, p := range append(planted, leftovers...) {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("leftover %s still exists after the restart", p)
		}
	}
	if !strings.Contains(string(d.Log()), "killed by signal") {
		t.Errorf("the log does not say how stenotype ended (want \"killed by signal\")")
	}

	// Everything of A is still served.
	body := d.MustQuery("before "+rfc3339(tA), nil)
	if got := len(parsePCAP(t, "before the kill", body).Packets); got != n {
		t.Errorf("before %s (the first replay): %d packets, want %d", rfc3339(tA), got, n)
	}

	// B: capture resumes under the new stenotype.
	tB := boundary()
	replay(t, pair, 500, n, gp)
	waitCount(t, d, "after "+rfc3339(tB), n, 2*time.Minute)
	if p := d.Stenotype(); p != newPID {
		t.Errorf("stenotype pid changed again (%d → %d) without a kill", newPID, p)
	}
	if m, err := d.Metrics(); err != nil {
		t.Error(err)
	} else if v := m["stenographer_stenotype_restarts_total"]; v != 2 {
		t.Errorf("stenographer_stenotype_restarts_total = %v, want 2 (start and one restart)", v)
	}
}

// TestStaleStenotype: a stenotype that opens no new file, writes nothing
// and reports no STATS for --stale_timeout is stopped and started again.
func TestStaleStenotype(t *testing.T) {
	t.Parallel()
	pair := netns.NewPair(t)
	d := daemon.Start(t, pair, daemon.Options{
		Flags:         []string{"--fileage_sec=3600", "--stats_sec=3600", "--blockage_sec=1", "--blocks=16", "--uid=0", "--gid=0"},
		StaleTimeout:  3 * time.Second,
		NoWaitCapture: true,
	})
	first := d.WaitStenotype(0, time.Minute)
	second := d.WaitStenotype(first, 3*time.Minute)
	var staleLine string
	for _, l := range strings.Split(string(d.Log()), "\n") {
		if strings.Contains(l, "stale") {
			staleLine = l
			break
		}
	}
	if staleLine == "" {
		t.Errorf("stenotype %d was replaced by %d but the log does not say it was stale", first, second)
	}
	if daemon.ProcessAlive(first) {
		t.Errorf("the stale stenotype %d still runs", first)
	}
	t.Logf("stale stenotype %d replaced by %d: %s", first, second, staleLine)
}

// TestBadStenotype: a StenotypePath that does not exist, or a program that
// exits at once, does not crash the daemon or make it spin: it logs why,
// retries after a delay that doubles from 1s (the delays logged with the
// first three failures are 1s, 2s, 4s), and HTTPS keeps serving.
func TestBadStenotype(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, path string
		failure    string // the message of each failed attempt, with restart_in
		why        string // in the log
	}{
		{"missing", "/nonexistent/stenotype", `cannot start stenotype`, "no such file or directory"},
		{"exits at once", "/bin/false", `stenotype exited`, "exit status 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pair := netns.NewPair(t)
			d := daemon.Start(t, pair, daemon.Options{StenotypePath: tc.path, NoWaitCapture: true})
			failRE := regexp.MustCompile(`msg="` + tc.failure + `".* restart_in=(\S+)`)
			var delays []string
			d.WaitFor("three failed starts", 2*time.Minute, func() bool {
				delays = delays[:0]
				for _, m := range failRE.FindAllStringSubmatch(string(d.Log()), -1) {
					delays = append(delays, m[1])
				}
				return len(delays) >= 3 || d.Exited()
			})
			if d.Exited() {
				t.Fatalf("stenographer exited (%v) with StenotypePath %s", d.ExitErr(), tc.path)
			}
			if want := []string{"1s", "2s", "4s"}; !slices.Equal(delays[:3], want) {
				t.Errorf("restart delays %q, want %q (doubling from 1s)", delays[:3], want)
			}
			log := string(d.Log())
			if !strings.Contains(log, tc.path) || !strings.Contains(strings.ToLower(log), tc.why) {
				t.Errorf("the log does not name %s and %q", tc.path, tc.why)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if code, _, err := d.Get(ctx, "/debug/stats"); err != nil || code != http.StatusOK {
				t.Errorf("/debug/stats while stenotype cannot run: %d %v", code, err)
			}
			r, err := d.Query(ctx, everything, nil)
			if err != nil || r.Status != http.StatusOK {
				t.Errorf("query while stenotype cannot run: %v %v", err, r)
			} else if f, err := pcapfile.Parse(r.Body); err != nil || len(f.Packets) != 0 {
				t.Errorf("query while stenotype cannot run: want an empty pcap, got %d bytes (%v)", len(r.Body), err)
			}
			// The analyst is told that capture is down, by stenoread and
			// in /debug/stats and /metrics.
			rr := d.Stenoread(time.Minute, everything, "-n")
			if !regexp.MustCompile(`stenoread: warning: capture is down since \d{4}-\d\d-\d\dT`).Match(rr.Stderr) {
				t.Errorf("stenoread while stenotype cannot run: %v, stderr %q; want the capture-down warning", rr.Err, rr.Stderr)
			}
			if _, body, err := d.Get(ctx, "/debug/stats"); err != nil || !regexp.MustCompile(`(?m)^capture_up\t0$`).Match(body) {
				t.Errorf("/debug/stats while stenotype cannot run: %v\n%s", err, body)
			}
			if m, err := d.Metrics(); err != nil || m[`stenographer_capture_up{thread="0"}`] != 0 || m[`stenographer_capture_down_since_seconds{thread="0"}`] <= 0 {
				t.Errorf("/metrics while stenotype cannot run: capture_up %v, down_since %v (%v)",
					m[`stenographer_capture_up{thread="0"}`], m[`stenographer_capture_down_since_seconds{thread="0"}`], err)
			}
		})
	}
}

// TestDefaultPrivilegeDrop runs the daemon as root with neither --uid nor
// --gid in Flags, so stenotype drops to nobody/nogroup, and with thread
// directories that do not exist yet: the daemon creates them for that
// user, and capture and queries work.
func TestDefaultPrivilegeDrop(t *testing.T) {
	testenv.RequireTools(t, "tcpreplay")
	base := testenv.DiskTempDir(t)
	th := daemon.Thread{PacketsDirectory: filepath.Join(base, "new", "pkt"), IndexDirectory: filepath.Join(base, "new", "idx")}
	var flags []string
	for _, f := range daemon.FastFlags {
		if !strings.HasPrefix(f, "--uid") && !strings.HasPrefix(f, "--gid") {
			flags = append(flags, f)
		}
	}
	pair := netns.NewPair(t)
	d := daemon.Start(t, pair, daemon.Options{ThreadDirs: []daemon.Thread{th}, Flags: flags})
	gp := generatedPcap(t)
	frames := framesOf(t, gp)
	replay(t, pair, 500, len(frames), gp)
	waitCount(t, d, everything, len(frames), 2*time.Minute)
	uid, _, err := testenv.NobodyIDs()
	if err != nil {
		t.Fatal(err)
	}
	pid := d.Stenotype()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	got := "?"
	if m := regexp.MustCompile(`(?m)^Uid:\s+(\d+)`).FindSubmatch(status); m != nil {
		got = string(m[1])
	}
	if got != strconv.Itoa(uid) {
		t.Errorf("stenotype (pid %d) runs as uid %s, want nobody (%d)", pid, got, uid)
	}
}
