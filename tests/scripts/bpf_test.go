package scripts

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// TestCompileBPF: compile_bpf.sh takes the reference's argument order
// (IFACE FILTER..., the filter in several words) and the older 'FILTER'
// [IFACE], and prints the program tcpdump -ddd compiles, as stenotype's
// --filter hex; a filter tcpdump refuses, or an interface that does not
// exist, fails with tcpdump's reason.
func TestCompileBPF(t *testing.T) {
	testenv.RequireRoot(t) // tcpdump opens the interface to learn its link type
	testenv.RequireTools(t, "tcpdump")
	script := testenv.Script(t, "compile_bpf.sh")
	const filter = "udp port 53"
	var want strings.Builder
	lines := strings.Split(strings.TrimSpace(string(testenv.MustRun(t, timeout, "tcpdump", "-ddd", "-i", "lo", filter))), "\n")
	for _, l := range lines[1:] {
		var code, jt, jf, k uint32
		if _, err := fmt.Sscan(l, &code, &jt, &jf, &k); err != nil {
			t.Fatalf("tcpdump -ddd line %q: %v", l, err)
		}
		fmt.Fprintf(&want, "%04x%02x%02x%08x", code, jt, jf, k)
	}
	for _, args := range [][]string{
		{"lo", "udp", "port", "53"}, // the reference's order
		{"lo", filter},
		{filter, "lo"}, // the older order
		{filter},       // Ethernet, as lo is
	} {
		got := strings.TrimSpace(string(testenv.MustRun(t, timeout, script, args...)))
		if got != want.String() {
			t.Errorf("compile_bpf.sh %q = %s, want %s", args, got, want.String())
		}
	}
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"lo", "udp", "port"}, "syntax error"},
		{[]string{"nosuchif0", "udp", "port", "53"}, "nosuchif0"},
		{nil, "usage"},
	} {
		r := testenv.Run(timeout, script, tc.args...)
		if r.Err == nil || !strings.Contains(string(r.Stderr), tc.says) || len(bytes.TrimSpace(r.Stdout)) != 0 {
			t.Errorf("compile_bpf.sh %q: err %v, stdout %q, stderr %q; want a failure saying %q", tc.args, r.Err, r.Stdout, r.Stderr, tc.says)
		}
	}
}
