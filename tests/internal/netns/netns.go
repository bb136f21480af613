// Package netns gives a test a private link to capture on: two network
// namespaces joined by a veth pair, one end for the capturer and one for the
// sender. Nothing else lives in either namespace and IPv6 is disabled before
// the links come up, so the only frames on the link are the ones the test
// sends (no neighbour discovery, MLD or router solicitations).
//
// Names carry the test process id (prefix "stt"), so parallel runs never
// collide and leftovers of crashed runs are recognised and removed by the
// next run. Everything is done with the real `ip`, `sysctl` and `ethtool`.
package netns

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// Prefix starts every namespace and interface name this package creates.
const Prefix = "stt"

// MTU of both veth ends: large enough for any frame the tests replay.
const MTU = 9000

var counter atomic.Int32

// Pair is a veth pair whose ends sit in two namespaces.
type Pair struct {
	CaptureNS, SenderNS string   // namespace names
	CaptureIf, SenderIf string   // interface names (each in its namespace)
	owned               []string // the namespaces this pair made (destroy removes them)
}

// NewPair creates the namespaces and the veth pair, brings the links up and
// registers their removal with t.Cleanup (which runs even when t fails).
// It first removes leftovers of earlier runs whose process is gone.
func NewPair(t testing.TB) *Pair {
	t.Helper()
	return newPair(t, "")
}

// AddPair gives p's capture namespace one more link: a new veth pair to
// a new sender namespace (removed at test end), for a capturer of
// several interfaces.
func (p *Pair) AddPair(t testing.TB) *Pair {
	t.Helper()
	return newPair(t, p.CaptureNS)
}

// newPair makes a pair in captureNS, or in a new capture namespace when
// it is "".
func newPair(t testing.TB, captureNS string) *Pair {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "ip", "sysctl")
	SweepStale(t)

	pid := os.Getpid()
	n := counter.Add(1)
	p := &Pair{
		CaptureNS: fmt.Sprintf("%s-%d-%d-cap", Prefix, pid, n),
		SenderNS:  fmt.Sprintf("%s-%d-%d-snd", Prefix, pid, n),
		// IFNAMSIZ is 16: "stt" + up to 7 pid digits + "x" + counter + side.
		CaptureIf: fmt.Sprintf("%s%dx%dc", Prefix, pid, n),
		SenderIf:  fmt.Sprintf("%s%dx%ds", Prefix, pid, n),
	}
	p.owned = []string{p.CaptureNS, p.SenderNS}
	if captureNS != "" {
		p.CaptureNS, p.owned = captureNS, []string{p.SenderNS}
	}
	t.Cleanup(func() { p.destroy(t) })

	for _, ns := range p.owned {
		mustIP(t, "netns", "add", ns)
		// Interfaces created in the namespace inherit "default".
		p.mustNS(t, ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
			"net.ipv6.conf.default.disable_ipv6=1")
	}
	mustIP(t, "link", "add", p.CaptureIf, "netns", p.CaptureNS, "mtu", strconv.Itoa(MTU),
		"type", "veth", "peer", "name", p.SenderIf, "netns", p.SenderNS, "mtu", strconv.Itoa(MTU))
	for _, e := range []struct{ ns, ifc string }{{p.CaptureNS, p.CaptureIf}, {p.SenderNS, p.SenderIf}} {
		p.mustNS(t, e.ns, "sysctl", "-q", "-w", "net.ipv6.conf."+e.ifc+".disable_ipv6=1")
		// Offloads would merge or split frames between sender and capturer;
		// not every veth feature is settable, so failures are only logged.
		if _, err := exec.LookPath("ethtool"); err == nil {
			r := testenv.Run(testenv.Deadline, "ip", "netns", "exec", e.ns, "ethtool", "-K", e.ifc,
				"gro", "off", "gso", "off", "tso", "off")
			if r.Err != nil {
				t.Logf("ethtool -K %s (ignored): %v", e.ifc, r.Err)
			}
		}
		mustIP(t, "-n", e.ns, "link", "set", e.ifc, "up")
	}
	return p
}

// Command returns a command that runs name inside namespace ns.
func Command(ns, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Capture / Sender build commands that run in the capture / sender namespace.
func (p *Pair) Capture(name string, args ...string) *exec.Cmd {
	return Command(p.CaptureNS, name, args...)
}
func (p *Pair) Sender(name string, args ...string) *exec.Cmd {
	return Command(p.SenderNS, name, args...)
}

// RunSender runs a command to completion in the sender namespace.
func (p *Pair) RunSender(timeout time.Duration, name string, args ...string) testenv.Result {
	return testenv.Run(timeout, "ip", append([]string{"netns", "exec", p.SenderNS, name}, args...)...)
}

// RunCapture runs a command to completion in the capture namespace.
func (p *Pair) RunCapture(timeout time.Duration, name string, args ...string) testenv.Result {
	return testenv.Run(timeout, "ip", append([]string{"netns", "exec", p.CaptureNS, name}, args...)...)
}

func (p *Pair) mustNS(t testing.TB, ns, name string, args ...string) {
	t.Helper()
	r := testenv.Run(testenv.Deadline, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
}

func mustIP(t testing.TB, args ...string) {
	t.Helper()
	if r := testenv.Run(testenv.Deadline, "ip", args...); r.Err != nil {
		t.Fatal(r.Err)
	}
}

// destroy removes the namespaces the pair made; deleting a namespace
// destroys the veth end inside it, and with it the peer.
func (p *Pair) destroy(t testing.TB) {
	for _, ns := range p.owned {
		if !namespaceExists(ns) {
			continue
		}
		if r := testenv.Run(testenv.Deadline, "ip", "netns", "del", ns); r.Err != nil {
			t.Errorf("cleanup: %v", r.Err)
		}
	}
}

func namespaceExists(ns string) bool {
	_, err := os.Stat("/var/run/netns/" + ns)
	return err == nil
}

// SweepStale deletes namespaces and root-namespace links with our prefix
// whose creating process no longer runs (a crashed or killed earlier run).
func SweepStale(t testing.TB) {
	t.Helper()
	r := testenv.Run(testenv.Deadline, "ip", "netns", "list")
	if r.Err == nil {
		for _, line := range strings.Split(string(r.Stdout), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 || !strings.HasPrefix(f[0], Prefix+"-") {
				continue
			}
			parts := strings.Split(f[0], "-")
			if len(parts) < 2 {
				continue
			}
			if pid, err := strconv.Atoi(parts[1]); err == nil && !alive(pid) {
				if rr := testenv.Run(testenv.Deadline, "ip", "netns", "del", f[0]); rr.Err != nil {
					t.Logf("sweep: %v", rr.Err)
				} else {
					t.Logf("sweep: removed stale namespace %s", f[0])
				}
			}
		}
	}
	r = testenv.Run(testenv.Deadline, "ip", "-o", "link", "show")
	if r.Err != nil {
		return
	}
	for _, line := range strings.Split(string(r.Stdout), "\n") {
		// "7: stt123x1c@if2: <...>"
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name := strings.TrimSuffix(f[1], ":")
		if i := strings.IndexByte(name, '@'); i >= 0 {
			name = name[:i]
		}
		if !strings.HasPrefix(name, Prefix) {
			continue
		}
		rest := strings.TrimPrefix(name, Prefix)
		x := strings.IndexByte(rest, 'x')
		if x <= 0 {
			continue
		}
		if pid, err := strconv.Atoi(rest[:x]); err == nil && !alive(pid) {
			if rr := testenv.Run(testenv.Deadline, "ip", "link", "del", name); rr.Err == nil {
				t.Logf("sweep: removed stale link %s", name)
			}
		}
	}
}

// alive reports whether process pid exists. A recycled pid keeps a
// leftover until that process ends, which is harmless; deleting the
// namespace of a concurrent run would not be.
func alive(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}

// NewNamespace creates one more namespace (role names it: "stt-PID-N-role")
// with lo up and IPv6 off, removed at test end. Tests that need a node
// beside the pairs (stenofleet reaching three sensors) use it with Link.
func NewNamespace(t testing.TB, role string) string {
	t.Helper()
	testenv.RequireRoot(t)
	SweepStale(t)
	ns := fmt.Sprintf("%s-%d-%d-%s", Prefix, os.Getpid(), counter.Add(1), role)
	mustIP(t, "netns", "add", ns)
	t.Cleanup(func() {
		if namespaceExists(ns) {
			if r := testenv.Run(testenv.Deadline, "ip", "netns", "del", ns); r.Err != nil {
				t.Errorf("cleanup: %v", r.Err)
			}
		}
	})
	r := testenv.Run(testenv.Deadline, "ip", "netns", "exec", ns, "sysctl", "-q", "-w",
		"net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	mustIP(t, "-n", ns, "link", "set", "lo", "up")
	return ns
}

// Link joins namespaces a and b with a veth pair and gives the ends the
// addresses addrA and addrB (CIDR form, e.g. 10.77.1.2/24). The ends go
// with their namespaces.
func Link(t testing.TB, a, b, addrA, addrB string) {
	t.Helper()
	n := counter.Add(1)
	ifA := fmt.Sprintf("%s%dx%da", Prefix, os.Getpid(), n)
	ifB := fmt.Sprintf("%s%dx%db", Prefix, os.Getpid(), n)
	mustIP(t, "link", "add", ifA, "netns", a, "type", "veth", "peer", "name", ifB, "netns", b)
	for _, e := range []struct{ ns, ifc, addr string }{{a, ifA, addrA}, {b, ifB, addrB}} {
		mustIP(t, "-n", e.ns, "addr", "add", e.addr, "dev", e.ifc)
		mustIP(t, "-n", e.ns, "link", "set", e.ifc, "up")
	}
}
