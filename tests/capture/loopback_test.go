package capture_test

import (
	"bytes"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/tests/internal/netns"
	"github.com/stenographer-ng/stenographer/tests/internal/pcapfile"
	"github.com/stenographer-ng/stenographer/tests/internal/steno"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// TestLiveLoopback captures on the loopback device of a private namespace,
// where the kernel shows every packet twice (leaving and arriving): like
// tcpdump, stenotype must store each packet once.
func TestLiveLoopback(t *testing.T) {
	testenv.RequireTools(t, "tcpdump", "bash")
	stenotype := testenv.Stenotype(t)
	pair := netns.NewPair(t)
	if r := testenv.Run(testenv.Deadline, "ip", "-n", pair.CaptureNS, "link", "set", "lo", "up"); r.Err != nil {
		t.Fatalf("lo up: %v", r.Err)
	}
	dir := testenv.OutputDir(t, 1)
	st := startProc(t, "stenotype", pair.Capture(stenotype, "--iface=lo", "--dir="+dir, "--blocks=16",
		"--blockage_sec=1", "--stats_sec=1", "--seccomp=kill"))
	waitFor(t, "stenotype's first STATS line", st, 30*time.Second, func() bool {
		return len(steno.LastStats(st.stderr.Bytes())) >= 1
	})
	witness := filepath.Join(t.TempDir(), "witness.pcap")
	td := startProc(t, "tcpdump", pair.Capture("tcpdump", "-i", "lo", "-w", witness, "-U", "-s", "0", "-n", "--immediate-mode"))
	waitFor(t, "tcpdump to listen", td, 30*time.Second, func() bool {
		return bytes.Contains(td.stderr.Bytes(), []byte("listening on"))
	})

	// Datagrams to a closed port: each also brings an ICMP port-unreachable
	// back, so both directions of loopback traffic are exercised.
	const datagrams = 5
	send := `for i in 1 2 3 4 5; do echo "steno $i" > /dev/udp/127.0.0.1/9; sleep 0.1; done`
	if r := pair.RunCapture(time.Minute, "bash", "-c", send); r.Err != nil {
		t.Fatalf("sending on lo: %v", r.Err)
	}
	var seen int
	waitFor(t, "tcpdump to write the datagrams", td, 30*time.Second, func() bool {
		f, err := pcapfile.Read(witness)
		if err == nil {
			seen = len(f.Packets)
		}
		return seen >= datagrams
	})
	waitUntil(st, 10*time.Second, func() bool { // the ring block retires after 1 s
		s := steno.LastStats(st.stderr.Bytes())
		return len(s) == 1 && s[0].Packets >= uint64(seen)
	})
	if err := st.stop(t, syscall.SIGTERM, 60*time.Second); err != nil {
		t.Errorf("stenotype exit after SIGTERM: %v; stderr:\n%s", err, testenv.Tail(st.stderr.Bytes(), 3000))
	}
	_ = td.stop(t, syscall.SIGTERM, 30*time.Second)
	w, err := pcapfile.Read(witness)
	if err != nil {
		t.Fatal(err)
	}
	stored := steno.ReadThread(t, dir, 0, blocksizeKB)
	if len(w.Packets) < datagrams {
		t.Errorf("tcpdump saw %d packets on lo, want at least the %d datagrams sent", len(w.Packets), datagrams)
	}
	checkSequence(t, "packets stored from lo vs tcpdump's", w.Packets, stored.Packets)
}
