// Package testdata locates the shared corpus that sits beside the checkout
// (../shared): real captures with an oracle and files the reference wrote.
// Tests that need it skip with a message when it is absent, and fail when
// STENO_REQUIRE_SHARED=1 (as in CI), so CI can never silently skip them.
package testdata

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// RepoRoot returns the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

// Shared returns the shared corpus directory, or skips/fails the test.
func Shared(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("STENO_SHARED")
	if dir == "" {
		dir = filepath.Join(RepoRoot(), "..", "shared")
	}
	if _, err := os.Stat(filepath.Join(dir, "pcaps")); err != nil {
		if os.Getenv("STENO_REQUIRE_SHARED") == "1" {
			t.Fatalf("shared corpus not found at %s (STENO_REQUIRE_SHARED=1)", dir)
		}
		t.Skipf("shared corpus not found at %s; skipping (set STENO_SHARED to its path)", dir)
	}
	return dir
}
