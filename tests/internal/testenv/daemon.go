package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Stenographer and Stenogrpc return the daemon and its gRPC client under
// build/bin, failing the test when they are not built.
func Stenographer(t testing.TB) string { return Binary(t, "stenographer") }
func Stenogrpc(t testing.TB) string    { return Binary(t, "stenogrpc") }

// Script returns scripts/<name>, failing the test when it is missing or
// not executable.
func Script(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(Root(t), "scripts", name)
	st, err := os.Stat(p)
	if err != nil {
		t.Fatalf("script %s missing: %v", p, err)
	}
	if st.Mode()&0o111 == 0 {
		t.Fatalf("script %s is not executable (mode %v)", p, st.Mode())
	}
	return p
}

// DiskTempDir is a new temporary directory on a file system that takes
// O_DIRECT writes (see OutputDir), readable by every user; removed at test
// end.
func DiskTempDir(t testing.TB) string {
	t.Helper()
	d := diskTempDir(t)
	for _, x := range []string{filepath.Dir(d), d} {
		if err := os.Chmod(x, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// SharedPcapDir is PcapDir for tests that also mean something without the
// corpus: it returns "" (after logging why) instead of skipping, and fails
// when STENO_REQUIRE_SHARED=1.
func SharedPcapDir(t testing.TB) string {
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
		t.Log(msg + "; going on with generated traffic only")
		return ""
	}
	return filepath.Join(dir, "pcaps")
}
