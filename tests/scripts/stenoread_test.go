package scripts

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/stenographer-ng/stenographer/tests/internal/pcapfile"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

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
