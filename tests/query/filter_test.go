package query_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stenographer-ng/stenographer/tests/internal/gen"
	"github.com/stenographer-ng/stenographer/tests/internal/pcapfile"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// filterCases pair an index query with a server-side filter that implies
// it (every packet tcpdump's expression selects has the query's key), so
// the result must be exactly what tcpdump selects with the filter alone.
// (The index's `udp` leaves out non-first fragments, which tcpdump's
// keeps: a udp filter goes with a time query.)
var filterCases = []struct{ query, filter string }{
	{everyPacket, "tcp[tcpflags] & tcp-syn != 0"},
	{everyPacket, "udp and greater 200"},
	{everyPacket, "vlan"},
	{everyPacket, "ether broadcast or ether multicast"},
	{everyPacket, "ip6 and udp and not port 53"},
	{"tcp", "tcp and (port 80 or port 443)"},
}

// everyPacket is a time query every capture of the corpus passes (some
// are stamped in 1970).
const everyPacket = "before 2100-01-01T00:00:00Z"

// TestFilter refines index queries with tcpdump expressions (stenoquery
// --filter, the path the daemon's Steno-Filter takes) on the generated
// traffic and, when the corpus is there, on every corpus capture: each
// result is, packet for packet, what tcpdump selects from the original
// file. An expression that libpcap refuses fails with its message.
func TestFilter(t *testing.T) {
	testenv.RequireTools(t, "tcpdump")
	generated := generatedPcap(t)
	im := &imports{dirs: map[string]string{}}
	t.Run("generated", func(t *testing.T) {
		checkFilters(t, im, []string{generated})
		r := testenv.Run(timeout, testenv.Binary(t, "stenoquery"), "--dir="+im.dir(t, generated), "--filter", "port", "tcp")
		if r.Err == nil || !bytes.Contains(r.Stderr, []byte("invalid filter")) || !strings.Contains(string(r.Stderr), "syntax error") {
			t.Errorf("a filter libpcap refuses: %v, stderr %q; want a failure with libpcap's message", r.Err, r.Stderr)
		}
	})
	t.Run("corpus", func(t *testing.T) {
		corpus, _ := filepath.Glob(filepath.Join(testenv.PcapDir(t), "*.pcap"))
		checkFilters(t, im, corpus)
	})
}

// generatedPcap writes the generated traffic (every encapsulation the
// indexer follows) to a pcap that stenotype, importing as nobody, can read.
func generatedPcap(t *testing.T) string {
	t.Helper()
	tmp, err := os.MkdirTemp("/var/tmp", "steno-generated-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	if err := os.Chmod(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	generated := filepath.Join(tmp, "generated.pcap")
	if _, err := gen.WritePcap(generated, false); err != nil {
		t.Fatal(err)
	}
	return generated
}

func checkFilters(t *testing.T, im *imports, files []string) {
	matched := 0
	for _, pcap := range files {
		dir := im.dir(t, pcap)
		for _, tc := range filterCases {
			ours, err := pcapfile.Parse(stenoquery(t, dir, "--filter", tc.filter, tc.query))
			if err != nil {
				t.Fatalf("%s %q: stenoquery output is not a pcap: %v", pcap, tc.filter, err)
			}
			theirs, err := pcapfile.Parse(testenv.MustRun(t, timeout, "tcpdump", "-r", pcap, "-w", "-", tc.filter))
			if err != nil {
				t.Fatal(err)
			}
			samePackets(t, filepath.Base(pcap)+" "+tc.query+" --filter "+tc.filter, theirs.Packets, ours.Packets)
			matched += len(ours.Packets)
		}
	}
	if matched == 0 {
		t.Error("no filter matched a packet: the comparison proves nothing")
	}
}
