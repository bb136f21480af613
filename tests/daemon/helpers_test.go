// Package daemon_test runs the real stenographer daemon end to end: it
// supervises the real stenotype capturing a veth end in a private network
// namespace while tcpreplay sends from the other end, and it is queried
// through the real client scripts (stenoread, stenocurl), the Go gRPC
// client (stenogrpc), a Python client generated from protobuf/steno.proto,
// curl and Go clients. Each test's comment says what it asserts.
//
// Run as root after `make build`: go test -count=1 -v ./tests/daemon.
// STENO_DAEMON_BIN runs another stenographer binary; STENO_DAEMON_RACE=0
// skips the -race build of the disk and concurrency test. The corpus
// (../shared or $STENO_SHARED) adds corpus traffic; without it the tests
// use generated frames only. No test asserts on timing: waits poll with
// generous deadlines. A failed test keeps the daemon's whole log in
// $TMPDIR/stenographer-<test>-<pid>.log.
package daemon_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/tests/internal/daemon"
	"github.com/stenographer-ng/stenographer/tests/internal/gen"
	"github.com/stenographer-ng/stenographer/tests/internal/netns"
	"github.com/stenographer-ng/stenographer/tests/internal/oracle"
	"github.com/stenographer-ng/stenographer/tests/internal/pcapfile"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// everything selects every packet captured during a test run.
const everything = "after 1h ago"

// sendable reports whether tcpreplay can put a frame on the veth and the
// kernel hands it to packet sockets (as in tests/capture).
func sendable(d []byte) bool { return len(d) >= 14 && len(d) <= netns.MTU+14 }

// framesOf reads pcaps and returns their sendable frames in replay order.
func framesOf(t *testing.T, files ...string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, f := range files {
		pf, err := pcapfile.Read(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pf.LibpcapView().Packets {
			if sendable(p.Data) {
				out = append(out, p.Data)
			}
		}
	}
	return out
}

// generatedPcap writes the generated frames the kernel delivers over a
// veth (every encapsulation the indexer handles) to a file.
func generatedPcap(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "generated.pcap")
	if _, err := gen.WritePcap(p, true); err != nil {
		t.Fatal(err)
	}
	return p
}

var tcpreplayRE = regexp.MustCompile(`(Successful|Failed) packets:\s+(\d+)`)

// replay sends files once, in order, at pps from the sender namespace and
// requires every frame to go out.
func replay(t *testing.T, pair *netns.Pair, pps int, want int, files ...string) {
	t.Helper()
	args := append([]string{"-i", pair.SenderIf, "--pps=" + strconv.Itoa(pps)}, files...)
	r := pair.RunSender(5*time.Minute, "tcpreplay", args...)
	if r.Err != nil {
		t.Fatalf("tcpreplay: %v", r.Err)
	}
	got := map[string]int{}
	for _, m := range tcpreplayRE.FindAllStringSubmatch(string(r.Stdout), -1) {
		got[m[1]], _ = strconv.Atoi(m[2])
	}
	if got["Failed"] != 0 || got["Successful"] != want {
		t.Fatalf("tcpreplay sent %d packets (%d failed), want %d:\n%s", got["Successful"], got["Failed"], want, r.Stdout)
	}
}

// parsePCAP parses a query result.
func parsePCAP(t testing.TB, what string, data []byte) *pcapfile.File {
	t.Helper()
	f, err := pcapfile.Parse(data)
	if err != nil {
		t.Fatalf("%s: not a pcap (%d bytes, starts %x): %v", what, len(data), data[:min(len(data), 32)], err)
	}
	return f
}

// count evaluates an oracle query over frames.
func count(t testing.TB, query string, frames [][]byte) int {
	t.Helper()
	q, err := oracle.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range frames {
		if q.Match(oracle.Packet(f)) {
			n++
		}
	}
	return n
}

// waitCount polls the daemon until query returns want packets (more is a
// failure at once: nothing else is on the link).
func waitCount(t *testing.T, d *daemon.Daemon, query string, want int, timeout time.Duration) {
	t.Helper()
	last, lastErr := -1, ""
	ok := d.Poll(timeout, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		r, err := d.Query(ctx, query, nil)
		if err != nil {
			lastErr = err.Error()
			return false
		}
		if r.Status != http.StatusOK {
			lastErr = fmt.Sprintf("status %d: %s", r.Status, testenv.Tail(r.Body, 300))
			return false
		}
		f, err := pcapfile.Parse(r.Body)
		if err != nil {
			t.Fatalf("%q: answer is not a pcap: %v", query, err)
		}
		if len(f.Packets) > want {
			t.Fatalf("%q returned %d packets, more than the %d sent", query, len(f.Packets), want)
		}
		last = len(f.Packets)
		return last == want
	})
	if !ok {
		t.Fatalf("after %v, %q returns %d packets, want %d (last error: %s); log:\n%s", timeout, query, last, want, lastErr, d.LogTail())
	}
}

// waitFinished waits until every packet thread i captured is in finished
// (visible, indexed) files, for tests that work on the files: a query
// finds packets while their file is still being written, so a query's
// answer says nothing of the files. With FastFlags a file ends every
// second, and the one being written then holds no block.
func waitFinished(t *testing.T, d *daemon.Daemon, i int) {
	t.Helper()
	th := d.Config.Threads[i]
	d.WaitFor(fmt.Sprintf("thread %d's packets in finished files", i), 2*time.Minute, func() bool {
		pkts, _ := os.ReadDir(th.PacketsDirectory)
		visible := 0
		for _, e := range pkts {
			info, err := e.Info()
			if err != nil {
				return false
			}
			if strings.HasPrefix(e.Name(), ".") && info.Size() > 0 {
				return false // a file being written holds packets
			}
			if !strings.HasPrefix(e.Name(), ".") {
				visible++
			}
		}
		return visible > 0 && len(d.IndexFiles(i)) == visible
	})
}

// boundary returns a whole second safely after now and sleeps until it has
// passed by half a second, so packets before and after the call fall on
// either side of it in a time query.
func boundary() time.Time {
	b := time.Now().Add(time.Second).Truncate(time.Second).Add(time.Second)
	time.Sleep(time.Until(b) + 500*time.Millisecond)
	return b
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// background is a child process the test stops itself (killed at the end
// if still running).
type background struct {
	cmd  *os.Process
	done chan struct{}
	out  *bytes.Buffer
	mu   sync.Mutex
}

// startSender starts a long-running command in the sender namespace.
func startSender(t *testing.T, pair *netns.Pair, name string, args ...string) *background {
	t.Helper()
	cmd := pair.Sender(name, args...)
	b := &background{done: make(chan struct{}), out: &bytes.Buffer{}}
	cmd.Stdout, cmd.Stderr = lockedWriter{b}, lockedWriter{b}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	b.cmd = cmd.Process
	go func() { _ = cmd.Wait(); close(b.done) }()
	t.Cleanup(b.stop)
	return b
}

type lockedWriter struct{ b *background }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.b.mu.Lock()
	defer w.b.mu.Unlock()
	return w.b.out.Write(p)
}

func (b *background) stop() {
	select {
	case <-b.done:
		return
	default:
	}
	_ = b.cmd.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(10 * time.Second):
		_ = b.cmd.Kill()
		<-b.done
	}
}

func (b *background) exited() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

func (b *background) output() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.out.String()
}

// must fails the test on a command error and returns stdout.
func must(t testing.TB, r testenv.Result) []byte {
	t.Helper()
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	return r.Stdout
}

// metric returns the daemon's current value of a metric (summed over its
// labels), 0 when /metrics cannot be read.
func metric(d *daemon.Daemon, name string) float64 {
	m, err := d.Metrics()
	if err != nil {
		return 0
	}
	return m[name]
}
