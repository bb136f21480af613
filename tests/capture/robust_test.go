package capture_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/tests/internal/netns"
	"github.com/stenographer-ng/stenographer/tests/internal/pcapfile"
	"github.com/stenographer-ng/stenographer/tests/internal/steno"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// Robustness of live capture: what happens around the packets rather than
// to them (start-up, the link going away, a full disk, a vanished log
// reader, --count across threads), and --version.

// captureArgs are the flags of every capture here: a small ring, blocks
// retired and STATS printed every second, seccomp killing on a stray call.
func captureArgs(iface, dir string, threads int, extra ...string) []string {
	return append([]string{"--iface=" + iface, "--dir=" + dir, "--threads=" + strconv.Itoa(threads),
		"--blocks=64", "--blockage_sec=1", "--stats_sec=1", "--seccomp=kill"}, extra...)
}

// startCapture starts stenotype in pair's capture namespace and waits for
// the first STATS line of every thread (its rings are set up and capturing).
func startCapture(t *testing.T, pair *netns.Pair, dir string, threads int, extra ...string) *proc {
	t.Helper()
	st := startProc(t, "stenotype", pair.Capture(testenv.Stenotype(t), captureArgs(pair.CaptureIf, dir, threads, extra...)...))
	waitFor(t, "stenotype's first STATS line of every thread", st, 30*time.Second, func() bool {
		return len(steno.LastStats(st.stderr.Bytes())) >= threads
	})
	return st
}

// liveSetup checks the prerequisites and returns the generated live pcap,
// its frames and a fresh veth pair.
func liveSetup(t *testing.T) (string, []pcapfile.Packet, *netns.Pair) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "tcpreplay", "ip")
	path := generatedLivePcap(t)
	f, err := pcapfile.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, f.Packets, netns.NewPair(t)
}

// replay sends the pcap once from the sender end and requires every frame
// to go out.
func replay(t *testing.T, pair *netns.Pair, pcap string, pps, frames int) {
	t.Helper()
	r := pair.RunSender(5*time.Minute, "tcpreplay", "-i", pair.SenderIf, "--pps="+strconv.Itoa(pps), pcap)
	if r.Err != nil {
		t.Fatalf("tcpreplay: %v", r.Err)
	}
	if sent := tcpreplayCount(t, r.Stdout, "Successful packets"); sent != frames {
		t.Fatalf("tcpreplay sent %d of %d frames:\n%s", sent, frames, r.Stdout)
	}
}

func linkSet(t *testing.T, ns, ifc, state string) {
	t.Helper()
	if r := testenv.Run(testenv.Deadline, "ip", "-n", ns, "link", "set", "dev", ifc, state); r.Err != nil {
		t.Fatal(r.Err)
	}
}

// cpuSeconds is the user+system CPU time pid has used, from /proc/<pid>/stat.
func cpuSeconds(t *testing.T, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The command name (field 2) may hold spaces; fields count from its ")".
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("/proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return float64(utime+stime) / float64(clockTicks(t))
}

func clockTicks(t *testing.T) int {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if n, perr := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && perr == nil && n > 0 {
		return n
	}
	t.Logf("getconf CLK_TCK failed (%v); assuming 100", err)
	return 100
}

// TestLiveLinkFlap takes the capture interface down for a few seconds
// between two replays, with one thread and with two (fanout): while it is
// down stenotype waits quietly (its CPU time over the outage is measured
// from /proc), each thread logs the error once and counts it in its STATS
// line; once the link is up again it captures by itself, and the files
// hold both replays (in order, with one thread).
func TestLiveLinkFlap(t *testing.T) {
	for _, threads := range []int{1, 2} {
		t.Run(fmt.Sprintf("threads=%d", threads), func(t *testing.T) { linkFlap(t, threads) })
	}
}

func linkFlap(t *testing.T, threads int) {
	pcap, sent, pair := liveSetup(t)
	dir := testenv.OutputDir(t, threads)
	st := startCapture(t, pair, dir, threads)
	pid := st.cmd.Process.Pid // `ip netns exec` execs stenotype in place
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err != nil || strings.TrimSpace(string(comm)) != "stenotype" {
		t.Fatalf("pid %d is %q (%v), not stenotype", pid, comm, err)
	}
	// stats sums a field over the threads' last STATS lines.
	stats := func(field func(steno.Stats) uint64, min uint64) bool {
		var sum uint64
		last := steno.LastStats(st.stderr.Bytes())
		for i := 0; i < threads; i++ {
			sum += field(last[i])
		}
		return sum >= min
	}
	packets := func(s steno.Stats) uint64 { return s.Packets }

	replay(t, pair, pcap, 500, len(sent))
	waitFor(t, "the first replay in STATS", st, 30*time.Second, func() bool { return stats(packets, uint64(len(sent))) })

	linkSet(t, pair.CaptureNS, pair.CaptureIf, "down")
	const outage = 4 * time.Second
	cpu0, wall0 := cpuSeconds(t, pid), time.Now()
	time.Sleep(outage) // the measurement window, not a wait for a condition
	cpu, wall := cpuSeconds(t, pid)-cpu0, time.Since(wall0).Seconds()
	t.Logf("link down: stenotype used %.2f CPU s in %.2f s", cpu, wall)
	if cpu > 0.25*wall {
		t.Errorf("stenotype used %.2f CPU s while the link was down for %.2f s: it spins instead of waiting", cpu, wall)
	}
	waitFor(t, "a socket error in every thread's STATS", st, 30*time.Second, func() bool {
		last := steno.LastStats(st.stderr.Bytes())
		for i := 0; i < threads; i++ {
			if last[i].SocketErrors < 1 {
				return false
			}
		}
		return true
	})

	linkSet(t, pair.CaptureNS, pair.CaptureIf, "up")
	waitFor(t, "the link to come back (LOWER_UP)", st, 30*time.Second, func() bool {
		r := testenv.Run(testenv.Deadline, "ip", "-n", pair.SenderNS, "link", "show", "dev", pair.SenderIf)
		return r.Err == nil && bytes.Contains(r.Stdout, []byte("LOWER_UP"))
	})
	replay(t, pair, pcap, 500, len(sent))
	waitFor(t, "the second replay in STATS", st, 30*time.Second, func() bool { return stats(packets, uint64(2*len(sent))) })
	if err := st.stop(t, syscall.SIGTERM, 60*time.Second); err != nil {
		t.Errorf("stenotype exit after SIGTERM: %v; stderr:\n%s", err, testenv.Tail(st.stderr.Bytes(), 3000))
	}
	stderr := st.stderr.Bytes()
	if n := bytes.Count(stderr, []byte("Network is down")); n != threads {
		t.Errorf("%d log lines about the link going down, want one per thread (%d); stderr:\n%s", n, threads, testenv.Tail(stderr, 3000))
	}
	if n := bytes.Count(stderr, []byte("capture resumed")); n < 1 {
		t.Errorf("no 'capture resumed' line; stderr:\n%s", testenv.Tail(stderr, 3000))
	}
	t.Logf("final STATS: %+v", steno.LastStats(stderr))
	want := append(append([]pcapfile.Packet{}, sent...), sent...)
	var all [][]byte
	for i := 0; i < threads; i++ {
		s := steno.ReadThread(t, dir, i, blocksizeKB)
		if threads == 1 {
			checkSequence(t, "both replays, around the outage", want, s.Packets)
		}
		checkSubsequence(t, fmt.Sprintf("thread %d", i), want, s.Packets)
		all = append(all, frames(s.Packets)...)
	}
	if a, b := equalMultiset(frames(want), all); a != 0 || b != 0 {
		t.Errorf("threads together: %d replayed frames missing, %d stored frames not replayed", a, b)
	}
}

// TestLiveInterfaceDeleted deletes the capture interface: no packet can
// come again (a new socket would need the privileges stenotype dropped),
// so stenotype finishes its files and exits 1 by itself, for the
// supervisor to restart it.
func TestLiveInterfaceDeleted(t *testing.T) {
	pcap, frames, pair := liveSetup(t)
	dir := testenv.OutputDir(t, 1)
	st := startCapture(t, pair, dir, 1)
	replay(t, pair, pcap, 500, len(frames))
	waitFor(t, "the replay in STATS", st, 30*time.Second, func() bool {
		return steno.LastStats(st.stderr.Bytes())[0].Packets >= uint64(len(frames))
	})
	if r := testenv.Run(testenv.Deadline, "ip", "-n", pair.CaptureNS, "link", "del", "dev", pair.CaptureIf); r.Err != nil {
		t.Fatal(r.Err)
	}
	select {
	case <-st.done:
	case <-time.After(time.Minute):
		t.Fatalf("stenotype still runs a minute after its interface was deleted; stderr:\n%s", testenv.Tail(st.stderr.Bytes(), 3000))
	}
	var exit *exec.ExitError
	if !errors.As(st.err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("stenotype exit %v after its interface was deleted, want status 1", st.err)
	}
	if !bytes.Contains(st.stderr.Bytes(), []byte("capture interface "+pair.CaptureIf+" was removed")) {
		t.Errorf("no line saying the interface was removed; stderr:\n%s", testenv.Tail(st.stderr.Bytes(), 3000))
	}
	checkSequence(t, "packets stored before the interface went", frames, steno.ReadThread(t, dir, 0, blocksizeKB).Packets)
}

// TestStartNoForeignFrames starts stenotype again and again on a silent
// veth while the namespace's loopback carries a flood: a socket that sees
// every interface before it is bound would store loopback frames as if
// captured on the veth. Nothing may be stored.
func TestStartNoForeignFrames(t *testing.T) {
	pcap, frames, pair := liveSetup(t)
	linkSet(t, pair.CaptureNS, "lo", "up")
	// At most 3 minutes of flood, stopped as soon as the starts are done.
	const pps = 10000
	loops := 3 * 60 * pps / len(frames)
	flood := startProc(t, "tcpreplay on lo", pair.Capture("tcpreplay", "-i", "lo", "--pps="+strconv.Itoa(pps),
		"--loop="+strconv.Itoa(loops), pcap))
	waitFor(t, "the flood on lo", flood, 30*time.Second, func() bool {
		r := pair.RunCapture(testenv.Deadline, "cat", "/sys/class/net/lo/statistics/tx_packets")
		n, _ := strconv.Atoi(strings.TrimSpace(string(r.Stdout)))
		return n > 1000
	})
	dir := testenv.OutputDir(t, 1)
	const starts = 10
	for i := 0; i < starts; i++ {
		st := startCapture(t, pair, dir, 1)
		if err := st.stop(t, syscall.SIGTERM, 60*time.Second); err != nil {
			t.Fatalf("start %d: stenotype exit after SIGTERM: %v; stderr:\n%s", i, err, testenv.Tail(st.stderr.Bytes(), 3000))
		}
		if flood.exited() {
			t.Fatalf("the flood on lo ended after %d starts: %v; %s", i+1, flood.err, testenv.Tail(flood.stdout.Bytes(), 500))
		}
	}
	_ = flood.stop(t, syscall.SIGTERM, 30*time.Second)
	stored := steno.ReadThread(t, dir, 0, blocksizeKB)
	t.Logf("%d starts during the flood: %d file pairs, %d packets stored", starts, len(stored.Pairs), len(stored.Packets))
	if len(stored.Packets) != 0 {
		t.Errorf("%d frames stored from a silent interface (first: %s): other interfaces' traffic reached the ring",
			len(stored.Packets), hexHead(stored.Packets[0].Data, 48))
	}
}

// TestLiveCountTwoThreads stops on --count with two fanout threads, which
// share the budget: stenotype must exit 0 by itself with at least --count
// packets stored.
func TestLiveCountTwoThreads(t *testing.T) {
	pcap, frames, pair := liveSetup(t)
	dir := testenv.OutputDir(t, 2)
	count := 2 * len(frames)
	st := startCapture(t, pair, dir, 2, "--count="+strconv.Itoa(count))
	// Far more traffic than --count, for at most a few minutes.
	sender := startProc(t, "tcpreplay", pair.Sender("tcpreplay", "-i", pair.SenderIf, "--pps=500", "--loop=200", pcap))
	select {
	case <-st.done:
	case <-time.After(3 * time.Minute):
		t.Fatalf("stenotype still runs 3 minutes into a replay of %d frames with --count=%d; STATS %+v",
			200*len(frames), count, steno.LastStats(st.stderr.Bytes()))
	}
	_ = sender.stop(t, syscall.SIGTERM, 30*time.Second)
	if st.err != nil {
		t.Errorf("stenotype exit after --count: %v; stderr:\n%s", st.err, testenv.Tail(st.stderr.Bytes(), 3000))
	}
	total := 0
	for i := 0; i < 2; i++ {
		s := steno.ReadThread(t, dir, i, blocksizeKB)
		t.Logf("thread %d stored %d packets", i, len(s.Packets))
		total += len(s.Packets)
	}
	if total < count {
		t.Errorf("%d packets stored, want at least --count=%d", total, count)
	}
}

// TestLiveStderrReaderGone closes the read end of stenotype's stderr pipe
// once it runs: its log lines are lost from then on, but it must keep
// capturing and exit 0 on SIGTERM with every sent frame stored (a
// SIGPIPE would kill it at its next line).
func TestLiveStderrReaderGone(t *testing.T) {
	pcap, frames, pair := liveSetup(t)
	dir := testenv.OutputDir(t, 1)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := pair.Capture(testenv.Stenotype(t), captureArgs(pair.CaptureIf, dir, 1)...)
	cmd.Stderr = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "STATS thread=0") {
				ready <- true
				return
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			<-done
			t.Fatalf("stenotype's stderr ended before its first STATS line: %v", waitErr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no STATS line from stenotype within 30 s")
	}
	r.Close()
	// A few seconds of traffic: several STATS lines go to the closed pipe.
	replay(t, pair, pcap, 20, len(frames))
	select {
	case <-done:
		t.Fatalf("stenotype exited while its stderr reader was gone: %v", waitErr)
	default:
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
		if waitErr != nil {
			t.Fatalf("stenotype exit after SIGTERM: %v (want status 0)", waitErr)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("stenotype did not exit within 60 s of SIGTERM")
	}
	stored := steno.ReadThread(t, dir, 0, blocksizeKB)
	checkSequence(t, "packets stored with no log reader", frames, stored.Packets)
}

// TestLiveDiskFull captures onto a small file system until it is full:
// blocks whose write fails are dropped, counted in the STATS line
// (blocks_dropped), and capture goes on. With both write engines: each
// reports ENOSPC its own way (libaio and io_uring completions).
func TestLiveDiskFull(t *testing.T) {
	for _, engine := range []string{"aio", "uring"} {
		t.Run(engine, func(t *testing.T) { liveDiskFull(t, "--io_engine="+engine) })
	}
}

func liveDiskFull(t *testing.T, engineFlag string) {
	pcap, frames, pair := liveSetup(t)
	mnt := testenv.LoopDisk(t, 16)
	dir := filepath.Join(mnt, "steno")
	// Registered after the disk, so it stops before the unmount.
	st := startCapture(t, pair, dir, 1, "--uid=0", "--gid=0", "--filesize_mb=4", engineFlag)
	// A ballast leaves room for a few blocks: the replay's blocks are
	// written sparse, so the traffic alone would take long to fill the disk.
	testenv.FillDisk(t, mnt, 256<<10)
	sender := startProc(t, "tcpreplay", pair.Sender("tcpreplay", "-i", pair.SenderIf, "--pps=2000", "--loop=1000", pcap))
	waitFor(t, "blocks_dropped in STATS", st, 3*time.Minute, func() bool {
		return steno.LastStats(st.stderr.Bytes())[0].BlocksDropped > 0
	})
	// Capture goes on: more blocks are taken from the ring after the first drop.
	blocks := steno.LastStats(st.stderr.Bytes())[0].Blocks
	waitFor(t, "more blocks after the disk filled", st, time.Minute, func() bool {
		return steno.LastStats(st.stderr.Bytes())[0].Blocks > blocks+2
	})
	_ = sender.stop(t, syscall.SIGTERM, 30*time.Second)
	err := st.stop(t, syscall.SIGTERM, 60*time.Second)
	stderr := st.stderr.Bytes()
	final := steno.LastStats(stderr)[0]
	t.Logf("exit %v; final STATS %+v (%d frames per loop)", err, final, len(frames))
	if final.BlocksDropped == 0 {
		t.Errorf("final STATS: blocks_dropped=0 on a full disk")
	}
	if !regexp.MustCompile(`No space left on device`).Match(stderr) {
		t.Errorf("no ENOSPC in stenotype's log:\n%s", testenv.Tail(stderr, 3000))
	}
}

// TestVersion: both C++ programs name the commit they were built from.
func TestVersion(t *testing.T) {
	want := "unknown"
	if out, err := exec.Command("git", "-C", testenv.Root(t), "rev-parse", "--short", "HEAD").Output(); err == nil {
		want = strings.TrimSpace(string(out))
	}
	for _, name := range []string{"stenotype", "stenodump"} {
		out, err := exec.Command(testenv.Binary(t, name), "--version").Output()
		if err != nil {
			t.Errorf("%s --version: %v", name, err)
			continue
		}
		m := regexp.MustCompile(`^` + name + ` version (\S+) commit (\S+)\n$`).FindSubmatch(out)
		if m == nil {
			t.Errorf("%s --version printed %q, want %q", name, out, name+" version V commit C\n")
			continue
		}
		if string(m[2]) != want {
			t.Errorf("%s --version: commit %s, want %s (git rev-parse --short HEAD; rebuild after committing)", name, m[2], want)
		}
	}
}
