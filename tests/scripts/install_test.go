package scripts

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
// removes and keeps. The same for stenofleet (fleetInstalled): its binary,
// unit, example config, certificates and spool; an operator's edit of its
// config survives the second run. Like `make run`, it creates the
// stenographer and stenofleet system users when they are missing.
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
	fleetConfig := fleetInstalled(t, root, cfg.CertPath)
	// The operator edits the config: a second run must keep the edit.
	edited := append(fleetConfig, "# edited by the operator\n"...)
	if err := os.WriteFile(filepath.Join(root, "etc/stenofleet/config.yaml"), edited, 0o640); err != nil {
		t.Fatal(err)
	}
	fleetBefore := snapshot(t, filepath.Join(root, "etc/stenofleet"))
	fleetCerts := snapshot(t, filepath.Join(root, "etc/stenofleet/certs"))

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
	if after := snapshot(t, filepath.Join(root, "etc/stenofleet")); !mapsEqual(fleetBefore, after) {
		t.Error("second run changed /etc/stenofleet (the operator's edited config?)")
	}
	if after := snapshot(t, filepath.Join(root, "etc/stenofleet/certs")); !mapsEqual(fleetCerts, after) {
		t.Error("second run changed /etc/stenofleet/certs")
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
	if after := snapshot(t, filepath.Join(root, "etc/stenofleet")); !mapsEqual(fleetBefore, after) {
		t.Error("--uninstall changed /etc/stenofleet")
	}
	if _, err := os.Stat(filepath.Join(root, "var/spool/stenofleet")); err != nil {
		t.Errorf("--uninstall removed the stenofleet spool: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, cfg.Threads[0].PacketsDirectory)); err != nil {
		t.Errorf("--uninstall removed the data directory: %v", err)
	}
}

// fleetInstalled checks what install.sh installed for stenofleet under
// root and returns its config: the binary, a unit following the prefix,
// the user in group stenographer, a config pointed at the sensor's
// certificates that --check-config accepts, analysts' certificates, and
// the spool owned by stenofleet.
func fleetInstalled(t *testing.T, root, sensorCerts string) []byte {
	t.Helper()
	bin := filepath.Join(root, "usr/local/bin/stenofleet")
	if st, err := os.Stat(bin); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("usr/local/bin/stenofleet: %v %v; want mode 0755", err, st)
	}
	unit, err := os.ReadFile(filepath.Join(root, "etc/systemd/system/stenofleet.service"))
	if err != nil || !strings.Contains(string(unit), "ExecStart=/usr/local/bin/stenofleet --config=/etc/stenofleet/config.yaml") {
		t.Errorf("stenofleet.service: %v; want ExecStart with /usr/local/bin/stenofleet", err)
	}
	if groups := string(testenv.MustRun(t, timeout, "id", "-nG", "stenofleet")); !slices.Contains(strings.Fields(groups), "stenographer") {
		t.Errorf("user stenofleet is in groups %q, want stenographer among them (reads the sensor's client key)", groups)
	}
	fleetUID, fleetGID := lookupIDs(t, "stenofleet", "stenofleet")
	cfgPath := filepath.Join(root, "etc/stenofleet/config.yaml")
	st, err := os.Stat(cfgPath)
	if err != nil || st.Mode().Perm() != 0o640 || st.Sys().(*syscall.Stat_t).Gid != fleetGID {
		t.Fatalf("etc/stenofleet/config.yaml: %v %v; want mode 0640, group stenofleet", err, st)
	}
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), "key: "+filepath.Join(sensorCerts, "client_key.pem")) {
		t.Errorf("the stenofleet config does not use the sensor's certificates in %s:\n%s", sensorCerts, cfg)
	}
	if n := len(snapshot(t, filepath.Join(root, "etc/stenofleet/certs"))); n != 6 {
		t.Errorf("%d files in etc/stenofleet/certs, want 6", n)
	}
	spool, err := os.Stat(filepath.Join(root, "var/spool/stenofleet"))
	if err != nil || !spool.IsDir() || spool.Mode().Perm() != 0o750 || spool.Sys().(*syscall.Stat_t).Uid != fleetUID {
		t.Errorf("var/spool/stenofleet: %v %v; want a 0750 directory owned by stenofleet", err, spool)
	}
	// The installed config starts stenofleet: its paths, moved under root.
	moved := strings.NewReplacer("/etc/", root+"/etc/", "/var/spool/", root+"/var/spool/").Replace(string(cfg))
	check := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(check, []byte(moved), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := testenv.Run(timeout, bin, "--check-config", "--config="+check); r.Err != nil {
		t.Errorf("stenofleet --check-config on the installed config: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
	}
	return cfg
}
