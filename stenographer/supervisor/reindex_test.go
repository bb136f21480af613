package supervisor

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A recovered packet file cut inside a block (a crash before stenotype cut
// a sparse file to its block multiple) gets its length back; the bytes it
// had stay, the tail reads as zeros.
func TestPadToBlock(t *testing.T) {
	r := reindexer{blockSize: 4096}
	for _, tc := range []struct{ size, want int64 }{
		{0, 0}, {4096, 4096}, {4097, 8192}, {8192 - 1, 8192}, {3 * 4096, 3 * 4096},
	} {
		p := filepath.Join(t.TempDir(), ".1000")
		data := bytes.Repeat([]byte{0xab}, int(tc.size))
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := r.padToBlock(p); err != nil {
			t.Fatalf("size %d: %v", tc.size, err)
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(got)) != tc.want || !bytes.Equal(got[:tc.size], data) || bytes.ContainsFunc(got[tc.size:], func(r rune) bool { return r != 0 }) {
			t.Errorf("size %d: padded to %d bytes, want %d with the data kept and zeros after", tc.size, len(got), tc.want)
		}
	}
	if err := r.padToBlock(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing file: %v, want an error naming it", err)
	}
}
