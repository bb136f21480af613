package daemon_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/tests/internal/daemon"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// TestBadConfig: a configuration the daemon cannot use stops it at once
// with a non-zero status and a message naming the key (or the missing
// certificate file, or the directory stenotype's user cannot reach);
// stenotype is never started.
func TestBadConfig(t *testing.T) {
	bin := testenv.Stenographer(t)
	dir := t.TempDir()
	good := func() map[string]any {
		return map[string]any{
			"Threads":       []any{map[string]any{"PacketsDirectory": filepath.Join(dir, "pkt"), "IndexDirectory": filepath.Join(dir, "idx")}},
			"StenotypePath": testenv.Stenotype(t), "Interface": "lo", "Port": daemon.HTTPSPort, "Host": "127.0.0.1",
			"Flags": []any{}, "CertPath": filepath.Join(dir, "certs"),
		}
	}
	for _, tc := range []struct {
		name string
		edit func(map[string]any)
		key  string // the message names it
	}{
		{"unknown key", func(c map[string]any) { c["DiskFreePercent"] = 5 }, "DiskFreePercent"},
		{"no threads", func(c map[string]any) { delete(c, "Threads") }, "Threads"},
		{"no index directory", func(c map[string]any) {
			c["Threads"] = []any{map[string]any{"PacketsDirectory": filepath.Join(dir, "pkt")}}
		}, "IndexDirectory"},
		{"bad host", func(c map[string]any) { c["Host"] = "no such host!" }, "Host"},
		{"negative disk free", func(c map[string]any) {
			c["Threads"] = []any{map[string]any{"PacketsDirectory": filepath.Join(dir, "pkt"), "IndexDirectory": filepath.Join(dir, "idx"), "DiskFreePercentage": -1}}
		}, "DiskFreePercentage"},
		{"flag stenographer sets", func(c map[string]any) { c["Flags"] = []any{"--dir=/tmp"} }, "Flags"},
		{"wrong type", func(c map[string]any) { c["Port"] = "1234" }, "Port"},
		// Valid JSON, but no certificates in CertPath: refused before
		// stenotype starts, naming the file.
		// Thread directories below t.TempDir (0700, root's): stenotype, run
		// as nobody by default, could never reach them.
		{"directories nobody cannot reach", func(c map[string]any) {}, "user nobody cannot search " + filepath.Dir(dir) + " (mode 0700 owner root): chmod o+x " + filepath.Dir(dir)},
		{"no certificates", func(c map[string]any) {
			other := testenv.DiskTempDir(t)
			c["Threads"] = []any{map[string]any{"PacketsDirectory": filepath.Join(other, "pkt"), "IndexDirectory": filepath.Join(other, "idx")}}
		}, "ca_cert.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.edit(c)
			data, err := json.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "config")
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			r := testenv.Run(time.Minute, bin, "--config="+path)
			if r.Err == nil || strings.Contains(r.Err.Error(), "timed out") {
				t.Fatalf("stenographer with %s: %v; want a non-zero exit at once", tc.name, r.Err)
			}
			if msg := string(r.Stderr); !strings.Contains(msg, tc.key) {
				t.Errorf("stenographer with %s: the message does not name %s:\n%s", tc.name, tc.key, testenv.Tail(r.Stderr, 500))
			}
			if strings.Contains(string(r.Stderr), "started stenotype") {
				t.Errorf("stenographer with %s started stenotype before refusing", tc.name)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "pkt")); err == nil {
		t.Errorf("a refused configuration still created %s", filepath.Join(dir, "pkt"))
	}
}
