package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Startup failures: the exit status and a message naming what is wrong.
// The running daemon is tested end to end in tests/daemon.
func TestRunStartupErrors(t *testing.T) {
	dir := t.TempDir()
	// As root, stenotype's user (nobody) must reach the thread directories.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	threads := `"Threads":[{"PacketsDirectory":"` + dir + `/pkt","IndexDirectory":"` + dir + `/idx"}]`
	for _, tc := range []struct {
		name   string
		args   []string
		status int
		want   string
	}{
		{"unknown flag", []string{"--bogus"}, 2, "flag provided but not defined: -bogus"},
		{"extra argument", []string{"--config", "x", "y"}, 2, `unexpected argument "y"`},
		{"bad sync interval", []string{"--sync_interval=0s"}, 2, "--sync_interval must be positive"},
		{"missing config", []string{"--config", dir + "/none"}, 2, "config: open " + dir + "/none: no such file or directory"},
		{"unknown key", []string{"--config", write("c1", `{"Threads":[],"Prot":1}`)}, 2, "Prot: unknown key (line 1)"},
		{"missing directory", []string{"--config", write("c2", `{"Threads":[{"PacketsDirectory":"/p"}],"Interface":"lo","Port":1}`)}, 2,
			"Threads[0].IndexDirectory: missing"},
		{"no certificates", []string{"--config", write("c3", `{`+threads+`,"Interface":"lo","Port":1,"CertPath":"`+dir+`/nocerts"}`)}, 1,
			dir + "/nocerts/ca_cert.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if got := run(tc.args, &stderr); got != tc.status {
				t.Errorf("exit status %d, want %d; stderr:\n%s", got, tc.status, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr does not say %q:\n%s", tc.want, stderr.String())
			}
		})
	}
	// The failed start removed its private directory again.
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), "stenographer-*"))
	for _, m := range matches {
		if target, _ := os.Readlink(filepath.Join(m, "PKT0")); strings.HasPrefix(target, dir) {
			t.Errorf("private directory %s left behind", m)
		}
	}
}
