// Package capture_test runs the real stenotype and stenodump binaries:
// offline import of the shared corpus and of a generated pcap, reading the
// reference implementation's files, and live capture on a veth pair in
// private network namespaces. Packets are compared byte for byte with what
// was sent, and index keys key by key with the Go oracle
// (tests/internal/oracle), which is written from the indexing rules.
package capture_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stenographer-ng/stenographer/tests/internal/gen"
	"github.com/stenographer-ng/stenographer/tests/internal/oracle"
	"github.com/stenographer-ng/stenographer/tests/internal/pcapfile"
)

// maxReports bounds how many mismatches one check prints.
const maxReports = 12

// reporter prints the first maxReports problems of a check and a total.
type reporter struct {
	t     testing.TB
	what  string
	count int
}

func (r *reporter) errorf(format string, args ...any) {
	r.t.Helper()
	r.count++
	if r.count <= maxReports {
		r.t.Errorf(r.what+": "+format, args...)
	}
}

func (r *reporter) done() {
	r.t.Helper()
	if r.count > maxReports {
		r.t.Errorf("%s: %d mismatches in all (first %d shown)", r.what, r.count, maxReports)
	}
}

// checkKeys compares, packet by packet, the index's keys with the oracle's
// keys of the frame. label(i) names packet i in messages.
func checkKeys(t testing.TB, what string, frames [][]byte, got []oracle.Set, label func(i int) string) {
	t.Helper()
	r := &reporter{t: t, what: what}
	if len(frames) != len(got) {
		r.errorf("%d frames but %d key sets", len(frames), len(got))
	}
	for i := 0; i < len(frames) && i < len(got); i++ {
		want := oracle.Keys(frames[i])
		missing, extra := oracle.Diff(want, got[i])
		if len(missing)+len(extra) > 0 {
			r.errorf("%s: index keys differ from the oracle: missing %v, extra %v (oracle %v, frame %s)",
				label(i), missing, extra, want, hexHead(frames[i], 64))
		}
	}
	r.done()
}

// hexHead shows the first n bytes of a frame.
func hexHead(b []byte, n int) string {
	if len(b) > n {
		return fmt.Sprintf("%x... (%d bytes)", b[:n], len(b))
	}
	return fmt.Sprintf("%x (%d bytes)", b, len(b))
}

// firstDiff returns the first differing byte offset of a and b, or -1.
func firstDiff(a, b []byte) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

func frameDiff(want, got []byte) string {
	d := firstDiff(want, got)
	lo := max(0, d-8)
	return fmt.Sprintf("lengths %d/%d, first difference at byte %d: want %x got %x", len(want), len(got), d,
		want[lo:min(len(want), d+16)], got[lo:min(len(got), d+16)])
}

// frames returns the data of packets.
func frames(ps []pcapfile.Packet) [][]byte {
	out := make([][]byte, len(ps))
	for i, p := range ps {
		out[i] = p.Data
	}
	return out
}

// readableDir returns a temporary directory any user can read, for input
// files stenotype may open after dropping privileges.
func readableDir(t testing.TB) string {
	t.Helper()
	d := t.TempDir()
	for _, x := range []string{filepath.Dir(d), d} {
		if err := os.Chmod(x, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// generatedPcap writes the generated pcap (tests/internal/gen) where
// stenotype can read it after dropping privileges, and reads it back.
func generatedPcap(t testing.TB) (string, []gen.Case, *pcapfile.File) {
	t.Helper()
	path := filepath.Join(readableDir(t), "generated.pcap")
	cases, err := gen.WritePcap(path, false)
	if err != nil {
		t.Fatal(err)
	}
	orig, err := pcapfile.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, cases, orig
}

// countMatches evaluates a query on per-packet key sets.
func countMatches(q oracle.Query, sets []oracle.Set) int {
	n := 0
	for _, s := range sets {
		if q.Match(s) {
			n++
		}
	}
	return n
}

// equalMultiset reports whether a and b hold the same frames, any order.
func equalMultiset(a, b [][]byte) (onlyA, onlyB int) {
	m := map[string]int{}
	for _, x := range a {
		m[string(x)]++
	}
	for _, x := range b {
		m[string(x)]--
	}
	for _, v := range m {
		if v > 0 {
			onlyA += v
		} else {
			onlyB -= v
		}
	}
	return onlyA, onlyB
}
