package supervisor

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stenographer-ng/stenographer/stenographer/metrics"
	"github.com/stenographer-ng/stenographer/stenographer/store"
)

func TestResolveIdentity(t *testing.T) {
	daemon, err := user.Lookup("daemon")
	if err != nil {
		t.Skip("no user daemon on this system")
	}
	du, _ := strconv.Atoi(daemon.Uid)
	dg, _ := strconv.Atoi(daemon.Gid)
	nobody, _ := user.Lookup("nobody")
	nu, _ := strconv.Atoi(nobody.Uid)
	ng := nu
	if g, err := user.LookupGroup("nogroup"); err == nil {
		ng, _ = strconv.Atoi(g.Gid)
	}
	for _, tc := range []struct {
		name       string
		uid, gid   string
		euid, egid int
		want       identity
		err        string
	}{
		{"not root, no flags: ourselves", "", "", 1000, 1001, identity{1000, 1001}, ""},
		{"root, no flags: nobody/nogroup", "", "", 0, 0, identity{nu, ng}, ""},
		{"user name with its primary group", "daemon", "", 0, 0, identity{du, dg}, ""},
		{"user and group numbers", "4321", "8765", 0, 0, identity{4321, 8765}, ""},
		{"number of a known user takes its group", daemon.Uid, "", 0, 0, identity{du, dg}, ""},
		{"group only keeps the uid", "", "daemon", 0, 0, identity{0, dg}, ""},
		{"unknown user", "no-such-user-x", "", 0, 0, identity{}, "supervisor: --uid no-such-user-x: user: unknown user no-such-user-x"},
		{"unknown group", "", "no-such-group-x", 0, 0, identity{}, "supervisor: --gid no-such-group-x: group: unknown group no-such-group-x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolveIdentity(tc.uid, tc.gid, tc.euid, tc.egid)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("err = %v, want %s", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestFlagValue(t *testing.T) {
	for _, tc := range []struct {
		flags []string
		want  string
	}{
		{nil, ""},
		{[]string{"--uid=steno"}, "steno"},
		{[]string{"--uid", "steno"}, "steno"},
		{[]string{"--uid=a", "--uid=b"}, "b"},
		{[]string{"--uidx=a"}, ""},
		{[]string{"--uid"}, ""},
	} {
		if got := flagValue(tc.flags, "uid"); got != tc.want {
			t.Errorf("flagValue(%q) = %q, want %q", tc.flags, got, tc.want)
		}
	}
}

func TestParseStats(t *testing.T) {
	for _, tc := range []struct {
		line string
		want stats
	}{
		{"2026-01-01T00:00:00.000Z I main.cc:86] STATS thread=1 packets=10 bytes=2000 drops=3 blocks=1 files=1 mbps=0.01",
			stats{1, metrics.StenotypeStats{Packets: 10, Bytes: 2000, Drops: 3}}},
		{"2026-01-01T00:00:00.000Z I main.cc:86] STATS thread=2 packets=10 bytes=2000 drops=3 blocks=1 files=1 mbps=0.01 blocks_dropped=4 socket_errors=5",
			stats{2, metrics.StenotypeStats{Packets: 10, Bytes: 2000, Drops: 3, BlocksDropped: 4, SocketErrors: 5}}},
	} {
		if got, ok := parseStats(tc.line); !ok || got != tc.want {
			t.Errorf("parseStats(%q) = %+v, %v; want %+v", tc.line, got, ok, tc.want)
		}
	}
	if _, ok := parseStats("I main.cc] started"); ok {
		t.Error("parseStats accepted a non-STATS line")
	}
}

// TestStatsMetrics feeds STATS lines as stenotype prints them through the
// output path: write errors and socket errors reach /metrics per thread,
// as deltas of the lines' totals, and a restart's smaller totals count
// from zero.
func TestStatsMetrics(t *testing.T) {
	out := newRunOutput(slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	const prefix = "2026-01-01T00:00:00.000Z I main.cc:86] STATS thread=7 packets=100 bytes=6000 drops=0 blocks=3 files=1 mbps=0.01 "
	base := map[string]float64{}
	for _, n := range []string{"stenographer_dropped_blocks_total", "stenographer_capture_socket_errors_total"} {
		base[n] = gatherCounter(t, n, "7")
	}
	out.line("stderr", prefix+"blocks_dropped=2 socket_errors=1")
	out.line("stderr", prefix+"blocks_dropped=5 socket_errors=1")
	metrics.StenotypeStarted()
	out.line("stderr", prefix+"blocks_dropped=1 socket_errors=2")
	for n, want := range map[string]float64{"stenographer_dropped_blocks_total": 6, "stenographer_capture_socket_errors_total": 3} {
		if got := gatherCounter(t, n, "7") - base[n]; got != want {
			t.Errorf("%s{thread=\"7\"} grew by %v, want %v", n, got, want)
		}
	}
}

func TestStenotypeLevel(t *testing.T) {
	for _, tc := range []struct {
		in    string
		level slog.Level
		text  string
	}{
		{"2026-12-01T08:33:36.036Z I ring.cc:79] ring on lo", slog.LevelInfo, "ring.cc:79] ring on lo"},
		{"2026-12-01T08:33:36.036Z E main.cc:9] thread 0: disk full", slog.LevelWarn, "main.cc:9] thread 0: disk full"},
		{"2026-12-01T08:33:36.036Z V x.cc:1] detail", slog.LevelDebug, "x.cc:1] detail"},
		{"stenotype: unknown flag --bogus", slog.LevelInfo, "stenotype: unknown flag --bogus"},
	} {
		level, text := stenotypeLevel(tc.in)
		if level != tc.level || text != tc.text {
			t.Errorf("stenotypeLevel(%q) = %v, %q; want %v, %q", tc.in, level, text, tc.level, tc.text)
		}
	}
}

func TestLineWriter(t *testing.T) {
	var lines []string
	w := &lineWriter{onLine: func(l string) { lines = append(lines, l) }}
	for _, chunk := range []string{"one\ntw", "o\r\n", "\nthr", "ee"} {
		w.Write([]byte(chunk))
	}
	w.flush()
	if want := []string{"one", "two", "", "three"}; !reflect.DeepEqual(lines, want) {
		t.Errorf("lines = %q, want %q", lines, want)
	}
	lines = nil
	w.Write([]byte(strings.Repeat("x", 2*maxLine) + "\n"))
	if len(lines) != 1 || len(lines[0]) != maxLine {
		t.Errorf("a long line gave %d lines, first %d bytes; want 1 of %d", len(lines), len(lines[0]), maxLine)
	}
}

// A stenotype that exits at once is restarted with a growing delay; the
// log says why (status and last line); each start is preceded by the
// leftover cleanup; the arguments are Flags then --threads, --dir, --iface.
func TestRestartWithBackoff(t *testing.T) {
	_, th := threads(t, 1)
	argsLog := filepath.Join(t.TempDir(), "args")
	path := script(t, `echo "$*" >> `+argsLog+`
: > "$dir/PKT0/.12345"
echo "stenotype: cannot open ring $$" >&2
exit 3`)
	rec := newRecorder()
	cfg := fast(path, th, rec)
	cfg.Flags = []string{"--blocks=16", "-v"}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	waitFor(t, "five starts", rec, func() bool { return s.Starts() >= 5 })
	if err := stop(t, s); err != nil {
		t.Error(err)
	}
	data, _ := os.ReadFile(argsLog)
	first := strings.SplitN(string(data), "\n", 2)[0]
	if want := strings.Join(LiveDefaults, " ") + " --blocks=16 -v --threads=1 --dir=" + s.Dir() + " --iface=lo"; first != want {
		t.Errorf("stenotype args %q, want %q", first, want)
	}
	exits := rec.find("stenotype exited")
	if len(exits) < 4 {
		t.Fatalf("%d exits logged; log:\n%s", len(exits), rec.dump())
	}
	var delays []string
	for _, e := range exits[:4] {
		if e.Attrs["status"] != "exit status 3" || !strings.HasPrefix(e.Attrs["last_line"], "stenotype: cannot open ring ") {
			t.Errorf("exit logged as %v; want status 3 and the last stderr line", e)
		}
		delays = append(delays, e.Attrs["restart_in"])
	}
	if want := []string{"20ms", "40ms", "80ms", "80ms"}; !reflect.DeepEqual(delays, want) {
		t.Errorf("restart delays %q, want %q", delays, want)
	}
	if n := len(rec.find("deleted leftover file")); n < 4 {
		t.Errorf("leftover .12345 deleted %d times, want one per restart (>= 4)", n)
	}
}

// A StenotypePath that is missing or not executable is a logged error
// and a backoff, never a crash or a tight loop.
func TestBadStenotypePath(t *testing.T) {
	notExec := filepath.Join(t.TempDir(), "stenotype")
	writeFiles(t, filepath.Dir(notExec), "stenotype")
	for _, tc := range []struct{ name, path, err string }{
		{"missing", "/nonexistent/stenotype", "no such file or directory"},
		{"not executable", notExec, "permission denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, th := threads(t, 1)
			rec := newRecorder()
			s, err := New(fast(tc.path, th, rec))
			if err != nil {
				t.Fatal(err)
			}
			s.Start()
			waitFor(t, "three failed starts", rec, func() bool { return len(rec.find("cannot start stenotype")) >= 3 })
			if err := stop(t, s); err != nil {
				t.Error(err)
			}
			for i, r := range rec.find("cannot start stenotype")[:3] {
				if r.Level != slog.LevelError || r.Attrs["path"] != tc.path || !strings.Contains(r.Attrs["err"], tc.err) {
					t.Errorf("logged %v, want an error naming %s and %q", r, tc.path, tc.err)
				}
				if want := []string{"20ms", "40ms", "80ms"}[i]; r.Attrs["restart_in"] != want {
					t.Errorf("attempt %d: restart_in %s, want %s", i, r.Attrs["restart_in"], want)
				}
			}
			if s.Starts() != 0 {
				t.Errorf("Starts = %d", s.Starts())
			}
		})
	}
}

// A stenotype that makes no files is stopped (SIGKILL when it ignores
// SIGTERM) and restarted. Whether a thread is idle or stuck is decided by
// the tracker, tested on a fake clock in TestStaleTracker; here only the
// stale cases run, because their outcome does not depend on how fast the
// fake stenotype's loop runs.
func TestStale(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
	}{
		{"silent and ignoring SIGTERM", `trap '' TERM
echo "capturing" >&2
while :; do sleep 0.05; done`},
		{"packets arrive but no file", `n=0
while :; do n=$((n+1)); echo "STATS thread=0 packets=$n bytes=$((n*100)) drops=0 blocks=0 files=0 mbps=0.00" >&2; sleep 0.05; done`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, th := threads(t, 1)
			rec := newRecorder()
			cfg := fast(script(t, tc.body), th, rec)
			cfg.StaleTimeout = 300 * time.Millisecond
			cfg.StopGrace = 300 * time.Millisecond
			s, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			s.Start()
			waitFor(t, "a restart after a stale kill", rec, func() bool { return s.Starts() >= 2 })
			r := rec.find("stenotype was stale and was stopped")
			if len(r) == 0 || !strings.HasPrefix(r[0].Attrs["why"], "thread 0: no new file in "+th[0].PacketsDirectory+" for 300ms") {
				t.Errorf("stale stop logged as %v; log:\n%s", r, rec.dump())
			}
			if strings.Contains(tc.name, "ignoring") && (len(rec.find("stenotype did not exit after SIGTERM; killing it")) == 0 ||
				r[0].Attrs["status"] != "killed by signal killed") {
				t.Errorf("no SIGKILL after the grace period; log:\n%s", rec.dump())
			}
			if err := stop(t, s); err != nil && !strings.Contains(tc.name, "ignoring") {
				t.Error(err)
			}
		})
	}
	t.Cleanup(func() {
		if v := gatherCounter(t, "stenographer_captured_packets_total", "0"); v <= 0 {
			t.Errorf("STATS lines did not reach the metrics: captured packets %v", v)
		}
	})
}

// TestStaleTracker drives the stale check step by step on a fake clock:
// each step happens (STATS lines, file growth) and then the check runs one
// step later. A step is a third of the timeout, so the verdict after many
// steps depends only on what happened, never on scheduling.
func TestStaleTracker(t *testing.T) {
	const timeout = 3 * time.Minute
	const step = timeout / 3
	statsLine := func(packets int) string {
		return fmt.Sprintf("STATS thread=0 packets=%d bytes=%d drops=0 blocks=0 files=0 mbps=0.00", packets, packets*100)
	}
	for _, tc := range []struct {
		name  string
		act   func(t *testing.T, out *runOutput, pkt string, i int) // step i's activity
		stale bool
	}{
		{"idle link: STATS with no packets", func(t *testing.T, out *runOutput, _ string, _ int) { out.line("stderr", statsLine(0)) }, false},
		{"growing file", func(t *testing.T, _ *runOutput, pkt string, i int) {
			writeSized(t, filepath.Join(pkt, ".1700000000000000"), i+1)
		}, false},
		{"a new file every step", func(t *testing.T, _ *runOutput, pkt string, i int) {
			writeSized(t, filepath.Join(pkt, strconv.Itoa(1700000000000000+i)), 1)
		}, false},
		{"packets arrive but no file", func(t *testing.T, out *runOutput, _ string, i int) { out.line("stderr", statsLine(i+1)) }, true},
		{"silent: no STATS, no file", func(*testing.T, *runOutput, string, int) {}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, th := threads(t, 1)
			if err := os.MkdirAll(th[0].PacketsDirectory, 0o755); err != nil {
				t.Fatal(err)
			}
			clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			out := newRunOutput(slog.New(slog.DiscardHandler), nil)
			out.now = func() time.Time { return clock }
			tr := newStaleTracker(th, timeout, out, slog.New(slog.DiscardHandler), clock)
			why := ""
			for i := 0; i < 12 && why == ""; i++ {
				clock = clock.Add(step / 2)
				tc.act(t, out, th[0].PacketsDirectory, i)
				clock = clock.Add(step / 2)
				why = tr.check(clock)
			}
			if stale := why != ""; stale != tc.stale {
				t.Errorf("stale = %v (%q) after 12 steps of %v with a %v timeout, want %v", stale, why, step, timeout, tc.stale)
			}
		})
	}
}

// writeSized makes path n bytes long.
func writeSized(t *testing.T, path string, n int) {
	t.Helper()
	if err := os.WriteFile(path, make([]byte, n), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Stop sends SIGTERM and waits; a stenotype that ignores it is killed
// after the grace period and Stop says so.
func TestStop(t *testing.T) {
	for _, tc := range []struct {
		name, body, err string
	}{
		{"flushes and exits", `trap 'echo flushed >&2; exit 0' TERM
echo started >&2
while :; do sleep 0.05; done`, ""},
		{"ignores SIGTERM", `trap '' TERM
echo started >&2
while :; do sleep 0.05; done`, "did not exit within 200ms of SIGTERM and was killed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, th := threads(t, 1)
			rec := newRecorder()
			cfg := fast(script(t, tc.body), th, rec)
			cfg.StopGrace = 200 * time.Millisecond
			s, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			s.Start()
			waitFor(t, "stenotype's first line", rec, func() bool { return len(rec.find("stenotype")) > 0 })
			pid := s.Pid()
			err = stop(t, s)
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("Stop = %v, want %q", err, tc.err)
			}
			if s.Pid() != 0 || processAlive(pid) {
				t.Errorf("stenotype (pid %d) still runs after Stop", pid)
			}
			if len(rec.find("stenotype exited")) != 0 {
				t.Errorf("a stop was logged as an exit to restart from; log:\n%s", rec.dump())
			}
			if tc.err == "" {
				lines := rec.find("stenotype")
				if last := lines[len(lines)-1]; last.Attrs["stderr"] != "flushed" {
					t.Errorf("stenotype's last output %v, want its flush message", last)
				}
			}
			if _, err := os.Stat(s.Dir()); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("private dir left after Stop: %v", err)
			}
		})
	}
}

func processAlive(pid int) bool {
	if pid == 0 {
		return false
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(data))
	return len(f) > 2 && f[2] != "Z"
}

func gatherCounter(t *testing.T, name, thread string) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "thread" && l.GetValue() == thread {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// A stenotype left running by a stenographer that died is stopped, and
// its private directory removed, before the first start; one of another
// instance (linking elsewhere) is left alone.
func TestReapOrphans(t *testing.T) {
	_, th := threads(t, 1)
	_, otherTh := threads(t, 1)
	for _, d := range []string{th[0].PacketsDirectory, th[0].IndexDirectory, otherTh[0].PacketsDirectory, otherTh[0].IndexDirectory} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	orphan := func(threads []store.Thread) (string, *exec.Cmd) {
		d, err := privateDir(threads)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		// A shell blocked in its read builtin never forks: a forked child
		// would carry the same command line (--dir=d) until it execs, and
		// be stopped too.
		cmd := exec.Command("sh", "-c", "read x", "stenotype", "--dir="+d)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); stdin.Close() })
		return d, cmd
	}
	oldDir, old := orphan(th)
	otherDir, other := orphan(otherTh)
	rec := newRecorder()
	cfg := fast(script(t, "exec sleep 1000"), th, rec)
	cfg.Flags = []string{"--uid=0", "--gid=0"} // the directories made above are root's
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	waitFor(t, "the start", rec, func() bool { return s.Starts() == 1 })
	if alive(old.Process.Pid) {
		t.Errorf("the orphan (pid %d) of our directories still runs", old.Process.Pid)
	}
	if _, err := os.Stat(oldDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the earlier private directory %s is still there: %v", oldDir, err)
	}
	if !alive(other.Process.Pid) {
		t.Errorf("the stenotype of another instance (pid %d) was stopped", other.Process.Pid)
	}
	if _, err := os.Stat(otherDir); err != nil {
		t.Errorf("another instance's private directory was removed: %v", err)
	}
	if r := rec.find("stopping a stenotype left running by an earlier stenographer"); len(r) != 1 || r[0].Attrs["pid"] != strconv.Itoa(old.Process.Pid) {
		t.Errorf("logged %v", r)
	}
	if err := stop(t, s); err != nil {
		t.Error(err)
	}
}
