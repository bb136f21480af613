package capture_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stenographer-ng/stenographer/tests/internal/pcapfile"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// TestSanitizers runs the write paths of the ASan+UBSan build
// (build/asan/stenotype): offline import of the generated pcap (two block
// sizes, rotation) and of every corpus pcap, and a short live capture on a
// veth pair. Any sanitizer report fails the test; the stored data is
// checked as in the plain tests.
func TestSanitizers(t *testing.T) {
	testenv.RequireRoot(t)
	bin := asanStenotype(t)
	t.Run("import generated", func(t *testing.T) {
		path, _, orig := generatedPcap(t)
		for _, bs := range []int{1024, 4} {
			dir := testenv.OutputDir(t, 1)
			importInto(t, bin, dir, path, fmt.Sprintf("--blocksize_kb=%d", bs), "--aiops=4", "--fileage_sec=1")
			checkImport(t, "generated.pcap", orig, dir, bs, nil)
		}
	})
	t.Run("import corpus", func(t *testing.T) {
		files, err := filepath.Glob(filepath.Join(testenv.PcapDir(t), "*.pcap"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no corpus pcaps: %v", err)
		}
		for _, path := range files {
			t.Run(filepath.Base(path), func(t *testing.T) {
				t.Parallel()
				orig, err := pcapfile.Read(path)
				if err != nil {
					t.Fatal(err)
				}
				if orig.LinkType != 1 {
					t.Skipf("link type %d is not Ethernet", orig.LinkType)
				}
				dir := testenv.OutputDir(t, 1)
				importInto(t, bin, dir, path, "--filesize_mb=2")
				checkImport(t, filepath.Base(path), orig.LibpcapView(), dir, 1024, nil)
			})
		}
	})
	t.Run("live", func(t *testing.T) {
		res := runLive(t, liveConfig{threads: 2, pcaps: []string{generatedLivePcap(t)}, pps: 500, bin: bin,
			flags: []string{"--fileage_sec=1"}, minFiles: 1})
		var all [][]byte
		for _, s := range res.stored {
			all = append(all, frames(s.Packets)...)
		}
		if a, b := equalMultiset(frames(res.expected), all); a != 0 || b != 0 {
			t.Errorf("%d replayed frames missing, %d stored frames not replayed", a, b)
		}
	})
}
