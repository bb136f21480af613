package scripts

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/stenographer/server"
	"github.com/stenographer-ng/stenographer/stenographer/server/servertest"
	"github.com/stenographer-ng/stenographer/stenographer/store"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// captureDown is a supervisor whose stenotype has not run since a time.
type captureDown time.Time

func (c captureDown) CaptureState() (bool, time.Time) { return false, time.Time(c) }

// TestStenoreadWarnings runs stenoread against the real HTTPS server over
// a store in which one index file is garbage, while capture is down: the
// packets of every other file reach tcpdump, and stenoread says on stderr
// that a file could not be read (exiting 3) and that capture is down.
func TestStenoreadWarnings(t *testing.T) {
	testenv.RequireTools(t, "tcpdump", "curl")
	_, certs := makeCerts(t, "nobody", "nogroup", "127.0.0.1")
	// 2000 packets, 100 per file and thread: spoiling one index file
	// loses 100 of them.
	layout := servertest.Layout{Packets: 2000, PerFile: 200, Step: 100 * time.Millisecond}
	dir := t.TempDir()
	st := servertest.StoreIn(t, dir, layout)
	bad := st.Files(1)[3]
	badPath := filepath.Join(dir, "IDX1", bad.Name)
	if err := os.WriteFile(badPath, []byte(strings.Repeat("not an index ", 400)), 0o644); err != nil {
		t.Fatal(err)
	}
	down := time.Now().Add(-time.Hour).Truncate(time.Second)
	config := serveStore(t, certs, st, captureDown(down))

	stdout, stderr, status := script(t, config, nil, "stenoread", "after 3h ago", "-n")
	if status != 3 {
		t.Errorf("exit status %d, want 3 (a file could not be read); stderr:\n%s", status, stderr)
	}
	if n := lines(stdout); n != layout.Packets-100 {
		t.Errorf("tcpdump printed %d packets, want the %d of the readable files", n, layout.Packets-100)
	}
	for _, want := range []string{
		`stenoread: warning: 1 file\(s\) could not be read; the result lacks their packets: .*` + regexp.QuoteMeta(bad.Name),
		`stenoread: warning: capture is down since ` + regexp.QuoteMeta(down.UTC().Format(time.RFC3339)),
	} {
		if !regexp.MustCompile(want).MatchString(stderr) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

// TestStenoreadExplain: `stenoread --explain` prints what the real HTTPS
// server says a query would touch, reading indexes only; a bad query
// prints the server's reason and exits 1.
func TestStenoreadExplain(t *testing.T) {
	testenv.RequireTools(t, "curl")
	config := realServer(t, nil)

	stdout, stderr, status := script(t, config, nil, "stenoread", "--explain", "port 1003")
	if status != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", status, stderr)
	}
	for _, want := range []string{"query: port 1003\n", "files: 20\n", "indexes read: 20\n", "candidate packets: 200\n", "unreadable files: 0\n"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	_, stderr, status = script(t, config, nil, "stenoread", "--explain", "port")
	if status == 0 || !strings.Contains(stderr, "port") {
		t.Errorf("a bad query: exit status %d, stderr %q; want a failure naming the problem", status, stderr)
	}
}

// TestStenoreadFilter: `stenoread --filter EXPR` has the real HTTPS server
// refine the result (only the packets EXPR accepts reach tcpdump); one
// that libpcap refuses prints its message and exits 1.
func TestStenoreadFilter(t *testing.T) {
	testenv.RequireTools(t, "tcpdump", "curl")
	config := realServer(t, nil)

	// The frames' first byte is their number mod 256: 7, 263, ..., 1799.
	stdout, stderr, status := script(t, config, nil, "stenoread", "--filter", "ether[0] = 7", "after 3h ago", "-n")
	if status != 0 || lines(stdout) != 8 {
		t.Errorf("exit status %d, %d packets printed, want 0 and 8; stderr:\n%s", status, lines(stdout), stderr)
	}
	_, stderr, status = script(t, config, nil, "stenoread", "--filter=port", "after 3h ago", "-n")
	if status != 1 || !strings.Contains(stderr, "syntax error") {
		t.Errorf("a filter libpcap refuses: exit status %d, stderr %q; want 1 and libpcap's message", status, stderr)
	}
}

// realServer serves a store of 2000 packets (servertest's layout, 200 per
// file) with the real HTTPS server and returns a client config for it.
func realServer(t *testing.T, capture server.CaptureState) string {
	t.Helper()
	_, certs := makeCerts(t, "nobody", "nogroup", "127.0.0.1")
	st := servertest.Store(t, servertest.Layout{Packets: 2000, PerFile: 200, Step: 100 * time.Millisecond})
	return serveStore(t, certs, st, capture)
}

// serveStore serves st with the real HTTPS server and the certificates in
// certs, and returns a client config for it.
func serveStore(t *testing.T, certs string, st *store.Store, capture server.CaptureState) string {
	t.Helper()
	srv, err := server.New(server.Config{Addr: "127.0.0.1:0", CertPath: certs, Store: st, Capture: capture})
	if err != nil {
		t.Fatal(err)
	}
	servertest.Serve(t, srv)
	_, port, _ := net.SplitHostPort(srv.Addr().String())
	p, _ := strconv.Atoi(port)
	return writeConfig(t, t.TempDir(), "127.0.0.1", p, certs)
}
