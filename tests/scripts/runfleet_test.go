package scripts

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/tests/internal/daemon"
	"github.com/stenographer-ng/stenographer/tests/internal/netns"
	"github.com/stenographer-ng/stenographer/tests/internal/pcapfile"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

const fleetPort = "9443" // inside the sensor's namespace, private to it

// curlLine is the printed query command, its continuation line included.
var curlLine = regexp.MustCompile(`query: +(curl [^\n]*\\\n[^\n]*)`)

var passwordLine = regexp.MustCompile(`login: +user analyst, password (\S+)`)

// runFleet starts scripts/run_fleet.sh inside d's namespace with the run
// directory run, waits until stenofleet serves, and returns its output.
// The process (the script execs stenofleet) is killed at test end.
func runFleet(t *testing.T, d *daemon.Daemon, run string) (output *testenv.SyncBuffer, stop func()) {
	t.Helper()
	out := &testenv.SyncBuffer{}
	cmd := netns.Command(d.Pair.CaptureNS, testenv.Script(t, "run_fleet.sh"))
	cmd.Env = append(os.Environ(), "STENO_REPO="+testenv.Root(t), "STENO_RUN="+run, "STENOFLEET_PORT="+fleetPort)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	stop = func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("run_fleet.sh output:\n%s", testenv.Tail(out.Bytes(), 6000))
		}
	})
	deadline := time.Now().Add(90 * time.Second)
	for !bytes.Contains(out.Bytes(), []byte("serving HTTPS")) {
		select {
		case <-done:
			t.Fatalf("run_fleet.sh exited before stenofleet served:\n%s", out.Bytes())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("stenofleet did not serve within 90s:\n%s", out.Bytes())
		}
	}
	return out, stop
}

// fleetClient reaches stenofleet in d's namespace, trusting run/fleet's CA,
// with its analyst certificate when withCert.
func fleetClient(t *testing.T, d *daemon.Daemon, run string, withCert bool) *http.Client {
	t.Helper()
	certs := filepath.Join(run, "fleet", "certs")
	pool := x509.NewCertPool()
	pool.AddCert(readCert(t, filepath.Join(certs, "ca_cert.pem")))
	tc := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	if withCert {
		kp, err := tls.LoadX509KeyPair(filepath.Join(certs, "client_cert.pem"), filepath.Join(certs, "client_key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{kp}
	}
	return &http.Client{Timeout: 2 * time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{TLSClientConfig: tc, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return daemon.DialInNS(ctx, d.NSPath(), network, addr)
		}}}
}

// TestRunFleet runs scripts/run_fleet.sh in front of a real sensor with
// captured traffic (the sensor's config copied into a run directory, as
// `make run` writes it): a query through the started stenofleet, with the
// analyst certificate the script made, returns the sensor's packets; the
// printed password logs in as analyst and a wrong one does not. A second
// run keeps the password file and prints no password.
func TestRunFleet(t *testing.T) {
	testenv.RequireTools(t, "tcpreplay", "ss", "openssl", "jq")
	pair := netns.NewPair(t)
	d := daemon.Start(t, pair, daemon.Options{})
	pcap := filepath.Join(t.TempDir(), "dns.pcap")
	f, err := os.Create(pcap)
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	writePcap(f, n)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if r := pair.RunSender(2*time.Minute, "tcpreplay", "-i", pair.SenderIf, "--pps=100", pcap); r.Err != nil {
		t.Fatalf("tcpreplay: %v", r.Err)
	}
	const q = "udp and port 53"
	var direct *pcapfile.File
	if !d.Poll(90*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r, err := d.Query(ctx, q, nil)
		if err != nil || r.Status != http.StatusOK {
			return false
		}
		direct, err = pcapfile.Parse(r.Body)
		return err == nil && len(direct.Packets) >= n
	}) {
		t.Fatalf("the sensor did not return %d packets for %q in 90s", n, q)
	}

	run := t.TempDir()
	cfg, err := os.ReadFile(d.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(run, "config"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	out, stop := runFleet(t, d, run)
	text := string(out.Bytes())
	t.Logf("run_fleet.sh says:\n%s", text)
	m := passwordLine.FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no password printed:\n%s", text)
	}
	for _, want := range []string{"https://127.0.0.1:" + fleetPort + "/", "curl -sS --cacert", "/query"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}

	base := "https://127.0.0.1:" + fleetPort
	resp, err := fleetClient(t, d, run, true).Post(base+"/query", "text/plain", strings.NewReader(q))
	if err != nil {
		t.Fatalf("POST /query through stenofleet: %v", err)
	}
	var body bytes.Buffer
	_, err = body.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /query through stenofleet: status %d, %v: %s", resp.StatusCode, err, testenv.Tail(body.Bytes(), 300))
	}
	merged, err := pcapfile.Parse(body.Bytes())
	if err != nil {
		t.Fatalf("stenofleet's answer is not a PCAP: %v", err)
	}
	if len(merged.Packets) != len(direct.Packets) {
		t.Fatalf("stenofleet returned %d packets, the sensor alone %d", len(merged.Packets), len(direct.Packets))
	}
	for i := range merged.Packets {
		if !bytes.Equal(merged.Packets[i].Data, direct.Packets[i].Data) || !merged.Packets[i].Time.Equal(direct.Packets[i].Time) {
			t.Fatalf("packet %d differs between stenofleet and the sensor", i)
		}
	}

	// The printed curl command works as printed (pasted into a shell).
	cm := curlLine.FindStringSubmatch(text)
	if cm == nil {
		t.Fatalf("no curl command printed:\n%s", text)
	}
	cmd := netns.Command(d.Pair.CaptureNS, "bash", "-c", cm[1])
	var dump, dumpErr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &dump, &dumpErr
	if err := cmd.Run(); err != nil || lines(dump.String()) != n {
		t.Errorf("the printed curl command: %v, %d tcpdump lines (want %d); stderr:\n%s", err, lines(dump.String()), n, dumpErr.String())
	}

	login := func(pw string) int {
		c := fleetClient(t, d, run, false)
		c.Jar, _ = cookiejar.New(nil)
		resp, err := c.PostForm(base+"/login", url.Values{"user": {"analyst"}, "password": {pw}})
		if err != nil {
			t.Fatalf("login: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := login(m[1]); code != http.StatusSeeOther {
		t.Errorf("login with the printed password: status %d, want 303", code)
	}
	if code := login(m[1] + "x"); code != http.StatusUnauthorized {
		t.Errorf("login with a wrong password: status %d, want 401", code)
	}

	// A second run keeps the password (and prints none).
	passwords := filepath.Join(run, "fleet", "passwords")
	before, err := os.ReadFile(passwords)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	out2, _ := runFleet(t, d, run)
	if text := string(out2.Bytes()); passwordLine.MatchString(text) || !strings.Contains(text, "keeping "+passwords) {
		t.Errorf("second run: want the password file kept and no password printed:\n%s", text)
	}
	if after, _ := os.ReadFile(passwords); !bytes.Equal(before, after) {
		t.Error("second run changed the password file")
	}
	if code := login(m[1]); code != http.StatusSeeOther {
		t.Errorf("second run: login with the first password: status %d, want 303", code)
	}
}
