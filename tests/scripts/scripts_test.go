// Package scripts tests the user-facing shell scripts (stenokeys.sh,
// stenocurl, stenoread) and the installer's syntax, with real openssl, curl
// and tcpdump processes. stenocurl and stenoread talk to a small mutual-TLS
// server in this test that speaks the daemon's HTTP API (SPEC §7), using
// certificates made by stenokeys.sh; the daemon itself is tested with the
// same scripts in tests/daemon.
package scripts

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

const timeout = time.Minute

// TestLint checks every shell script for syntax errors with bash -n and for
// the usual mistakes with shellcheck.
func TestLint(t *testing.T) {
	testenv.RequireTools(t, "bash", "shellcheck")
	root := testenv.Root(t)
	files := []string{
		"scripts/stenoread", "scripts/stenocurl", "scripts/stenokeys.sh",
		"scripts/run_local.sh", "scripts/run_fleet.sh", "scripts/compile_bpf.sh", "install/install.sh",
		"tests/bench/lib.sh", "tests/bench/daemon.sh", "tests/bench/fleet.sh", "tests/bench/capture.sh", "tests/bench/fresh.sh",
		"tests/bench/filecount.sh", "tests/bench/run.sh", "tests/bench/query.sh", "tests/bench/contention.sh",
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			p := filepath.Join(root, f)
			testenv.MustRun(t, timeout, "bash", "-n", p)
			r := testenv.Run(timeout, "shellcheck", "-x", p)
			if r.Err != nil {
				t.Fatalf("shellcheck %s:\n%s", f, r.Stdout)
			}
		})
	}
}

// makeCerts runs stenokeys.sh USER GROUP with a config whose CertPath is a
// new directory and whose Host is host; it returns the config path and the
// certificate directory. Both are searchable by every user.
func makeCerts(t *testing.T, usr, group, host string) (config, certs string) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "openssl", "jq")
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	certs = filepath.Join(dir, "certs")
	config = writeConfig(t, dir, host, 1, certs)
	runStenokeys(t, config, usr, group)
	return config, certs
}

func runStenokeys(t *testing.T, config, usr, group string) string {
	t.Helper()
	cmd := exec.Command(testenv.Script(t, "stenokeys.sh"), usr, group)
	cmd.Env = append(os.Environ(), "STENOGRAPHER_CONFIG="+config)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("stenokeys.sh %s %s: %v\n%s", usr, group, err, out)
	}
	return string(out)
}

func writeConfig(t *testing.T, dir, host string, port int, certs string) string {
	t.Helper()
	cfg := map[string]any{
		"Threads":       []map[string]any{{"PacketsDirectory": filepath.Join(dir, "pkt"), "IndexDirectory": filepath.Join(dir, "idx")}},
		"StenotypePath": "/usr/bin/stenotype", "Interface": "lo",
		"Host": host, "Port": port, "Flags": []string{}, "CertPath": certs,
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "config")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

type fileState struct {
	mode       os.FileMode
	uid, gid   uint32
	sum        [32]byte
	modifiedNs int64
}

func snapshot(t *testing.T, dir string) map[string]fileState {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]fileState{}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		sys := st.Sys().(*syscall.Stat_t)
		fs := fileState{mode: st.Mode().Perm(), uid: sys.Uid, gid: sys.Gid, modifiedNs: st.ModTime().UnixNano()}
		if st.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			fs.sum = sha256.Sum256(b)
		}
		m[e.Name()] = fs
	}
	return m
}

func lookupIDs(t *testing.T, usr, group string) (uint32, uint32) {
	t.Helper()
	u, err := user.Lookup(usr)
	if err != nil {
		t.Fatal(err)
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(g.Gid)
	return uint32(uid), uint32(gid)
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatalf("%s: no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

func mapsEqual(a, b map[string]fileState) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// script runs a script with STENOGRAPHER_CONFIG=config, optionally as
// another user (setpriv), and returns stdout, stderr and the exit status.
func script(t *testing.T, config string, asUser []string, name string, args ...string) (string, string, int) {
	t.Helper()
	path := testenv.Script(t, name)
	if asUser != nil {
		// The other user may not reach the checkout (a clone in a 0700
		// directory): it runs a copy from a directory anyone can enter.
		path = reachableCopy(t, path)
	}
	argv := append([]string{path}, args...)
	if asUser != nil {
		argv = append(append([]string{"setpriv"}, asUser...), argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "STENOGRAPHER_CONFIG="+config)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%v timed out; stderr: %s", argv, errb.String())
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

// reachableCopy copies the script at path into a new directory that
// every user may enter, and returns the copy's path.
func reachableCopy(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "steno-script-") // t.TempDir's parent is 0700
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(dir, filepath.Base(path))
	if err := os.WriteFile(cp, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return cp
}

func lines(s string) int { return strings.Count(s, "\n") }
