// Package testenv locates what the integration tests need outside the Go
// test binary: the repository root, the C++ binaries under build/bin, the
// shared corpus beside the checkout, and the system tools (ip, tcpreplay,
// tcpdump). It also runs commands with a deadline and captured output.
//
// Policy: a missing shared corpus is a skip (a fresh clone has none) unless
// STENO_REQUIRE_SHARED=1, as in CI; a missing binary is a failure, because
// `make test` builds them before running the Go tests.
package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const modulePath = "github.com/stenographer-ng/stenographer"

var (
	rootOnce sync.Once
	rootDir  string
	rootErr  error
)

// RepoRoot returns the directory holding this module's go.mod.
func RepoRoot() (string, error) {
	rootOnce.Do(func() {
		dir, err := os.Getwd()
		if err != nil {
			rootErr = fmt.Errorf("testenv: getwd: %w", err)
			return
		}
		for {
			data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
			if err == nil && strings.Contains(string(data), "module "+modulePath) {
				rootDir = dir
				return
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				rootErr = errors.New("testenv: go.mod of " + modulePath + " not found above the working directory")
				return
			}
			dir = parent
		}
	})
	return rootDir, rootErr
}

// Root is RepoRoot for tests.
func Root(t testing.TB) string {
	t.Helper()
	r, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Binary returns build/bin/<name>, failing the test when it is missing.
func Binary(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(Root(t), "build", "bin", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s not built (%v): run `make build` (or `make -C stenotype all`) first", p, err)
	}
	return p
}

// Stenotype and Stenodump return the paths of the two C++ binaries.
func Stenotype(t testing.TB) string { return Binary(t, "stenotype") }
func Stenodump(t testing.TB) string { return Binary(t, "stenodump") }

// SharedDir returns the shared corpus directory: $STENO_SHARED, else
// <repo root>/../shared. When it is absent the test is skipped, or fails
// when STENO_REQUIRE_SHARED=1.
func SharedDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("STENO_SHARED")
	if dir == "" {
		dir = filepath.Join(filepath.Dir(Root(t)), "shared")
	}
	if _, err := os.Stat(filepath.Join(dir, "pcaps", "README.md")); err != nil {
		msg := fmt.Sprintf("shared corpus not found at %s (set STENO_SHARED to its path): %v", dir, err)
		if os.Getenv("STENO_REQUIRE_SHARED") == "1" {
			t.Fatal(msg + " [STENO_REQUIRE_SHARED=1]")
		}
		t.Skip(msg)
	}
	return dir
}

// PcapDir and UpstreamDir are the two parts of the shared corpus.
func PcapDir(t testing.TB) string     { return filepath.Join(SharedDir(t), "pcaps") }
func UpstreamDir(t testing.TB) string { return filepath.Join(SharedDir(t), "upstream-testdata") }

// RequireRoot skips tests that need root (network namespaces, AF_PACKET).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces and AF_PACKET capture)")
	}
}

// RequireTools fails the test when a system tool is missing (`make deps`
// installs them all).
func RequireTools(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Fatalf("%s not found in PATH (run `make deps`): %v", n, err)
		}
	}
}

// Result is what a finished command printed.
type Result struct {
	Stdout, Stderr []byte
	Err            error // nil on exit status 0
}

// Run runs name with args, killing it after timeout, and returns its output.
// A non-zero exit, a failure to start or the timeout are in Result.Err, with
// the command line and the end of stderr in the message.
func Run(timeout time.Duration, name string, args ...string) Result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v: %w", timeout, ctx.Err())
	}
	if err != nil {
		err = fmt.Errorf("%s: %w; stderr: %s", CommandLine(name, args), err, Tail(errb.Bytes(), 2000))
	}
	return Result{Stdout: out.Bytes(), Stderr: errb.Bytes(), Err: err}
}

// MustRun runs a command and fails the test on error; it returns stdout.
func MustRun(t testing.TB, timeout time.Duration, name string, args ...string) []byte {
	t.Helper()
	r := Run(timeout, name, args...)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	return r.Stdout
}

// CommandLine renders a command for messages.
func CommandLine(name string, args []string) string {
	return strings.TrimSpace(name + " " + strings.Join(args, " "))
}

// Tail returns the last n bytes of b as a string.
func Tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// NobodyIDs returns the uid and gid stenotype drops to by default as root
// (nobody / nogroup).
func NobodyIDs() (uid, gid int, err error) {
	u, err := user.Lookup("nobody")
	if err != nil {
		return 0, 0, fmt.Errorf("testenv: lookup nobody: %w", err)
	}
	g, err := user.LookupGroup("nogroup")
	if err != nil {
		return 0, 0, fmt.Errorf("testenv: lookup group nogroup: %w", err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(g.Gid)
	return uid, gid, nil
}

// OutputDir returns a new directory for `stenotype --dir` that stenotype
// can write after dropping privileges to nobody/nogroup (its default as
// root): it and PKT<i>/IDX<i> for each of threads are owned by nobody, as
// stenographer lays them out before starting stenotype; its parents are
// searchable. Removed at test end. With threads 0 the directory is empty.
func OutputDir(t testing.TB, threads int) string {
	t.Helper()
	base := diskTempDir(t)
	// t.TempDir's parent and itself are 0700; nobody must traverse them.
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(base, "steno")
	dirs := []string{dir}
	for i := 0; i < threads; i++ {
		dirs = append(dirs, filepath.Join(dir, fmt.Sprintf("PKT%d", i)), filepath.Join(dir, fmt.Sprintf("IDX%d", i)))
	}
	for _, d := range dirs {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if os.Geteuid() == 0 {
			uid, gid, err := NobodyIDs()
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(d, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

// diskTempDir returns a temporary directory on a file system that takes
// O_DIRECT writes: t.TempDir, unless that is on tmpfs (which refuses
// O_DIRECT before Linux 6.6), then a directory under <repo>/build.
func diskTempDir(t testing.TB) string {
	t.Helper()
	d := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(d, &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		return d
	}
	parent := filepath.Join(Root(t), "build")
	if err := os.MkdirAll(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	d, err := os.MkdirTemp(parent, "testtmp-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// Deadline is how long to wait for a step that should take a moment: long
// enough for a loaded 2-core machine, short enough to fail a hung test.
const Deadline = 60 * time.Second
