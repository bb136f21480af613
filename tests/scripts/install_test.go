package scripts

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// TestInstallDestdir runs install/install.sh into a DESTDIR twice (without
// deps and build: `make test` has built) and checks the tree: binaries and
// scripts in PREFIX/bin, stenotype with its capabilities and mode, a config
// whose StenotypePath and units follow PREFIX, certificates, thread
// directories owned by stenographer, and that the second run keeps the
// config, certificates and directories byte for byte, and what --uninstall
// removes and keeps. Like `make run`, it
// creates the stenographer system user and group when they are missing.
func TestInstallDestdir(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "setcap", "getcap", "jq", "openssl")
	testenv.Stenographer(t)
	testenv.Stenotype(t)
	root := t.TempDir()
	install := filepath.Join(testenv.Root(t), "install", "install.sh")
	run := func() string {
		cmd := exec.Command(install, "--no-deps", "--no-build", "--prefix", "/usr/local")
		cmd.Env = append(os.Environ(), "DESTDIR="+root)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("install.sh: %v\n%s", err, out)
		}
		return string(out)
	}
	run()
	_, stenoGID := lookupIDs(t, "stenographer", "stenographer")
	stenoUID, _ := lookupIDs(t, "stenographer", "stenographer")

	for _, b := range []string{"stenographer", "stenoquery", "stenodump", "stenoread", "stenocurl", "stenokeys.sh"} {
		st, err := os.Stat(filepath.Join(root, "usr/local/bin", b))
		if err != nil || st.Mode().Perm() != 0o755 {
			t.Errorf("usr/local/bin/%s: %v, mode %v; want 0755", b, err, st)
		}
	}
	stenotype := filepath.Join(root, "usr/local/bin/stenotype")
	if st, err := os.Stat(stenotype); err != nil || st.Mode().Perm() != 0o750 || st.Sys().(*syscall.Stat_t).Gid != stenoGID {
		t.Errorf("stenotype: %v %v; want mode 0750, group stenographer", err, st)
	}
	caps := string(testenv.MustRun(t, timeout, "getcap", stenotype))
	for _, c := range []string{"cap_net_raw", "cap_net_admin", "cap_ipc_lock", "=ep"} {
		if !strings.Contains(caps, c) {
			t.Errorf("getcap stenotype: %q lacks %s", caps, c)
		}
	}
	var cfg struct {
		StenotypePath string
		CertPath      string
		Threads       []struct{ PacketsDirectory, IndexDirectory string }
	}
	b, err := os.ReadFile(filepath.Join(root, "etc/stenographer/config"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.StenotypePath != "/usr/local/bin/stenotype" {
		t.Errorf("StenotypePath %q, want /usr/local/bin/stenotype (follows --prefix)", cfg.StenotypePath)
	}
	for _, th := range cfg.Threads {
		for _, d := range []string{th.PacketsDirectory, th.IndexDirectory} {
			st, err := os.Stat(filepath.Join(root, d))
			if err != nil || !st.IsDir() || st.Sys().(*syscall.Stat_t).Uid != stenoUID || st.Mode().Perm() != 0o750 {
				t.Errorf("thread directory %s: %v %v; want a 0750 directory owned by stenographer", d, err, st)
			}
		}
	}
	for _, u := range []string{"stenographer.service", "stenographer@.service"} {
		b, err := os.ReadFile(filepath.Join(root, "etc/systemd/system", u))
		if err != nil || !strings.Contains(string(b), "ExecStart=/usr/local/bin/stenographer --syslog --config=/etc/stenographer/config") {
			t.Errorf("%s: %v; want ExecStart with /usr/local/bin/stenographer", u, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "etc/security/limits.d/stenographer.conf")); err != nil {
		t.Error(err)
	}
	certs := filepath.Join(root, cfg.CertPath)
	before := snapshot(t, certs)
	if len(before) != 6 {
		t.Errorf("%d files in %s, want 6", len(before), certs)
	}
	cfgBefore := snapshot(t, filepath.Join(root, "etc/stenographer"))

	out := run()
	if strings.Contains(out, "created") {
		t.Errorf("second run created something:\n%s", out)
	}
	if after := snapshot(t, certs); !mapsEqual(before, after) {
		t.Error("second run changed the certificates")
	}
	if after := snapshot(t, filepath.Join(root, "etc/stenographer")); !mapsEqual(cfgBefore, after) {
		t.Error("second run changed /etc/stenographer")
	}

	// --uninstall removes programs, units and limits; keeps config, certificates, data.
	cmd := exec.Command(install, "--uninstall", "--prefix", "/usr/local")
	cmd.Env = append(os.Environ(), "DESTDIR="+root)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("install.sh --uninstall: %v\n%s", err, out)
	}
	for _, d := range []string{"usr/local/bin", "etc/systemd/system", "etc/security/limits.d"} {
		if ents, err := os.ReadDir(filepath.Join(root, d)); err != nil || len(ents) != 0 {
			t.Errorf("after --uninstall, %s holds %v (%v); want empty", d, ents, err)
		}
	}
	if after := snapshot(t, filepath.Join(root, "etc/stenographer")); !mapsEqual(cfgBefore, after) {
		t.Error("--uninstall changed /etc/stenographer")
	}
	if _, err := os.Stat(filepath.Join(root, cfg.Threads[0].PacketsDirectory)); err != nil {
		t.Errorf("--uninstall removed the data directory: %v", err)
	}
}
