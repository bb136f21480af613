package capture_test

import (
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

	"github.com/stenographer-ng/stenographer/tests/internal/gen"
	"github.com/stenographer-ng/stenographer/tests/internal/netns"
	"github.com/stenographer-ng/stenographer/tests/internal/oracle"
	"github.com/stenographer-ng/stenographer/tests/internal/pcapfile"
	"github.com/stenographer-ng/stenographer/tests/internal/steno"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// Live tests replay pcaps with tcpreplay into one end of a veth pair and
// capture the other end with stenotype (and tcpdump as a second witness),
// each in its own network namespace so nothing else is on the link. There
// are no timing assertions: waits poll for a condition with a generous
// deadline.

// proc is a background child process.
type proc struct {
	name   string
	cmd    *exec.Cmd
	stderr *testenv.SyncBuffer
	stdout *testenv.SyncBuffer
	done   chan struct{}
	err    error // valid after done is closed
}

// startProc starts cmd and registers a cleanup that kills it if the test
// ends while it still runs (so namespaces can be deleted).
func startProc(t *testing.T, name string, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{name: name, cmd: cmd, stderr: &testenv.SyncBuffer{}, stdout: &testenv.SyncBuffer{}, done: make(chan struct{})}
	cmd.Stderr, cmd.Stdout = p.stderr, p.stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
			t.Logf("%s was still running at the end of the test and was killed; stderr:\n%s", name, testenv.Tail(p.stderr.Bytes(), 3000))
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig and waits for the exit.
func (p *proc) stop(t *testing.T, sig syscall.Signal, timeout time.Duration) error {
	t.Helper()
	if !p.exited() {
		if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Fatalf("signal %s: %v", p.name, err)
		}
	}
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("%s did not exit within %v of %v; stderr:\n%s", p.name, timeout, sig, testenv.Tail(p.stderr.Bytes(), 3000))
		return nil
	}
}

// waitFor polls cond until it holds; it fails the test after timeout or
// when p exits first.
func waitFor(t *testing.T, what string, p *proc, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if p != nil && p.exited() {
			t.Fatalf("%s exited (%v) while waiting for %s; stderr:\n%s", p.name, p.err, what, testenv.Tail(p.stderr.Bytes(), 3000))
		}
		if time.Now().After(deadline) {
			msg := ""
			if p != nil {
				msg = "; " + p.name + " stderr:\n" + testenv.Tail(p.stderr.Bytes(), 3000)
			}
			t.Fatalf("timed out after %v waiting for %s%s", timeout, what, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitUntil polls cond for at most timeout and reports whether it held;
// the caller goes on either way so the comparison that follows can say
// precisely what is missing.
func waitUntil(p *proc, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if (p != nil && p.exited()) || time.Now().After(deadline) {
			return cond()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}

// liveConfig is one live capture scenario.
type liveConfig struct {
	threads  int
	flags    []string // extra stenotype flags
	pcaps    []string // replayed in order by one tcpreplay
	pps      int
	witness  bool         // also capture with tcpdump -w
	midRun   bool         // SIGTERM while the replay is still running
	minFiles int          // at least this many file pairs per thread (rotation)
	bin      stenotypeBin // zero: the plain build
}

// liveResult is what a scenario produced.
type liveResult struct {
	dir      string
	stderr   []byte
	expected []pcapfile.Packet // sendable frames in replay order
	stored   []*steno.Stored   // per thread
	witness  *pcapfile.File    // tcpdump's capture, if any
	sent     int               // tcpreplay's successful packets
}

const blocksizeKB = 1024

// sendable reports whether tcpreplay can put a frame on the veth and the
// receive path hands it to packet sockets: at least an Ethernet header and
// no bigger than the MTU allows.
func sendable(d []byte) bool { return len(d) >= 14 && len(d) <= netns.MTU+14 }

func runLive(t *testing.T, cfg liveConfig) *liveResult {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "tcpreplay", "tcpdump", "ip")
	bin := cfg.bin
	if bin.path == "" {
		bin = plainStenotype(t)
	}
	testenv.Stenodump(t)

	res := &liveResult{}
	for _, f := range cfg.pcaps {
		pf, err := pcapfile.Read(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pf.Packets {
			if sendable(p.Data) {
				res.expected = append(res.expected, p)
			}
		}
	}

	pair := netns.NewPair(t)
	res.dir = testenv.OutputDir(t, cfg.threads)
	name, args := bin.command(append([]string{
		"--iface=" + pair.CaptureIf, "--dir=" + res.dir,
		"--threads=" + strconv.Itoa(cfg.threads),
		"--blocks=64", "--blockage_sec=1", "--stats_sec=1",
	}, cfg.flags...)...)
	st := startProc(t, "stenotype", pair.Capture(name, args...))

	// Ready: every thread has printed a STATS line (the ring is set up and
	// the capture loop runs).
	waitFor(t, "stenotype's first STATS line of every thread", st, 30*time.Second, func() bool {
		return len(steno.LastStats(st.stderr.Bytes())) >= cfg.threads
	})

	var td *proc
	var witnessPath string
	if cfg.witness {
		witnessPath = filepath.Join(t.TempDir(), "witness.pcap")
		td = startProc(t, "tcpdump", pair.Capture("tcpdump", "-i", pair.CaptureIf, "-w", witnessPath,
			"-U", "-s", "0", "-B", "16384", "-n", "--immediate-mode"))
		waitFor(t, "tcpdump to listen", td, 30*time.Second, func() bool {
			return bytes.Contains(td.stderr.Bytes(), []byte("listening on"))
		})
	}

	replayArgs := append([]string{"-i", pair.SenderIf, "--pps=" + strconv.Itoa(cfg.pps)}, cfg.pcaps...)
	if cfg.midRun {
		// The replay loops far longer than the test waits, so SIGTERM lands
		// while frames arrive; stored frames must be the replay in order.
		loops := 50
		replayArgs = append([]string{replayArgs[0], replayArgs[1], replayArgs[2], "--loop=" + strconv.Itoa(loops)}, cfg.pcaps...)
		one := res.expected
		for i := 1; i < loops; i++ {
			res.expected = append(res.expected, one...)
		}
		rp := startProc(t, "tcpreplay", pair.Sender("tcpreplay", replayArgs...))
		waitFor(t, "stenotype to store some packets", st, 60*time.Second, func() bool {
			return totalPackets(steno.LastStats(st.stderr.Bytes())) >= uint64(len(one)/4)
		})
		start := time.Now()
		if err := st.stop(t, syscall.SIGTERM, 60*time.Second); err != nil {
			t.Errorf("stenotype exit after SIGTERM during traffic: %v; stderr:\n%s", err, testenv.Tail(st.stderr.Bytes(), 3000))
		}
		t.Logf("stenotype exited %v after SIGTERM", time.Since(start).Round(time.Millisecond))
		if rp.exited() {
			t.Errorf("tcpreplay had finished before stenotype exited: SIGTERM did not arrive during traffic")
		}
		_ = rp.stop(t, syscall.SIGTERM, 30*time.Second)
	} else {
		r := pair.RunSender(5*time.Minute, "tcpreplay", replayArgs...)
		if r.Err != nil {
			t.Fatalf("tcpreplay: %v", r.Err)
		}
		res.sent = tcpreplayCount(t, r.Stdout, "Successful packets")
		if failed := tcpreplayCount(t, r.Stdout, "Failed packets"); failed != 0 || res.sent != len(res.expected) {
			t.Fatalf("tcpreplay sent %d packets (%d failed), expected %d sendable frames:\n%s", res.sent, failed, len(res.expected), r.Stdout)
		}
		// Every sent frame has reached stenotype once the block holding the
		// last ones retires (--blockage_sec=1).
		if !waitUntil(st, 30*time.Second, func() bool {
			return totalPackets(steno.LastStats(st.stderr.Bytes())) >= uint64(res.sent)
		}) {
			t.Logf("stenotype's STATS did not reach %d packets within 30s; stopping it anyway", res.sent)
		}
		if td != nil && !waitUntil(td, 30*time.Second, func() bool {
			f, err := pcapfile.Read(witnessPath)
			return err == nil && len(f.Packets) >= res.sent
		}) {
			t.Logf("tcpdump's file did not reach %d packets within 30s", res.sent)
		}
		if err := st.stop(t, syscall.SIGTERM, 60*time.Second); err != nil {
			t.Errorf("stenotype exit after SIGTERM: %v (want status 0); stderr:\n%s", err, testenv.Tail(st.stderr.Bytes(), 3000))
		}
	}
	res.stderr = st.stderr.Bytes()
	checkSanitizers(t, "live capture", res.stderr)
	checkModes(t, res.dir)

	if td != nil {
		if err := td.stop(t, syscall.SIGTERM, 30*time.Second); err != nil {
			t.Logf("tcpdump: %v", err)
		}
		w, err := pcapfile.Read(witnessPath)
		if err != nil {
			t.Fatalf("witness: %v", err)
		}
		res.witness = w
		if d := tcpdumpCount(td.stderr.Bytes(), "dropped by kernel"); d != 0 {
			t.Errorf("tcpdump witness: %d packets dropped by kernel", d)
		}
	}

	// Final STATS line of each thread: no kernel drops; counts match files.
	final := steno.LastStats(res.stderr)
	if len(final) != cfg.threads {
		t.Errorf("final STATS lines for %d threads, want %d; stderr:\n%s", len(final), cfg.threads, testenv.Tail(res.stderr, 3000))
	}
	for i := 0; i < cfg.threads; i++ {
		s := steno.ReadThread(t, res.dir, i, blocksizeKB)
		res.stored = append(res.stored, s)
		f := final[i]
		if f.Drops != 0 {
			t.Errorf("thread %d: final STATS reports %d kernel drops", i, f.Drops)
		}
		var bytes uint64
		for _, p := range s.Positions {
			for _, q := range p {
				bytes += uint64(q.SnapLen)
			}
		}
		if f.Packets != uint64(len(s.Packets)) {
			t.Errorf("thread %d: final STATS says %d packets, files hold %d", i, f.Packets, len(s.Packets))
		}
		if f.Bytes != bytes {
			t.Logf("thread %d: final STATS says %d bytes, files hold %d captured bytes", i, f.Bytes, bytes)
		}
		if len(s.Pairs) < cfg.minFiles {
			t.Errorf("thread %d: %d file pairs, want at least %d (rotation flags %v)", i, len(s.Pairs), cfg.minFiles, cfg.flags)
		}
		checkKeys(t, fmt.Sprintf("thread %d index keys", i), frames(s.Packets), s.Keys, func(j int) string {
			return fmt.Sprintf("thread %d stored packet #%d (file %s)", i, j, s.Pairs[s.FileOf[j]].Name)
		})
		for j := 1; j < len(s.Packets); j++ {
			if s.Packets[j].Time.Before(s.Packets[j-1].Time) {
				t.Errorf("thread %d: packet #%d is older than #%d: files out of order", i, j, j-1)
				break
			}
		}
	}
	return res
}

func totalPackets(m map[int]steno.Stats) uint64 {
	var n uint64
	for _, s := range m {
		n += s.Packets
	}
	return n
}

var tcpreplayRE = map[string]*regexp.Regexp{}

func tcpreplayCount(t *testing.T, out []byte, label string) int {
	t.Helper()
	re, ok := tcpreplayRE[label]
	if !ok {
		re = regexp.MustCompile(label + `:\s+(\d+)`)
		tcpreplayRE[label] = re
	}
	m := re.FindSubmatch(out)
	if m == nil {
		t.Fatalf("no %q in tcpreplay output:\n%s", label, out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

func tcpdumpCount(stderr []byte, label string) int {
	m := regexp.MustCompile(`(\d+) packets? ` + label).FindSubmatch(stderr)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// checkSequence requires stored to be exactly want, in order.
func checkSequence(t *testing.T, what string, want []pcapfile.Packet, got []pcapfile.Packet) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d packets, want %d", what, len(got), len(want))
	}
	r := &reporter{t: t, what: what}
	for i := 0; i < len(want) && i < len(got); i++ {
		if string(want[i].Data) != string(got[i].Data) {
			r.errorf("packet #%d differs from the replayed frame: %s", i, frameDiff(want[i].Data, got[i].Data))
		}
	}
	r.done()
}

// checkSubsequence requires got to be want with some frames left out.
func checkSubsequence(t *testing.T, what string, want, got []pcapfile.Packet) {
	t.Helper()
	j := 0
	for i := 0; i < len(want) && j < len(got); i++ {
		if string(want[i].Data) == string(got[j].Data) {
			j++
		}
	}
	if j != len(got) {
		t.Errorf("%s: stored packet #%d (%s) is not one of the replayed frames in order", what, j, hexHead(got[j].Data, 48))
	}
}

func corpusFiles(t *testing.T, names ...string) []string {
	dir := testenv.PcapDir(t)
	var out []string
	for _, n := range names {
		out = append(out, filepath.Join(dir, n))
	}
	return out
}

func generatedLivePcap(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "generated-live.pcap")
	if _, err := gen.WritePcap(path, true); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestLiveGenerated replays the generated frames (every encapsulation,
// VLAN tags the kernel strips included); SIGTERM arrives while the only
// file is still open. Needs no shared corpus.
func TestLiveGenerated(t *testing.T) {
	res := runLive(t, liveConfig{threads: 1, pcaps: []string{generatedLivePcap(t)}, pps: 200, witness: true, minFiles: 1})
	s := res.stored[0]
	checkSequence(t, "stored packets", res.expected, s.Packets)
	checkSequence(t, "tcpdump witness", res.expected, res.witness.Packets)
	if len(s.Pairs) != 1 {
		t.Errorf("%d file pairs, want 1 (SIGTERM mid-file, --fileage_sec=60)", len(s.Pairs))
	}
	// The hand-written keys too, by case name.
	var live []gen.Case
	for _, c := range gen.Cases() {
		if c.Live {
			live = append(live, c)
		}
	}
	for i, c := range live {
		if i < len(s.Keys) {
			var got []string
			for _, k := range s.Keys[i] {
				got = append(got, k.String())
			}
			want := oracle.Keys(c.Data)
			if m, e := oracle.Diff(want, s.Keys[i]); len(m)+len(e) > 0 {
				t.Errorf("case %s: live index keys %v, want %v", c.Name, got, c.Keys)
			}
		}
	}
}

// TestLiveCorpus replays the three files the reference capture replayed,
// with tcpdump capturing the same link as a second witness.
func TestLiveCorpus(t *testing.T) {
	files := corpusFiles(t, referenceReplay...)
	res := runLive(t, liveConfig{threads: 1, pcaps: files, pps: 4000, witness: true, minFiles: 1})
	checkSequence(t, "stored packets", res.expected, res.stored[0].Packets)
	checkSequence(t, "tcpdump witness", res.expected, res.witness.Packets)
	t.Logf("replayed %d frames; stenotype stored %d; tcpdump captured %d", res.sent, len(res.stored[0].Packets), len(res.witness.Packets))
}

// TestLiveRotation rotates files every second during the replay and checks
// that the files, in name order, hold the replay in order.
func TestLiveRotation(t *testing.T) {
	files := corpusFiles(t, "pcapplusplus-many-protocols.pcap", "arkime-mpls-basic.pcap")
	res := runLive(t, liveConfig{threads: 1, pcaps: files, pps: 1500, flags: []string{"--fileage_sec=1"}, minFiles: 3})
	s := res.stored[0]
	checkSequence(t, "stored packets across rotated files", res.expected, s.Packets)
	t.Logf("%d packets in %d file pairs", len(s.Packets), len(s.Pairs))
}

// TestLiveFanout captures with two threads (PACKET_FANOUT): together they
// hold every replayed frame once. Both write engines, each under the
// default seccomp sandbox (kill), which must allow what the engine calls.
func TestLiveFanout(t *testing.T) {
	for _, engine := range []string{"aio", "uring"} {
		t.Run(engine, func(t *testing.T) { liveFanout(t, "--io_engine="+engine) })
	}
}

func liveFanout(t *testing.T, flags ...string) {
	files := corpusFiles(t, "pcapplusplus-many-protocols.pcap")
	res := runLive(t, liveConfig{threads: 2, pcaps: files, pps: 4000, minFiles: 1, flags: flags})
	var all [][]byte
	for i, s := range res.stored {
		t.Logf("thread %d stored %d packets in %d files", i, len(s.Packets), len(s.Pairs))
		all = append(all, frames(s.Packets)...)
	}
	if a, b := equalMultiset(frames(res.expected), all); a != 0 || b != 0 {
		t.Errorf("threads together: %d replayed frames missing, %d stored frames not replayed (stored %d, replayed %d)",
			a, b, len(all), len(res.expected))
	}
	for i, s := range res.stored {
		checkSubsequence(t, fmt.Sprintf("thread %d", i), res.expected, s.Packets)
	}
}

// TestLiveSigtermDuringTraffic stops stenotype while packets arrive: it
// must exit 0 with every file renamed and indexed, holding replayed
// frames in order.
func TestLiveSigtermDuringTraffic(t *testing.T) {
	files := corpusFiles(t, "mercury-emix.pcap")
	res := runLive(t, liveConfig{threads: 1, pcaps: files, pps: 2000, midRun: true, minFiles: 1})
	s := res.stored[0]
	if len(s.Packets) == 0 {
		t.Errorf("no packets stored")
	}
	checkSubsequence(t, "stored packets", res.expected, s.Packets)
	t.Logf("stored %d frames before SIGTERM (one loop of the replay is %d)", len(s.Packets), len(res.expected)/50)
}

// TestLiveFilter captures through a kernel BPF filter, given as an
// expression (--filter_expr) and as compiled hex (--filter, from
// scripts/compile_bpf.sh): exactly the replayed frames tcpdump's filter
// selects are stored.
func TestLiveFilter(t *testing.T) {
	files := corpusFiles(t, "tcpdump-dns_udp.pcap", "tcpdump-dns_tcp.pcap", "zeek-http-get-to-ssh-server.pcap")
	out, err := exec.Command(filepath.Join(testenv.Root(t), "scripts", "compile_bpf.sh"), "tcp").Output()
	if err != nil {
		t.Fatalf("compile_bpf.sh: %v", err)
	}
	hex := strings.TrimSpace(string(out))
	for _, tc := range []struct {
		name, flag, bpf string
	}{
		{"expression", "--filter_expr=udp", "udp"},
		{"compiled", "--filter=" + hex, "tcp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want []pcapfile.Packet
			for _, f := range files {
				sel, err := exec.Command("tcpdump", "-r", f, "-w", "-", tc.bpf).Output()
				if err != nil {
					t.Fatalf("tcpdump -r %s %s: %v", f, tc.bpf, err)
				}
				pf, err := pcapfile.Parse(sel)
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, pf.Packets...)
			}
			res := runLive(t, liveConfig{threads: 1, pcaps: files, pps: 200, flags: []string{tc.flag}, minFiles: 1})
			if len(want) == 0 {
				t.Fatal("the filter selects nothing: the test would prove nothing")
			}
			checkSequence(t, "stored packets", want, res.stored[0].Packets)
		})
	}
}
