package capture_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// stenotypeBin is how a test runs stenotype: the plain build, or the
// ASan+UBSan build (build/asan/stenotype).
type stenotypeBin struct {
	path    string
	env     []string // NAME=value, set for the process only
	seccomp string   // the --seccomp mode it runs with
}

func plainStenotype(t testing.TB) stenotypeBin {
	return stenotypeBin{path: testenv.Stenotype(t), seccomp: "kill"}
}

// sanitizerOptions make every report fatal and look for what an async
// write path gets wrong: use after return (a completion touching a frame
// that has returned), leaks at exit.
var sanitizerOptions = []string{
	"ASAN_OPTIONS=detect_stack_use_after_return=1:detect_leaks=1:halt_on_error=1:strict_init_order=1:check_initialization_order=1",
	"UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1",
}

// asanStenotype returns the sanitizer build. It is built by `make asan`;
// when it is missing the test is skipped, or fails with
// STENO_REQUIRE_ASAN=1 (set by `make test`).
//
// Seccomp is off: the sanitizer runtime makes calls the filter does not
// allow (pipe2, to probe whether memory is readable; ptrace and friends for
// the leak check), so under --seccomp=kill even a clean run dies of SIGSYS,
// and a use-after-return dies before a line of its report is written.
func asanStenotype(t testing.TB) stenotypeBin {
	t.Helper()
	p := filepath.Join(testenv.Root(t), "build", "asan", "stenotype")
	if _, err := os.Stat(p); err != nil {
		msg := p + " not built (run `make asan`): " + err.Error()
		if os.Getenv("STENO_REQUIRE_ASAN") == "1" {
			t.Fatal(msg + " [STENO_REQUIRE_ASAN=1]")
		}
		t.Skip(msg)
	}
	return stenotypeBin{path: p, env: sanitizerOptions, seccomp: "none"}
}

// command returns the command line that runs the binary with args under
// umask 0, so that file modes are what stenotype asks for: a umask can
// only narrow them, and the tests check they are never wider than 0640.
func (b stenotypeBin) command(args ...string) (string, []string) {
	argv := []string{"-c", `umask 0 && exec env "$@"`, "sh"}
	argv = append(argv, b.env...)
	argv = append(argv, b.path, "--seccomp="+b.seccomp)
	return "sh", append(argv, args...)
}

var sanitizerReport = regexp.MustCompile(`(?m)^.*(Sanitizer|runtime error:).*$`)

// checkSanitizers fails the test on any sanitizer report in stderr.
func checkSanitizers(t testing.TB, what string, stderr []byte) {
	t.Helper()
	if m := sanitizerReport.Find(stderr); m != nil {
		t.Errorf("%s: sanitizer report %q; stderr:\n%s", what, m, testenv.Tail(stderr, 6000))
	}
}

// checkModes requires every packet and index file under dir to be mode
// 0640 (stenotype runs under umask 0 in these tests): owner and access
// group only, since the files list every address seen.
func checkModes(t testing.TB, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if m := fi.Mode().Perm(); m != 0o640 {
			t.Errorf("%s: mode %04o, want 0640", path, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
