// Operating stenofleet: the example config and unit in configs/, the
// --check-config and --hash-password tools, and SIGHUP re-reading the
// password file, all through the real binary.

package fleet_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sys/unix"

	"github.com/stenographer-ng/stenographer/stenographer/fleet/auth"
	"github.com/stenographer-ng/stenographer/stenographer/fleet/config"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// exampleFiles makes the certificates configs/stenofleet.yaml names, in
// dir, and returns the example with its paths (and LISTEN) pointed at them.
func exampleFiles(t *testing.T, dir, listen string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.Root(t), "configs", "stenofleet.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	sensors := newCA(t, dir, "sensors")
	clientCert, clientKey := sensors.issue("stenofleet-client", false)
	analysts := newCA(t, dir, "analysts")
	srvCert, srvKey := analysts.issue("stenofleet", true)
	text := strings.NewReplacer(
		"/etc/stenographer/certs/client_key.pem", clientKey,
		"/etc/stenographer/certs/client_cert.pem", clientCert,
		"/etc/stenographer/certs/ca_cert.pem", sensors.File,
		"/etc/stenofleet/certs/server_cert.pem", srvCert,
		"/etc/stenofleet/certs/server_key.pem", srvKey,
		"/etc/stenofleet/certs/ca_cert.pem", analysts.File,
		"/var/spool/stenofleet/", filepath.Join(dir, "spool"),
		"LISTEN: 127.0.0.1:9443", "LISTEN: "+listen,
	).Replace(string(b))
	if text == string(b) {
		t.Fatal("configs/stenofleet.yaml: none of the expected paths found")
	}
	return text
}

func writeFile(t *testing.T, path, text string, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return path
}

// fleetTool runs the stenofleet binary with stdin and returns stdout,
// stderr and the exit status.
func fleetTool(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(testenv.Binary(t, "stenofleet"), args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("stenofleet %q: %v", args, err)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

// TestExampleConfig: configs/stenofleet.yaml, with its paths pointed at
// generated files, passes --check-config; broken copies fail with exit
// status 1 naming the key; the example explains every stenofleet key; and
// systemd-analyze verify accepts configs/stenofleet.service.
func TestExampleConfig(t *testing.T) {
	dir := t.TempDir()
	text := exampleFiles(t, dir, "127.0.0.1:9443")
	good := writeFile(t, filepath.Join(dir, "good.yaml"), text, 0o600)
	out, errs, code := fleetTool(t, "", "--check-config", "--config="+good)
	if code != 0 || !strings.Contains(out, "good: 1 sensors") {
		t.Fatalf("--check-config on the example: status %d, stdout %q, stderr %q; want 0 and good", code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "spool")); err == nil {
		t.Error("--check-config created SPOOL_DIR; it should only check it")
	}

	notDir := writeFile(t, filepath.Join(dir, "a-file"), "", 0o600)
	for _, c := range []struct{ name, from, to, key string }{
		{"unknown key", "SENSOR_TIMEOUT: 10m", "SENSOR_TIMEOUTS: 10m", "SENSOR_TIMEOUTS"},
		{"bad value", "EXPIRE_SPACE: 1G", "EXPIRE_SPACE: lots", "EXPIRE_SPACE"},
		{"missing server key", "TLS_KEY: " + filepath.Join(dir, "stenofleet_key.pem"), "TLS_KEY: " + filepath.Join(dir, "nope.pem"), "TLS_KEY"},
		{"missing client key", filepath.Join(dir, "stenofleet-client_key.pem"), filepath.Join(dir, "gone.pem"), "stenographer_instances"},
		{"spool is a file", "SPOOL_DIR: " + filepath.Join(dir, "spool"), "SPOOL_DIR: " + notDir, "SPOOL_DIR"},
		{"missing password file", "#PASSWORD_FILE: /etc/stenofleet/passwords", "PASSWORD_FILE: " + filepath.Join(dir, "nopasswords"), "PASSWORD_FILE"},
	} {
		broken := strings.Replace(text, c.from, c.to, 1)
		if broken == text {
			t.Fatalf("%s: %q not in the example", c.name, c.from)
		}
		p := writeFile(t, filepath.Join(dir, "broken.yaml"), broken, 0o600)
		out, errs, code := fleetTool(t, "", "--check-config", "--config="+p)
		if code != 1 || !strings.Contains(errs, c.key) || out != "" {
			t.Errorf("%s: status %d, stdout %q, stderr %q; want 1 naming %s", c.name, code, out, errs, c.key)
		}
	}

	// Every key of stenofleet's own (not Docket's ignored ones) is explained.
	typ := reflect.TypeFor[config.Config]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		key := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if key == "" || key == "-" || key == "STENOGRAPHER_INSTANCES" || key == "CLEANUP_PERIOD" {
			continue
		}
		if !strings.Contains(text, key) {
			t.Errorf("configs/stenofleet.yaml does not explain %s", key)
		}
	}
	for _, k := range []string{"host", "sensor", "port", "key", "cert", "ca", "tags", "server_name"} {
		if !strings.Contains(text, "#   "+k) && !strings.Contains(text, "#  "+k) && !strings.Contains(text, ", "+k) {
			t.Errorf("configs/stenofleet.yaml does not explain the sensor key %s", k)
		}
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: the unit is not verified")
		return
	}
	unit, err := os.ReadFile(filepath.Join(testenv.Root(t), "configs", "stenofleet.service"))
	if err != nil {
		t.Fatal(err)
	}
	// verify checks that ExecStart's program exists: point it at the build.
	u := strings.ReplaceAll(string(unit), "/usr/bin/stenofleet", testenv.Binary(t, "stenofleet"))
	for _, want := range []string{"User=stenofleet", "NoNewPrivileges=yes", "ProtectSystem=strict",
		"ReadWritePaths=/var/spool/stenofleet", "CapabilityBoundingSet=\n", "ExecReload=/bin/kill -HUP $MAINPID"} {
		if !strings.Contains(u, want) {
			t.Errorf("stenofleet.service lacks %q", want)
		}
	}
	up := writeFile(t, filepath.Join(t.TempDir(), "stenofleet.service"), u, 0o644)
	if r := testenv.Run(time.Minute, analyze, "verify", up); r.Err != nil || len(bytes.TrimSpace(r.Stderr)) != 0 {
		t.Errorf("systemd-analyze verify stenofleet.service: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
	}
}

// TestHashPassword: --hash-password prints a PASSWORD_FILE line that the
// auth package loads and that verifies the password; it refuses an empty
// password and user names that would break the line.
func TestHashPassword(t *testing.T) {
	out, errs, code := fleetTool(t, "s3cret pass\nsecond line\n", "--hash-password", "--user", "carol")
	if code != 0 {
		t.Fatalf("status %d, stderr %q", code, errs)
	}
	user, hash, ok := strings.Cut(strings.TrimSuffix(out, "\n"), ":")
	if !ok || user != "carol" || strings.Count(out, "\n") != 1 {
		t.Fatalf("output %q, want one line carol:<hash>", out)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte("s3cret pass")); err != nil {
		t.Errorf("the hash does not verify the first line of stdin: %v", err)
	}
	pw := writeFile(t, filepath.Join(t.TempDir(), "passwords"), out, 0o600)
	if _, err := auth.New(auth.Config{PasswordFile: pw}); err != nil {
		t.Errorf("auth does not load the printed line: %v", err)
	}
	for _, c := range []struct {
		name, stdin string
		args        []string
		says        string
	}{
		{"empty password", "\n", []string{"--user", "carol"}, "empty password"},
		{"no input", "", []string{"--user", "carol"}, "empty password"},
		{"colon in name", "pw\n", []string{"--user", "ca:rol"}, "ca:rol"},
		{"space in name", "pw\n", []string{"--user", "ca rol"}, "whitespace"},
		{"tab in name", "pw\n", []string{"--user", "ca\trol"}, "whitespace"},
	} {
		out, errs, code := fleetTool(t, c.stdin, append([]string{"--hash-password"}, c.args...)...)
		if code != 1 || out != "" || !strings.Contains(errs, c.says) {
			t.Errorf("%s: status %d, stdout %q, stderr %q; want 1 saying %q", c.name, code, out, errs, c.says)
		}
	}
	if _, errs, code := fleetTool(t, "", "--user", "carol"); code != 2 {
		t.Errorf("--user without --hash-password: status %d (%s), want 2", code, errs)
	}
}

// TestReloadPasswords starts stenofleet from the example config with a
// password file for alice, then replaces the file with one for bob (hashed
// by --hash-password) and sends SIGHUP: bob logs in and alice no longer
// does. A broken file at the next SIGHUP is refused, logged, and bob stays.
func TestReloadPasswords(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	line := func(user, pw string) string {
		out, errs, code := fleetTool(t, pw+"\n", "--hash-password", "--user", user)
		if code != 0 {
			t.Fatalf("--hash-password: %d %s", code, errs)
		}
		return out
	}
	pwFile := filepath.Join(dir, "passwords")
	writeFile(t, pwFile, line("alice", "alice-pw"), 0o600)
	text := strings.Replace(exampleFiles(t, dir, addr), "#PASSWORD_FILE: /etc/stenofleet/passwords", "PASSWORD_FILE: "+pwFile, 1)
	cfg := writeFile(t, filepath.Join(dir, "config.yaml"), text, 0o600)

	var log testenv.SyncBuffer
	cmd := exec.Command(testenv.Binary(t, "stenofleet"), "--config="+cfg)
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("stenofleet log:\n%s", testenv.Tail(log.Bytes(), 4000))
		}
	})
	waitLog := func(what string, n int) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for strings.Count(string(log.Bytes()), what) < n {
			if time.Now().After(deadline) {
				t.Fatalf("stenofleet did not log %q %d times in 90s", what, n)
			}
			select {
			case <-done:
				t.Fatalf("stenofleet exited waiting for %q", what)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	waitLog("serving HTTPS", 1)

	pool, err := caPool(filepath.Join(dir, "analysts_ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	login := func(user, pw string) int {
		t.Helper()
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar, Timeout: time.Minute,
			Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.PostForm("https://"+addr+"/login", url.Values{"user": {user}, "password": {pw}})
		if err != nil {
			t.Fatalf("login %s: %v", user, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	check := func(when string, want map[string]int) {
		t.Helper()
		for user, code := range want {
			if got := login(user, user+"-pw"); got != code {
				t.Errorf("%s: login %s: status %d, want %d", when, user, got, code)
			}
		}
	}
	check("at start", map[string]int{"alice": http.StatusSeeOther, "bob": http.StatusUnauthorized})

	writeFile(t, pwFile, "# alice removed\n"+line("bob", "bob-pw"), 0o600)
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog("password file loaded", 2)
	check("after SIGHUP", map[string]int{"alice": http.StatusUnauthorized, "bob": http.StatusSeeOther})

	writeFile(t, pwFile, "bob has no hash\n", 0o600)
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog("PASSWORD_FILE not reloaded", 1)
	if !strings.Contains(string(log.Bytes()), "line 1") {
		t.Errorf("the log does not say why the file was refused:\n%s", testenv.Tail(log.Bytes(), 1000))
	}
	check("after a bad file", map[string]int{"bob": http.StatusSeeOther})
	select {
	case <-done:
		t.Fatal("stenofleet exited after SIGHUP")
	default:
	}
}

// TestHashPasswordTerminal: on a terminal --hash-password prompts on it
// with echo off (the password never appears on the terminal), asks twice,
// and refuses two different answers.
func TestHashPasswordTerminal(t *testing.T) {
	for _, c := range []struct {
		name, first, second string
		ok                  bool
	}{
		{"same twice", "tty-secret", "tty-secret", true},
		{"different", "tty-secret", "tty-other", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			master, slave := openPTY(t)
			var stdout bytes.Buffer
			cmd := exec.Command(testenv.Binary(t, "stenofleet"), "--hash-password", "--user", "dave")
			cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, &stdout, slave
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			slave.Close()
			var screen testenv.SyncBuffer
			copied := make(chan struct{})
			go func() { // ends with EIO when the child exits
				io.Copy(&screen, master)
				close(copied)
			}()
			waitScreen := func(what string, n int) {
				t.Helper()
				deadline := time.Now().Add(time.Minute)
				for strings.Count(string(screen.Bytes()), what) < n {
					if time.Now().After(deadline) {
						cmd.Process.Kill()
						t.Fatalf("no %q on the terminal in 60s; it shows %q", what, screen.Bytes())
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
			// Each answer is typed after its prompt, which comes after echo
			// is off: typed earlier, the terminal would echo it.
			waitScreen("Password: ", 1)
			io.WriteString(master, c.first+"\n")
			waitScreen("Password again: ", 1)
			io.WriteString(master, c.second+"\n")
			err := cmd.Wait()
			// What the child wrote last may still be in the terminal:
			// read it all before looking.
			select {
			case <-copied:
			case <-time.After(10 * time.Second):
				t.Error("the terminal did not close 10 s after the child exited")
			}
			shown := string(screen.Bytes())
			if strings.Contains(shown, "tty-") {
				t.Errorf("the password was echoed: the terminal shows %q", shown)
			}
			if c.ok {
				user, hash, _ := strings.Cut(strings.TrimSpace(stdout.String()), ":")
				if err != nil || user != "dave" || bcrypt.CompareHashAndPassword([]byte(hash), []byte(c.first)) != nil {
					t.Errorf("status %v, stdout %q, terminal %q; want dave:<hash of %s>", err, stdout.String(), shown, c.first)
				}
				return
			}
			if err == nil || stdout.Len() != 0 || !strings.Contains(shown, "differ") {
				t.Errorf("status %v, stdout %q, terminal %q; want a failure saying the passwords differ", err, stdout.String(), shown)
			}
		})
	}
}

// openPTY returns a new pseudo-terminal's master and slave ends.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("opening /dev/pts/%d: %v", n, err)
	}
	t.Cleanup(func() { slave.Close() })
	return master, slave
}
