package query_test

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stenographer-ng/stenographer/tests/internal/pcapfile"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// TestFilterLibpcapLoadedOnUse builds stenoquery from cmd/stenoquery and
// checks that libpcap is not among its dynamic dependencies (the loader
// would map it and its own at every start), that a filtered query still
// selects what tcpdump selects, and that with libpcap hidden (an empty
// file bound over it in a private mount namespace) a query without a
// filter still answers while a filtered one fails naming libpcap.
func TestFilterLibpcapLoadedOnUse(t *testing.T) {
	testenv.RequireTools(t, "tcpdump", "go")
	bin := filepath.Join(t.TempDir(), "stenoquery")
	build := exec.Command("go", "build", "-o", bin, "./cmd/stenoquery")
	build.Dir = testenv.Root(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/stenoquery: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	needed, err := f.ImportedLibraries()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, lib := range needed {
		if strings.Contains(lib, "libpcap") {
			t.Errorf("stenoquery needs %s at start (DT_NEEDED %v)", lib, needed)
		}
	}

	generated := generatedPcap(t)
	dir := (&imports{dirs: map[string]string{}}).dir(t, generated)
	const filter = "tcp and (port 80 or port 443)"
	theirs, err := pcapfile.Parse(testenv.MustRun(t, timeout, "tcpdump", "-r", generated, "-w", "-", filter))
	if err != nil {
		t.Fatal(err)
	}
	ours, err := pcapfile.Parse(testenv.MustRun(t, timeout, bin, "--dir="+dir, "--filter", filter, "tcp"))
	if err != nil {
		t.Fatal(err)
	}
	if len(theirs.Packets) == 0 {
		t.Fatalf("tcpdump selects nothing with %q: the comparison proves nothing", filter)
	}
	samePackets(t, "--filter "+filter, theirs.Packets, ours.Packets)

	t.Run("hidden", func(t *testing.T) {
		testenv.RequireRoot(t)
		testenv.RequireTools(t, "unshare", "mount", "ldconfig")
		empty := filepath.Join(t.TempDir(), "empty.so")
		if err := os.WriteFile(empty, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		script := ""
		for _, lib := range libpcapFiles(t) {
			script += "mount --bind " + empty + " " + lib + " && "
		}
		hidden := func(args ...string) testenv.Result {
			return testenv.Run(timeout, "unshare", append([]string{"--mount", "--propagation", "private", "--", "sh", "-c", script + `exec "$@"`, "sh", bin, "--dir=" + dir}, args...)...)
		}
		plain := testenv.MustRun(t, timeout, bin, "--dir="+dir, "tcp")
		if r := hidden("tcp"); r.Err != nil || !bytes.Equal(r.Stdout, plain) {
			t.Errorf("a query without a filter, libpcap hidden: %v; %d bytes, want the %d of a normal run", r.Err, len(r.Stdout), len(plain))
		}
		r := hidden("--filter", filter, "tcp")
		if r.Err == nil || !strings.Contains(string(r.Stderr), "libpcap") || !strings.Contains(string(r.Stderr), "could not be loaded") {
			t.Errorf("a filter, libpcap hidden: %v, stderr %q; want a failure naming libpcap", r.Err, r.Stderr)
		}
		if len(r.Stdout) != 0 {
			t.Errorf("a refused filter wrote %d bytes", len(r.Stdout))
		}
	})
}

// libpcapFiles returns the files behind every libpcap the dynamic loader
// knows of.
func libpcapFiles(t *testing.T) []string {
	t.Helper()
	seen := map[string]bool{}
	var files []string
	for _, line := range strings.Split(string(testenv.MustRun(t, timeout, "ldconfig", "-p")), "\n") {
		_, path, ok := strings.Cut(line, " => ")
		if !ok || !strings.Contains(filepath.Base(path), "libpcap.so") {
			continue
		}
		real, err := filepath.EvalSymlinks(strings.TrimSpace(path))
		if err != nil || seen[real] {
			continue
		}
		seen[real] = true
		files = append(files, real)
	}
	if len(files) == 0 {
		t.Fatal("ldconfig -p lists no libpcap")
	}
	return files
}
