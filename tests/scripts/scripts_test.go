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
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/stenographer-ng/stenographer/tests/internal/pcapfile"
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
		"scripts/run_local.sh", "scripts/compile_bpf.sh", "install/install.sh",
		"tests/bench/lib.sh", "tests/bench/daemon.sh", "tests/bench/fleet.sh",
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

// TestStenokeys checks the files, owners, modes and key usages stenokeys.sh
// creates, that a second run changes nothing, and that a deleted
// TestCompileBPF: compile_bpf.sh takes the reference's argument order
// (IFACE FILTER..., the filter in several words) and the older 'FILTER'
// [IFACE], and prints the program tcpdump -ddd compiles, as stenotype's
// --filter hex; a filter tcpdump refuses, or an interface that does not
// exist, fails with tcpdump's reason.
func TestCompileBPF(t *testing.T) {
	testenv.RequireRoot(t) // tcpdump opens the interface to learn its link type
	testenv.RequireTools(t, "tcpdump")
	script := testenv.Script(t, "compile_bpf.sh")
	const filter = "udp port 53"
	var want strings.Builder
	lines := strings.Split(strings.TrimSpace(string(testenv.MustRun(t, timeout, "tcpdump", "-ddd", "-i", "lo", filter))), "\n")
	for _, l := range lines[1:] {
		var code, jt, jf, k uint32
		if _, err := fmt.Sscan(l, &code, &jt, &jf, &k); err != nil {
			t.Fatalf("tcpdump -ddd line %q: %v", l, err)
		}
		fmt.Fprintf(&want, "%04x%02x%02x%08x", code, jt, jf, k)
	}
	for _, args := range [][]string{
		{"lo", "udp", "port", "53"}, // the reference's order
		{"lo", filter},
		{filter, "lo"}, // the older order
		{filter},       // Ethernet, as lo is
	} {
		got := strings.TrimSpace(string(testenv.MustRun(t, timeout, script, args...)))
		if got != want.String() {
			t.Errorf("compile_bpf.sh %q = %s, want %s", args, got, want.String())
		}
	}
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"lo", "udp", "port"}, "syntax error"},
		{[]string{"nosuchif0", "udp", "port", "53"}, "nosuchif0"},
		{nil, "usage"},
	} {
		r := testenv.Run(timeout, script, tc.args...)
		if r.Err == nil || !strings.Contains(string(r.Stderr), tc.says) || len(bytes.TrimSpace(r.Stdout)) != 0 {
			t.Errorf("compile_bpf.sh %q: err %v, stdout %q, stderr %q; want a failure saying %q", tc.args, r.Err, r.Stdout, r.Stderr, tc.says)
		}
	}
}

// certificate is re-issued by the same CA.
func TestStenokeys(t *testing.T) {
	_, certs := makeCerts(t, "nobody", "daemon", "10.9.8.7")
	config := filepath.Join(filepath.Dir(certs), "config")
	nobody, _ := lookupIDs(t, "nobody", "nogroup")
	_, daemonGID := lookupIDs(t, "nobody", "daemon")

	first := snapshot(t, certs)
	want := map[string]struct {
		mode     os.FileMode
		uid, gid uint32
	}{
		"ca_key.pem":      {0o600, 0, 0},
		"ca_cert.pem":     {0o644, 0, 0},
		"server_key.pem":  {0o400, nobody, 0},
		"server_cert.pem": {0o644, 0, 0},
		"client_key.pem":  {0o640, 0, daemonGID},
		"client_cert.pem": {0o644, 0, 0},
	}
	if len(first) != len(want) {
		t.Errorf("files in %s: %v, want exactly %d", certs, first, len(want))
	}
	for name, w := range want {
		got, ok := first[name]
		if !ok {
			t.Errorf("%s missing", name)
			continue
		}
		if got.mode != w.mode || got.uid != w.uid || got.gid != w.gid {
			t.Errorf("%s: mode %o owner %d:%d, want %o %d:%d", name, got.mode, got.uid, got.gid, w.mode, w.uid, w.gid)
		}
	}

	ca := readCert(t, filepath.Join(certs, "ca_cert.pem"))
	server := readCert(t, filepath.Join(certs, "server_cert.pem"))
	client := readCert(t, filepath.Join(certs, "client_cert.pem"))
	if !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA: IsCA %v, key usage %b: want CA:TRUE with keyCertSign", ca.IsCA, ca.KeyUsage)
	}
	if server.IsCA || client.IsCA {
		t.Error("a leaf certificate has CA:TRUE")
	}
	if !slices.Equal(server.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("server extended key usage %v, want serverAuth only", server.ExtKeyUsage)
	}
	if !slices.Equal(client.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("client extended key usage %v, want clientAuth only", client.ExtKeyUsage)
	}
	var ips []string
	for _, ip := range server.IPAddresses {
		ips = append(ips, ip.String())
	}
	for _, ip := range []string{"127.0.0.1", "::1", "10.9.8.7"} {
		if !slices.Contains(ips, ip) {
			t.Errorf("server certificate IP SANs %v lack %s", ips, ip)
		}
	}
	if !slices.Contains(server.DNSNames, "localhost") {
		t.Errorf("server certificate DNS SANs %v lack localhost", server.DNSNames)
	}
	if min := time.Now().AddDate(9, 0, 0); server.NotAfter.Before(min) || ca.NotAfter.Before(min) {
		t.Errorf("validity ends %v (server), %v (CA); want about ten years", server.NotAfter, ca.NotAfter)
	}

	pool := x509.NewCertPool()
	pool.AddCert(ca)
	verify := []struct {
		name  string
		cert  *x509.Certificate
		usage x509.ExtKeyUsage
		ok    bool
	}{
		{"server as server", server, x509.ExtKeyUsageServerAuth, true},
		{"client as client", client, x509.ExtKeyUsageClientAuth, true},
		{"server as client", server, x509.ExtKeyUsageClientAuth, false},
		{"client as server", client, x509.ExtKeyUsageServerAuth, false},
	}
	for _, v := range verify {
		_, err := v.cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{v.usage}})
		if (err == nil) != v.ok {
			t.Errorf("%s: verify error %v, want ok=%v", v.name, err, v.ok)
		}
	}

	out := runStenokeys(t, config, "nobody", "daemon")
	if strings.Contains(out, "created") {
		t.Errorf("second run created files:\n%s", out)
	}
	if second := snapshot(t, certs); !mapsEqual(first, second) {
		t.Errorf("second run changed files:\nbefore %v\nafter  %v", first, second)
	}

	if err := os.Remove(filepath.Join(certs, "server_cert.pem")); err != nil {
		t.Fatal(err)
	}
	runStenokeys(t, config, "nobody", "daemon")
	again := readCert(t, filepath.Join(certs, "server_cert.pem"))
	if _, err := again.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("re-issued server certificate does not verify with the existing CA: %v", err)
	}
	if bytes.Equal(again.Raw, server.Raw) {
		t.Error("re-issued server certificate is byte-identical to the deleted one (serial reused?)")
	}
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

// fakeServer is a mutual-TLS server with the daemon's certificates that
// answers POST /query with n generated packets (fewer with a packet limit)
// and 400 for the query "bad query", and GET /debug/stats with JSON.
type fakeServer struct {
	addr    string
	packets int

	mu   sync.Mutex
	seen []seenRequest
}

type seenRequest struct {
	method, path, body string
	header             http.Header
}

const badQueryReason = "query: 1:1: unknown primitive \"bad\""

func startFakeServer(t *testing.T, certs, listen string, packets int) *fakeServer {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(certs, "server_cert.pem"), filepath.Join(certs, "server_key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(readCert(t, filepath.Join(certs, "ca_cert.pem")))
	ln, err := tls.Listen("tcp", listen, &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS12,
	})
	if err != nil {
		t.Skipf("cannot listen on %s: %v", listen, err)
	}
	s := &fakeServer{addr: ln.Addr().String(), packets: packets}
	srv := &http.Server{Handler: s, ErrorLog: nil, ReadHeaderTimeout: timeout}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.seen = append(s.seen, seenRequest{r.Method, r.URL.Path, string(body), r.Header.Clone()})
	s.mu.Unlock()
	switch {
	case r.URL.Path == "/debug/stats" && r.Method == http.MethodGet:
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"queries": 1}`)
	case r.URL.Path == "/query" && r.Method == http.MethodPost:
		switch string(body) {
		case "bad query":
			http.Error(w, badQueryReason, http.StatusBadRequest)
			return
		case "no reason":
			w.WriteHeader(http.StatusBadRequest)
			return
		case "abort":
			// A failure after the PCAP header: the daemon aborts the
			// connection rather than end a short PCAP that looks complete.
			w.Header().Set("Content-Type", "application/octet-stream")
			writePcap(w, 3)
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		n := s.packets
		truncated := false
		if l := r.Header.Get("Steno-Limit-Packets"); l != "" {
			if v, err := strconv.Atoi(l); err == nil && v < n {
				n, truncated = v, true
			}
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Trailer", "Steno-Truncated, Steno-Packets")
		writePcap(w, n)
		w.Header().Set("Steno-Truncated", strconv.FormatBool(truncated))
		w.Header().Set("Steno-Packets", strconv.Itoa(n))
	default:
		http.NotFound(w, r)
	}
}

func (s *fakeServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

func (s *fakeServer) last() seenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.seen) == 0 {
		return seenRequest{}
	}
	return s.seen[len(s.seen)-1]
}

// writePcap writes n UDP packets 10.0.0.1:1000 → 10.0.0.2:53 as a
// microsecond PCAP, the daemon's format.
func writePcap(w io.Writer, n int) {
	pw := pcapgo.NewWriter(w)
	if err := pw.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
		return
	}
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{10, 0, 0, 1}, DstIP: net.IP{10, 0, 0, 2}}
	udp := &layers.UDP{SrcPort: 1000, DstPort: 53}
	_ = udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, eth, ip, udp, gopacket.Payload(make([]byte, 64))); err != nil {
		return
	}
	data := buf.Bytes()
	start := time.Unix(1700000000, 0)
	for i := range n {
		ci := gopacket.CaptureInfo{Timestamp: start.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(data), Length: len(data)}
		if pw.WritePacket(ci, data) != nil {
			return
		}
	}
}

// script runs a script with STENOGRAPHER_CONFIG=config, optionally as
// another user (setpriv), and returns stdout, stderr and the exit status.
func script(t *testing.T, config string, asUser []string, name string, args ...string) (string, string, int) {
	t.Helper()
	argv := append([]string{testenv.Script(t, name)}, args...)
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

func lines(s string) int { return strings.Count(s, "\n") }

// TestStenoread runs stenoread against the fake server: PCAP into tcpdump
// with its arguments, limit headers, the query as the exact POST body, a
// refused query's reason on stderr with a failing status, tcpdump stopping
// early, and an IPv6 Host.
func TestStenoread(t *testing.T) {
	testenv.RequireTools(t, "tcpdump", "curl")
	_, certs := makeCerts(t, "nobody", "nogroup", "127.0.0.1")
	srv := startFakeServer(t, certs, "127.0.0.1:0", 5)
	_, port, _ := net.SplitHostPort(srv.addr)
	p, _ := strconv.Atoi(port)
	config := writeConfig(t, t.TempDir(), "127.0.0.1", p, certs)
	outFile := filepath.Join(t.TempDir(), "out.pcap")

	tests := []struct {
		name       string
		args       []string
		wantStatus int
		wantLines  int    // lines on stdout
		wantErr    string // substring of stderr
		wantBody   string // POST body the server saw
		wantHeader map[string]string
	}{
		{name: "query", args: []string{"port 53", "-n"}, wantLines: 5, wantBody: "port 53", wantErr: "reading from file"},
		{name: "limits", args: []string{"--limit-packets", "2", "--limit-bytes=100000", "udp and host 10.0.0.2", "-nn"},
			wantLines: 2, wantBody: "udp and host 10.0.0.2", wantErr: "truncated by the limit after 2 packets",
			wantHeader: map[string]string{"Steno-Limit-Packets": "2", "Steno-Limit-Bytes": "100000"}},
		{name: "legacy syntax", args: []string{"ip=10.0.0.1 port=53|port=80 last=2h", "-n"}, wantLines: 5, wantBody: "ip=10.0.0.1 port=53|port=80 last=2h"},
		{name: "write file", args: []string{"port 53", "-w", outFile}, wantLines: 0, wantBody: "port 53"},
		{name: "tcpdump filter", args: []string{"port 53", "-n", "dst port 1000"}, wantLines: 0, wantBody: "port 53"},
		{name: "bad query", args: []string{"bad query", "-n"}, wantStatus: 1, wantErr: badQueryReason, wantBody: "bad query"},
		{name: "400 without a reason", args: []string{"no reason", "-n"}, wantStatus: 1, wantErr: "curl: (22) The requested URL returned error: 400", wantBody: "no reason"},
		{name: "aborted stream", args: []string{"abort", "-n"}, wantStatus: -1, wantLines: 3, wantErr: "curl: (", wantBody: "abort"},
		{name: "bad limit", args: []string{"--limit-packets", "x", "port 53"}, wantStatus: 1, wantErr: "non-negative integer"},
		{name: "no query", args: nil, wantStatus: 2, wantErr: "usage:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := srv.count()
			out, errs, status := script(t, config, nil, "stenoread", tc.args...)
			t.Logf("stenoread %q: status %d\nstdout:\n%sstderr:\n%s", tc.args, status, out, errs)
			if status != tc.wantStatus && !(tc.wantStatus == -1 && status > 0) { // -1: any failure
				t.Fatalf("exit status %d, want %d; stderr:\n%s", status, tc.wantStatus, errs)
			}
			if got := lines(out); got != tc.wantLines {
				t.Errorf("%d lines on stdout, want %d:\n%s", got, tc.wantLines, out)
			}
			if !strings.Contains(errs, tc.wantErr) {
				t.Errorf("stderr lacks %q:\n%s", tc.wantErr, errs)
			}
			if strings.Contains(errs, "tcpdump:") || (strings.Contains(errs, "curl:") && !strings.Contains(tc.wantErr, "curl")) {
				t.Errorf("stderr has tool noise:\n%s", errs)
			}
			if tc.wantBody == "" {
				if n := srv.count(); n != before {
					t.Errorf("%d requests sent, want none", n-before)
				}
				return
			}
			req := srv.last()
			if req.method != http.MethodPost || req.path != "/query" || req.body != tc.wantBody {
				t.Errorf("server saw %s %s %q, want POST /query %q", req.method, req.path, req.body, tc.wantBody)
			}
			for k, v := range tc.wantHeader {
				if got := req.header.Get(k); got != v {
					t.Errorf("header %s: %q, want %q", k, got, v)
				}
			}
		})
	}

	f, err := pcapfile.Read(outFile)
	if err != nil {
		t.Fatalf("stenoread -w: %v", err)
	}
	if len(f.Packets) != 5 {
		t.Errorf("stenoread -w wrote %d packets, want 5", len(f.Packets))
	}

	// tcpdump -c stops reading a long stream: stenoread still succeeds, and
	// curl's write error is not shown.
	t.Run("tcpdump exits early", func(t *testing.T) {
		big := startFakeServer(t, certs, "127.0.0.1:0", 200000)
		_, port, _ := net.SplitHostPort(big.addr)
		p, _ := strconv.Atoi(port)
		cfg := writeConfig(t, t.TempDir(), "127.0.0.1", p, certs)
		out, errs, status := script(t, cfg, nil, "stenoread", "port 53", "-n", "-c", "3")
		if status != 0 || lines(out) != 3 || strings.Contains(errs, "curl") {
			t.Errorf("status %d, %d lines (want 0, 3); stderr:\n%s", status, lines(out), errs)
		}
		// Its output closed early: quiet, like any pipeline.
		cmd := exec.Command("bash", "-c", `"$0" 'port 53' -n | head -2`, testenv.Script(t, "stenoread"))
		cmd.Env = append(os.Environ(), "STENOGRAPHER_CONFIG="+cfg)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil || lines(stdout.String()) != 2 || strings.Contains(stderr.String(), "curl") {
			t.Errorf("stenoread | head -2: %v, %d lines (want 2); stderr:\n%s", err, lines(stdout.String()), stderr.String())
		}
	})

	t.Run("IPv6 host", func(t *testing.T) {
		v6 := startFakeServer(t, certs, "[::1]:0", 4)
		_, port, _ := net.SplitHostPort(v6.addr)
		p, _ := strconv.Atoi(port)
		cfg := writeConfig(t, t.TempDir(), "::1", p, certs)
		out, errs, status := script(t, cfg, nil, "stenoread", "port 53", "-n")
		if status != 0 || lines(out) != 4 {
			t.Errorf("status %d, %d lines (want 0, 4); stderr:\n%s", status, lines(out), errs)
		}
	})
}

// TestStenocurl checks stenocurl's explanations (no config, a client key the
// caller may not read) and that group membership is what grants access.
func TestStenocurl(t *testing.T) {
	testenv.RequireTools(t, "curl", "setpriv")
	_, certs := makeCerts(t, "nobody", "daemon", "127.0.0.1")
	srv := startFakeServer(t, certs, "127.0.0.1:0", 1)
	_, port, _ := net.SplitHostPort(srv.addr)
	p, _ := strconv.Atoi(port)
	cfgDir := t.TempDir()
	if err := os.Chmod(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	config := writeConfig(t, cfgDir, "127.0.0.1", p, certs)
	noCerts := writeConfig(t, t.TempDir(), "127.0.0.1", p, filepath.Join(cfgDir, "nocerts"))
	badJSON := filepath.Join(cfgDir, "bad.json")
	if err := os.WriteFile(badJSON, []byte(`{"Port": 1234,`), 0o644); err != nil {
		t.Fatal(err)
	}
	nobody := []string{"--reuid=nobody", "--regid=nogroup", "--clear-groups"}
	inDaemon := []string{"--reuid=nobody", "--regid=nogroup", "--groups=daemon"}

	tests := []struct {
		name       string
		config     string
		as         []string
		args       []string
		wantStatus int
		wantOut    string
		wantErr    string
	}{
		{name: "stats as root", config: config, args: []string{"/debug/stats"}, wantOut: `"queries"`},
		{name: "group member", config: config, as: inDaemon, args: []string{"/debug/stats"}, wantOut: `"queries"`},
		{name: "not in group", config: config, as: nobody, args: []string{"/debug/stats"}, wantStatus: 1,
			wantErr: "cannot read " + filepath.Join(certs, "client_key.pem") + ": permission denied; add yourself to group daemon"},
		{name: "no config", config: filepath.Join(cfgDir, "missing"), args: []string{"/debug/stats"}, wantStatus: 1, wantErr: "no config at"},
		{name: "no certificates", config: noCerts, args: []string{"/debug/stats"}, wantStatus: 1, wantErr: "does not exist: create the certificates with stenokeys.sh"},
		{name: "bad JSON", config: badJSON, args: []string{"/debug/stats"}, wantStatus: 1, wantErr: "is not valid JSON"},
		{name: "http error", config: config, args: []string{"/query", "--data-raw", "bad query"}, wantStatus: 22, wantOut: badQueryReason},
		{name: "not found", config: config, args: []string{"/nope"}, wantStatus: 22, wantErr: "404"},
		{name: "no path", config: config, args: []string{"debug/stats"}, wantStatus: 2, wantErr: "usage:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errs, status := script(t, tc.config, tc.as, "stenocurl", tc.args...)
			t.Logf("stenocurl %q: status %d\nstdout:\n%sstderr:\n%s", tc.args, status, out, errs)
			if status != tc.wantStatus {
				t.Fatalf("exit status %d, want %d; stdout %q stderr %q", status, tc.wantStatus, out, errs)
			}
			if !strings.Contains(out, tc.wantOut) || !strings.Contains(errs, tc.wantErr) {
				t.Errorf("stdout %q (want %q), stderr %q (want %q)", out, tc.wantOut, errs, tc.wantErr)
			}
		})
	}
}

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
