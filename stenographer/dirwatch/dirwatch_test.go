package dirwatch

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestRelevantNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"1700000000000000", true},
		{".1700000000000000", true},
		{".1700000000000000.d3", false},
		{".1700000000000000.d3.tmp", false},
		{".stenotype_probe", false},
		{"+17", false},
		{"notes.txt", false},
	} {
		if got := isFileName(trimDot(tc.name)); got != tc.want {
			t.Errorf("%q: relevant %v, want %v", tc.name, got, tc.want)
		}
	}
}

func trimDot(s string) string {
	if len(s) > 0 && s[0] == '.' {
		return s[1:]
	}
	return s
}

// TestSignalsFileNamesOnly creates and renames files in a real watched
// directory: a delta table brings no signal, a packet file's rename does.
func TestSignalsFileNamesOnly(t *testing.T) {
	dir := t.TempDir()
	w, err := New([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	signals := make(chan struct{}, 16)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, func() { signals <- struct{}{} }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	write := func(name string) {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	write(".1700000000000000.d1.tmp")
	if err := os.Rename(filepath.Join(dir, ".1700000000000000.d1.tmp"), filepath.Join(dir, ".1700000000000000.d1")); err != nil {
		t.Fatal(err)
	}
	write("README")
	select {
	case <-signals:
		t.Fatal("signal for a delta table or a foreign file")
	case <-time.After(10 * Settle):
	}
	write(".1700000000000000")
	if err := os.Rename(filepath.Join(dir, ".1700000000000000"), filepath.Join(dir, "1700000000000000")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-signals:
	case <-time.After(10 * time.Second):
		t.Fatal("no signal for a packet file created and renamed")
	}
}

func TestMissingDirectory(t *testing.T) {
	if _, err := New([]string{filepath.Join(t.TempDir(), "absent")}); err == nil {
		t.Fatal("watching a missing directory worked")
	}
}
