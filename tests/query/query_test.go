// Package query_test checks the read side end to end: corpus files imported
// with `stenotype --pcap_in`, queried with `stenoquery`, compared with
// tcpdump on the original files.
package query_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/tests/internal/oracle"
	"github.com/stenographer-ng/stenographer/tests/internal/pcapfile"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

const timeout = 2 * time.Minute

// imports holds one import per corpus file, shared by the tests.
type imports struct {
	mu   sync.Mutex
	dirs map[string]string
}

func (im *imports) dir(t *testing.T, pcap string) string {
	im.mu.Lock()
	defer im.mu.Unlock()
	if d, ok := im.dirs[pcap]; ok {
		return d
	}
	d := testenv.OutputDir(t, 1)
	testenv.MustRun(t, timeout, testenv.Stenotype(t), "--pcap_in="+pcap, "--dir="+d, "-q")
	im.dirs[pcap] = d
	return d
}

func stenoquery(t *testing.T, dir string, args ...string) []byte {
	t.Helper()
	return testenv.MustRun(t, timeout, testenv.Binary(t, "stenoquery"), append([]string{"--dir=" + dir}, args...)...)
}

// TestOracle answers every row of oracle.tsv from the index and compares
// the count with tcpdump's; for a dozen rows the PCAP itself must equal
// `tcpdump -r FILE -w - FILTER` packet for packet (microsecond timestamps).
func TestOracle(t *testing.T) {
	pcaps := testenv.PcapDir(t)
	rows, err := oracle.ReadTSV(filepath.Join(pcaps, "oracle.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	im := &imports{dirs: map[string]string{}}
	compared := 0
	for i, row := range rows {
		pcap := filepath.Join(pcaps, row.File)
		dir := im.dir(t, pcap)
		got := strings.TrimSpace(string(stenoquery(t, dir, "--count", row.Query)))
		if got != strconv.Itoa(row.Count) {
			t.Errorf("%s: %q = %s packets, tcpdump says %d", row.File, row.Query, got, row.Count)
			continue
		}
		if i%4 != 0 || compared >= 12 {
			continue
		}
		compared++
		ours, err := pcapfile.Parse(stenoquery(t, dir, row.Query))
		if err != nil {
			t.Fatalf("%s: stenoquery output is not a pcap: %v", row.Query, err)
		}
		theirs, err := pcapfile.Parse(testenv.MustRun(t, timeout, "tcpdump", "-r", pcap, "-w", "-", row.TcpdumpFilter))
		if err != nil {
			t.Fatal(err)
		}
		samePackets(t, row.File+" "+row.Query, theirs.Packets, ours.Packets)
	}
	if compared < 12 {
		t.Errorf("compared only %d results byte for byte", compared)
	}
}

// bigFrame is the least that stenotype keeps of a longer frame.
const bigFrame = 65535

func samePackets(t *testing.T, what string, want, got []pcapfile.Packet) {
	t.Helper()
	if len(want) != len(got) {
		t.Errorf("%s: %d packets, tcpdump selects %d", what, len(got), len(want))
		return
	}
	for i := range want {
		w, g := want[i], got[i]
		if len(g.Data) >= bigFrame && len(w.Data) > len(g.Data) {
			// The import keeps what fits a block's largest frame (and
			// libpcap cuts a record at its file's snaplen).
			w.Data = w.Data[:len(g.Data)]
		}
		if !bytes.Equal(w.Data, g.Data) || w.WireLen != g.WireLen || !w.Time.Truncate(time.Microsecond).Equal(g.Time) {
			t.Errorf("%s: packet %d differs (len %d/%d, wire %d/%d, time %v/%v)", what, i,
				len(g.Data), len(w.Data), g.WireLen, w.WireLen, g.Time, w.Time)
			return
		}
	}
}

// TestTimeBounds checks before/after against the packets' own timestamps
// on a capture spanning several files (rotation every ten seconds of
// packet time), so that whole files are pruned by name.
func TestTimeBounds(t *testing.T) {
	pcap := filepath.Join(testenv.PcapDir(t), "pcapplusplus-tls2.pcap")
	orig, err := pcapfile.Read(pcap)
	if err != nil {
		t.Fatal(err)
	}
	view := orig.LibpcapView().Packets
	dir := testenv.OutputDir(t, 1)
	testenv.MustRun(t, timeout, testenv.Stenotype(t), "--pcap_in="+pcap, "--dir="+dir, "--fileage_sec=10", "-q")
	if n, _ := os.ReadDir(filepath.Join(dir, "PKT0")); len(n) < 3 {
		t.Fatalf("want several files to exercise pruning, got %d", len(n))
	}
	first, last := view[0].Time, view[len(view)-1].Time
	mid := first.Add(last.Sub(first) / 2).Truncate(time.Second)
	at := func(x time.Time) string { return x.UTC().Format(time.RFC3339Nano) }
	count := func(keep func(time.Time) bool) int {
		n := 0
		for _, p := range view {
			if keep(p.Time.Truncate(time.Microsecond)) {
				n++
			}
		}
		return n
	}
	tests := []struct {
		q    string
		want int
	}{
		{"after " + at(mid), count(func(x time.Time) bool { return x.After(mid) })},
		{"before " + at(mid), count(func(x time.Time) bool { return x.Before(mid) })},
		{"after " + at(mid.Add(-time.Second)) + " and before " + at(mid.Add(time.Second)),
			count(func(x time.Time) bool { return x.After(mid.Add(-time.Second)) && x.Before(mid.Add(time.Second)) })},
		{"tcp and after " + at(mid), -1},
		{"after " + at(last.Add(time.Hour)), 0},
		{"before " + at(first), 0},
	}
	for _, tc := range tests {
		got, _ := strconv.Atoi(strings.TrimSpace(string(stenoquery(t, dir, "--count", tc.q))))
		if tc.want == -1 {
			// tcp and after X: tcpdump counts tcp; the time part is ours.
			out := testenv.MustRun(t, timeout, "tcpdump", "-nr", pcap, "--count", "tcp and (ip or ip6)")
			total, _ := strconv.Atoi(strings.Fields(string(out))[0])
			if got <= 0 || got >= total {
				t.Errorf("%q = %d packets, want some but fewer than all %d tcp packets", tc.q, got, total)
			}
			continue
		}
		if got != tc.want {
			t.Errorf("%q = %d packets, want %d", tc.q, got, tc.want)
		}
	}
	if count(func(time.Time) bool { return true }) < 100 {
		t.Fatal("capture too small to mean anything")
	}
}

// TestExplain shows the plan of a query per file.
func TestExplain(t *testing.T) {
	pcap := filepath.Join(testenv.PcapDir(t), "mercury-emix.pcap")
	dir := testenv.OutputDir(t, 1)
	testenv.MustRun(t, timeout, testenv.Stenotype(t), "--pcap_in="+pcap, "--dir="+dir, "-q")
	out := string(stenoquery(t, dir, "--explain", "port 445 and net 192.168.122.0/24"))
	for _, want := range []string{"query: port 445 and net 192.168.122.0/24", "port 445", "net 192.168.122.0/24", "candidates"} {
		if !strings.Contains(out, want) {
			t.Errorf("--explain output lacks %q:\n%s", want, out)
		}
	}
}

// TestBadQueries: a bad query is a clear error with a non-zero exit.
func TestBadQueries(t *testing.T) {
	dir := testenv.OutputDir(t, 1)
	for _, q := range []string{"port 70000", "host example.com", "tcp and", "(udp"} {
		r := testenv.Run(timeout, testenv.Binary(t, "stenoquery"), "--dir="+dir, "--count", q)
		if r.Err == nil || !strings.Contains(string(r.Stderr), "invalid query at position") {
			t.Errorf("%q: err %v, stderr %s", q, r.Err, r.Stderr)
		}
	}
}
