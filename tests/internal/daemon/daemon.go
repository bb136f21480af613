// Package daemon runs the real stenographer daemon for end-to-end tests:
// it writes a configuration into the test's temporary directory, makes the
// certificates with the real scripts/stenokeys.sh, and starts
// build/bin/stenographer inside the capture namespace of a netns pair, so
// that the stenotype it supervises captures the veth end there. The HTTPS
// and gRPC ports are then only reachable inside that namespace: commands
// (stenoread, curl, stenogrpc, python) run there with `ip netns exec`, and
// Go clients dial through DialInNS.
//
// The harness builds nothing: a missing binary fails the test (`make build`
// first). The daemon and everything it started are killed at test end, even
// on failure, and its log is printed when the test failed.
package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/stenographer/store"
	"github.com/stenographer-ng/stenographer/tests/internal/netns"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// Ports inside the capture namespace (private to it, so fixed numbers
// never collide with anything).
const (
	HTTPSPort = 1234
	GRPCPort  = 8443
)

// Thread is one entry of the config's Threads (SPEC §9).
type Thread struct {
	PacketsDirectory   string
	IndexDirectory     string
	Interface          string `json:",omitempty"` // ours: the thread's capture interface
	DiskFreePercentage int    `json:",omitempty"`
	MaxDirectoryFiles  int    `json:",omitempty"`
}

// RPC is the config's Rpc section.
type RPC struct {
	CaCert              string
	ServerKey           string
	ServerCert          string
	ServerPort          int
	ServerHost          string `json:",omitempty"`
	ServerPcapPath      string
	ServerPcapMaxSize   int64 `json:",omitempty"`
	ClientPcapChunkSize int64 `json:",omitempty"`
	ClientPcapMaxSize   int64 `json:",omitempty"`
}

// Config is the JSON configuration file.
type Config struct {
	Threads       []Thread
	StenotypePath string
	Interface     string
	Port          int
	Host          string
	Flags         []string
	CertPath      string
	MaxOpenFiles  int  `json:",omitempty"`
	Rpc           *RPC `json:",omitempty"`
	// TestimonySocket is the reference's key, accepted and ignored.
	TestimonySocket string `json:",omitempty"`
}

// FastFlags make stenotype rotate and report every second with a small
// ring, so a test sees its packets in files within seconds. Stenotype runs
// as root (the test's daemon runs as root and its directories are root's).
var FastFlags = []string{"--fileage_sec=1", "--blockage_sec=1", "--blocks=16", "--stats_sec=1", "--uid=0", "--gid=0"}

// Options says how to run one daemon. The zero value is one thread in
// fresh directories, FastFlags, HTTPS only, sync every second.
type Options struct {
	Threads         int      // number of threads when ThreadDirs is nil (default 1)
	ThreadDirs      []Thread // explicit thread directories and limits
	Flags           []string // stenotype Flags; nil means FastFlags
	StenotypePath   string   // default build/bin/stenotype
	Binary          string   // default build/bin/stenographer (e.g. a -race build)
	RPC             bool     // add an Rpc section (gRPC on GRPCPort)
	RPCEdit         func(*RPC)
	SyncInterval    time.Duration // --sync_interval, default 1s
	StaleTimeout    time.Duration // --stale_timeout when non-zero
	Args            []string      // more daemon flags
	NoWait          bool          // do not wait for HTTPS to answer (and stenotype to run)
	NoWaitCapture   bool          // wait for HTTPS only, not for stenotype's first STATS line
	Edit            func(*Config)
	ReadyTimeout    time.Duration // default 90s
	ShutdownTimeout time.Duration // SIGTERM grace at cleanup, default 30s
}

// Daemon is a running stenographer.
type Daemon struct {
	t          testing.TB
	Pair       *netns.Pair
	Dir        string // the test's directory: config, certs, client files
	ConfigPath string
	Config     Config
	CertDir    string
	Binary     string

	cmd  *exec.Cmd
	log  *testenv.SyncBuffer
	done chan struct{}
	err  error // after done

	grace    time.Duration
	stopOnce sync.Once

	clientOnce sync.Once
	client     *http.Client
	tlsConfig  *tls.Config
}

// Start writes the config and certificates and starts the daemon in the
// capture namespace of pair (whose `lo` it brings up). It waits until
// HTTPS answers /debug/stats and stenotype has printed a STATS line,
// unless opts says otherwise.
func Start(t testing.TB, pair *netns.Pair, opts Options) *Daemon {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "ip", "openssl", "jq", "curl")
	bin := opts.Binary
	if bin == "" {
		bin = os.Getenv("STENO_DAEMON_BIN") // another build, e.g. with -race
	}
	if bin == "" {
		bin = testenv.Stenographer(t)
	} else if _, err := os.Stat(bin); err != nil {
		t.Fatalf("stenographer binary %s: %v", bin, err)
	}
	stenotype := opts.StenotypePath
	if stenotype == "" {
		stenotype = testenv.Stenotype(t)
	}
	if r := testenv.Run(testenv.Deadline, "ip", "-n", pair.CaptureNS, "link", "set", "lo", "up"); r.Err != nil {
		t.Fatal(r.Err)
	}

	d := &Daemon{t: t, Pair: pair, Dir: testenv.DiskTempDir(t), Binary: bin, log: &testenv.SyncBuffer{}, done: make(chan struct{})}
	d.CertDir = filepath.Join(d.Dir, "certs")
	d.ConfigPath = filepath.Join(d.Dir, "config")

	threads := opts.ThreadDirs
	if threads == nil {
		n := max(opts.Threads, 1)
		for i := 0; i < n; i++ {
			base := testenv.DiskTempDir(t)
			th := Thread{PacketsDirectory: filepath.Join(base, "pkt"), IndexDirectory: filepath.Join(base, "idx")}
			for _, p := range []string{th.PacketsDirectory, th.IndexDirectory} {
				if err := os.Mkdir(p, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			threads = append(threads, th)
		}
	}
	flags := opts.Flags
	if flags == nil {
		flags = FastFlags
	}
	d.Config = Config{
		Threads:       threads,
		StenotypePath: stenotype,
		Interface:     pair.CaptureIf,
		Port:          HTTPSPort,
		Host:          "127.0.0.1",
		Flags:         flags,
		CertPath:      d.CertDir,
	}
	if opts.RPC {
		pcapDir := filepath.Join(d.Dir, "rpc")
		if err := os.Mkdir(pcapDir, 0o755); err != nil {
			t.Fatal(err)
		}
		d.Config.Rpc = &RPC{
			CaCert:         filepath.Join(d.CertDir, "ca_cert.pem"),
			ServerKey:      filepath.Join(d.CertDir, "server_key.pem"),
			ServerCert:     filepath.Join(d.CertDir, "server_cert.pem"),
			ServerPort:     GRPCPort,
			ServerPcapPath: pcapDir,
		}
		if opts.RPCEdit != nil {
			opts.RPCEdit(d.Config.Rpc)
		}
	}
	if opts.Edit != nil {
		opts.Edit(&d.Config)
	}
	d.writeConfig()

	// Certificates with the real script, into CertPath from the config.
	r := d.runEnv(testenv.Deadline, nil, testenv.Script(t, "stenokeys.sh"), "root", "root")
	if r.Err != nil {
		t.Fatalf("stenokeys.sh: %v\n%s", r.Err, r.Stdout)
	}

	sync := opts.SyncInterval
	if sync == 0 {
		sync = time.Second
	}
	args := []string{"netns", "exec", pair.CaptureNS, bin, "--config=" + d.ConfigPath, "--sync_interval=" + sync.String()}
	if opts.StaleTimeout != 0 {
		args = append(args, "--stale_timeout="+opts.StaleTimeout.String())
	}
	args = append(args, opts.Args...)
	d.cmd = exec.Command("ip", args...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	// Own process group, killed as a whole at the end; the kernel kills the
	// daemon should the test binary die first.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	t.Cleanup(func() {
		if t.Failed() {
			// The whole log outlives the test's directories.
			name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
			keep := filepath.Join(os.TempDir(), fmt.Sprintf("stenographer-%s-%d.log", name, os.Getpid()))
			if err := os.WriteFile(keep, d.log.Bytes(), 0o644); err != nil {
				keep = "not kept: " + err.Error()
			}
			t.Logf("stenographer log (whole log: %s), last 6000 bytes:\n%s", keep, testenv.Tail(d.log.Bytes(), 6000))
		}
	})
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", testenv.CommandLine("ip", args), err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	d.grace = opts.ShutdownTimeout
	t.Cleanup(func() {
		d.Stop()
		if bytes.Contains(d.log.Bytes(), []byte("WARNING: DATA RACE")) {
			t.Errorf("the race detector reported a data race in stenographer (see its log)")
		}
	})

	if opts.NoWait {
		return d
	}
	ready := opts.ReadyTimeout
	if ready == 0 {
		ready = 90 * time.Second
	}
	d.WaitFor("HTTPS to answer GET /debug/stats", ready, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		code, _, err := d.Get(ctx, "/debug/stats")
		return err == nil && code == http.StatusOK
	})
	if !opts.NoWaitCapture {
		d.WaitFor("stenotype's first STATS line in the daemon log", ready, func() bool {
			return bytes.Contains(d.log.Bytes(), []byte("STATS thread="))
		})
	}
	return d
}

func (d *Daemon) writeConfig() {
	data, err := json.MarshalIndent(d.Config, "", "  ")
	if err != nil {
		d.t.Fatal(err)
	}
	if err := os.WriteFile(d.ConfigPath, data, 0o644); err != nil {
		d.t.Fatal(err)
	}
}

// Stop stops the daemon now as the test's end would (SIGTERM, then the
// checks of a clean stop); later calls do nothing.
func (d *Daemon) Stop() { d.stopOnce.Do(func() { d.shutdown(d.grace) }) }

// shutdown sends SIGTERM and waits; then kills whatever is left of the
// daemon's process tree. A stenotype that outlives a daemon which exited
// on SIGTERM is a test error: the daemon must stop its child.
func (d *Daemon) shutdown(grace time.Duration) {
	if grace == 0 {
		grace = 30 * time.Second
	}
	if d.Exited() {
		killAll(Descendants(d.cmd.Process.Pid))
		return
	}
	pid := d.cmd.Process.Pid
	children := Descendants(pid)
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		var left []int
		deadline := time.Now().Add(10 * time.Second)
		for {
			left = alivePIDs(children)
			if len(left) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if len(left) > 0 {
			d.t.Errorf("stenographer exited after SIGTERM but its children %v still ran 10s later (killed now)", left)
			killAll(left)
		}
		if d.err != nil {
			d.t.Errorf("stenographer exited with %v after SIGTERM, want status 0", d.err)
		}
		d.checkStopped()
	case <-time.After(grace):
		d.t.Errorf("stenographer did not exit within %v of SIGTERM; killing its process group", grace)
		children = append(children, Descendants(pid)...)
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		killAll(children)
		<-d.done
	}
}

// checkStopped requires what a clean stop leaves: stenotype finished and
// renamed its files (no hidden ones), and every packet file has its index.
func (d *Daemon) checkStopped() {
	for i := range d.Config.Threads {
		if h := d.Hidden(i); len(h) > 0 {
			d.t.Errorf("thread %d: hidden files %v left after a clean stop", i, h)
		}
		pkts, idxs := map[string]bool{}, map[string]bool{}
		for _, n := range d.Files(i) {
			pkts[n] = true
		}
		for _, n := range d.IndexFiles(i) {
			idxs[n] = true
		}
		for n := range pkts {
			if !idxs[n] {
				d.t.Errorf("thread %d: packet file %s has no index after a clean stop", i, n)
			}
		}
		for n := range idxs {
			if !pkts[n] {
				d.t.Errorf("thread %d: index %s has no packet file after a clean stop", i, n)
			}
		}
	}
}

// Exited reports whether the daemon process has ended.
func (d *Daemon) Exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// PID is the daemon's process id (`ip netns exec` execs it in place).
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// ExitErr is the daemon's exit status once it has exited.
func (d *Daemon) ExitErr() error { <-d.done; return d.err }

// Log returns everything the daemon (and the stenotype output it
// forwards) printed so far.
func (d *Daemon) Log() []byte { return d.log.Bytes() }

// LogTail is the end of the log, for messages.
func (d *Daemon) LogTail() string { return testenv.Tail(d.log.Bytes(), 4000) }

// WaitFor polls cond every 200ms until it holds; it fails the test after
// timeout or when the daemon exits first.
func (d *Daemon) WaitFor(what string, timeout time.Duration, cond func() bool) {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if d.Exited() {
			d.t.Fatalf("stenographer exited (%v) while waiting for %s; log:\n%s", d.err, what, d.LogTail())
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("timed out after %v waiting for %s; log:\n%s", timeout, what, d.LogTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Poll polls cond every 200ms for at most timeout and reports whether it
// held; it fails the test at once when the daemon exits.
func (d *Daemon) Poll(timeout time.Duration, cond func() bool) bool {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if d.Exited() {
			d.t.Fatalf("stenographer exited (%v); log:\n%s", d.err, d.LogTail())
		}
		if time.Now().After(deadline) {
			return cond()
		}
		time.Sleep(200 * time.Millisecond)
	}
	return true
}

// Stenotype returns the pid of the daemon's stenotype child (a child whose
// executable is StenotypePath), or 0.
func (d *Daemon) Stenotype() int {
	if pids := d.Stenotypes(); len(pids) > 0 {
		return pids[0]
	}
	return 0
}

// Stenotypes returns the pids of every stenotype child (one per capture
// interface).
func (d *Daemon) Stenotypes() []int {
	want := filepath.Base(d.Config.StenotypePath)
	var out []int
	for _, pid := range Children(d.cmd.Process.Pid) {
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && filepath.Base(exe) == want {
			out = append(out, pid)
			continue
		}
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil &&
			strings.TrimSpace(string(comm)) == truncComm(want) {
			out = append(out, pid)
		}
	}
	return out
}

func truncComm(s string) string {
	if len(s) > 15 {
		return s[:15]
	}
	return s
}

// WaitStenotype waits for a stenotype child other than notPID and returns
// its pid.
func (d *Daemon) WaitStenotype(notPID int, timeout time.Duration) int {
	d.t.Helper()
	var pid int
	d.WaitFor(fmt.Sprintf("a stenotype child other than pid %d", notPID), timeout, func() bool {
		pid = d.Stenotype()
		return pid != 0 && pid != notPID
	})
	return pid
}

// ---- files ----

// Files returns the visible packet file names of thread i, sorted (names
// are microsecond timestamps, so this is creation order).
func (d *Daemon) Files(i int) []string {
	return visible(d.Config.Threads[i].PacketsDirectory)
}

// IndexFiles returns the visible index file names of thread i, sorted.
func (d *Daemon) IndexFiles(i int) []string {
	return visible(d.Config.Threads[i].IndexDirectory)
}

// Hidden returns the hidden file names in thread i's two directories,
// as "pkt/.NAME" and "idx/.NAME": stenotype's unfinished files. The
// daemon's summary directory (IDX<i>/.summary) is not one of them.
func (d *Daemon) Hidden(i int) []string {
	var out []string
	for _, e := range []struct{ tag, dir string }{{"pkt", d.Config.Threads[i].PacketsDirectory}, {"idx", d.Config.Threads[i].IndexDirectory}} {
		ents, _ := os.ReadDir(e.dir)
		for _, x := range ents {
			if x.IsDir() && x.Name() == store.SummaryDirName {
				continue // the daemon's summary tables, not stenotype's
			}
			if strings.HasPrefix(x.Name(), ".") {
				out = append(out, e.tag+"/"+x.Name())
			}
		}
	}
	return out
}

func visible(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

// ---- clients ----

// Env is the environment for the client scripts: STENOGRAPHER_CONFIG
// pointing at this daemon's config.
func (d *Daemon) Env() []string {
	return append(os.Environ(), "STENOGRAPHER_CONFIG="+d.ConfigPath)
}

// Run runs a command inside the capture namespace with Env.
func (d *Daemon) Run(timeout time.Duration, name string, args ...string) testenv.Result {
	return d.runEnv(timeout, nil, "ip", append([]string{"netns", "exec", d.Pair.CaptureNS, name}, args...)...)
}

// RunStdin is Run with stdin.
func (d *Daemon) RunStdin(timeout time.Duration, stdin []byte, name string, args ...string) testenv.Result {
	return d.runEnv(timeout, stdin, "ip", append([]string{"netns", "exec", d.Pair.CaptureNS, name}, args...)...)
}

func (d *Daemon) runEnv(timeout time.Duration, stdin []byte, name string, args ...string) testenv.Result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = d.Env()
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v: %w", timeout, ctx.Err())
	}
	if err != nil {
		err = fmt.Errorf("%s: %w; stderr: %s", testenv.CommandLine(name, args), err, testenv.Tail(errb.Bytes(), 2000))
	}
	return testenv.Result{Stdout: out.Bytes(), Stderr: errb.Bytes(), Err: err}
}

// Stenoread runs scripts/stenoread in the namespace and returns tcpdump's
// output (the result of -w - when asked for).
func (d *Daemon) Stenoread(timeout time.Duration, args ...string) testenv.Result {
	return d.Run(timeout, testenv.Script(d.t, "stenoread"), args...)
}
