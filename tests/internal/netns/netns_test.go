package netns_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/tests/internal/gen"
	"github.com/stenographer-ng/stenographer/tests/internal/netns"
	"github.com/stenographer-ng/stenographer/tests/internal/pcapfile"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// TestPairCarriesOnlyOurFrames checks the link the live tests rely on:
// tcpdump on the capture end sees exactly the frames tcpreplay sent from
// the other end (no neighbour discovery or other stray traffic), with
// kernel-stripped VLAN tags put back by libpcap.
func TestPairCarriesOnlyOurFrames(t *testing.T) {
	testenv.RequireTools(t, "tcpdump", "tcpreplay")
	p := netns.NewPair(t)
	for _, e := range []struct{ ns, ifc string }{{p.CaptureNS, p.CaptureIf}, {p.SenderNS, p.SenderIf}} {
		r := testenv.Run(testenv.Deadline, "ip", "-n", e.ns, "-o", "addr", "show", "dev", e.ifc)
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		if strings.Contains(string(r.Stdout), "inet") {
			t.Errorf("%s has addresses: %s", e.ifc, r.Stdout)
		}
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "in.pcap")
	cases, err := gen.WritePcap(in, true)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.pcap")
	var stderr bytes.Buffer
	cmd := p.Capture("tcpdump", "-i", p.CaptureIf, "-w", out, "-U", "-s", "0", "-n")
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(testenv.Deadline)
	for !strings.Contains(stderr.String(), "listening on") {
		if time.Now().After(deadline) {
			t.Fatalf("tcpdump did not start: %s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // room for stray traffic to show up, if any
	if r := p.RunSender(testenv.Deadline, "tcpreplay", "-i", p.SenderIf, "--pps=500", in); r.Err != nil {
		t.Fatal(r.Err)
	}
	time.Sleep(time.Second)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	got, err := pcapfile.Read(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Packets) != len(cases) {
		t.Errorf("captured %d frames, sent %d", len(got.Packets), len(cases))
	}
	for i := 0; i < len(cases) && i < len(got.Packets); i++ {
		if !bytes.Equal(got.Packets[i].Data, cases[i].Data) {
			t.Errorf("frame %d (%s): got %x, sent %x", i, cases[i].Name, got.Packets[i].Data, cases[i].Data)
		}
	}
	if _, err := os.Stat("/var/run/netns/" + p.CaptureNS); err != nil {
		t.Errorf("namespace missing during the test: %v", err)
	}
}

// TestCleanupRemovesNamespaces checks that a pair is gone after its test.
func TestCleanupRemovesNamespaces(t *testing.T) {
	var p *netns.Pair
	t.Run("create", func(t *testing.T) { p = netns.NewPair(t) })
	if p == nil {
		t.Fatal("no pair")
	}
	for _, ns := range []string{p.CaptureNS, p.SenderNS} {
		if _, err := os.Stat("/var/run/netns/" + ns); err == nil {
			t.Errorf("namespace %s still exists after its test ended", ns)
		}
	}
	r := testenv.Run(testenv.Deadline, "ip", "-o", "link", "show")
	if strings.Contains(string(r.Stdout), p.CaptureIf) || strings.Contains(string(r.Stdout), p.SenderIf) {
		t.Errorf("veth left in the root namespace")
	}
}
