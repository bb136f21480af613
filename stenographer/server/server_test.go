package server_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/stenographer/connlimit"
	"github.com/stenographer-ng/stenographer/stenographer/metrics"
	"github.com/stenographer-ng/stenographer/stenographer/pcap"
	"github.com/stenographer-ng/stenographer/stenographer/server"
	"github.com/stenographer-ng/stenographer/stenographer/server/servertest"
	"github.com/stenographer-ng/stenographer/stenographer/store"
	"github.com/stenographer-ng/stenographer/stenographer/tlsconfig/testcerts"
)

// small is the store most tests use: 2000 packets over 2 threads and 10
// files, one every 100 ms.
var small = servertest.Layout{Packets: 2000, PerFile: 200, Step: 100 * time.Millisecond}

// big is a result too large for socket buffers (about 17 MB), for tests
// of clients that stop reading.
var big = servertest.Layout{Packets: 12000, PerFile: 3000, Size: 1400, Step: time.Millisecond}

type env struct {
	m      *metrics.Metrics
	st     *store.Store
	certs  *testcerts.Set
	url    string
	client *http.Client
	stop   func() error // cancels Serve and returns its result
}

type runningConfig struct {
	Port    int
	Threads []string
}

func start(t *testing.T, l servertest.Layout) *env {
	t.Helper()
	return startWith(t, l, server.Config{})
}

// startWith starts a server over a new store laid out as l, with cfg's
// optional fields.
func startWith(t *testing.T, l servertest.Layout, cfg server.Config) *env {
	t.Helper()
	return startStore(t, servertest.Store(t, l), cfg)
}

func startStore(t *testing.T, st *store.Store, cfg server.Config) *env {
	t.Helper()
	e := &env{st: st, certs: servertest.Certs(t)}
	cfg.Addr, cfg.CertPath, cfg.Store = "127.0.0.1:0", e.certs.Dir, e.st
	cfg.RunningConfig = runningConfig{Port: 1234, Threads: []string{"a", "b"}}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.stop = servertest.Serve(t, srv)
	e.url = "https://" + srv.Addr().String()
	e.m = srv.Metrics()
	e.client = servertest.HTTPClient(t, e.certs, e.certs.Client)
	return e
}

func (e *env) post(t *testing.T, q string, headers map[string]string) *http.Response {
	t.Helper()
	return e.postHeaders(t, "/query", q, headers)
}

// postTo posts q to path.
func (e *env) postTo(t *testing.T, path, q string) *http.Response {
	t.Helper()
	return e.postHeaders(t, path, q, nil)
}

func (e *env) postHeaders(t *testing.T, path, q string, headers map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.url+path, strings.NewReader(q))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("POST %s %q: %v", path, q, err)
	}
	return resp
}

func (e *env) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	resp, err := e.client.Get(e.url + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, body
}

func TestQuery(t *testing.T) {
	t.Parallel()
	e := start(t, small)
	for _, tc := range []struct {
		name    string
		query   string
		headers map[string]string
		limits  pcap.Limits
		want    int // packets
	}{
		{"one port", "port 1003", nil, pcap.Limits{}, 200},
		{"two ports", "port 1003 or port 1006", nil, pcap.Limits{}, 400},
		{"everything", "after 3h ago", nil, pcap.Limits{}, 2000},
		{"legacy syntax", "port=1001 last=3h", nil, pcap.Limits{}, 200},
		{"time and port", "port 1004 and before 2h ago", nil, pcap.Limits{}, -1},
		{"no match", "port 2000", nil, pcap.Limits{}, 0},
		{"packet limit", "after 3h ago", map[string]string{server.HeaderLimitPackets: "7"}, pcap.Limits{MaxPackets: 7}, 7},
		{"byte limit", "port 1002", map[string]string{server.HeaderLimitBytes: "1000"}, pcap.Limits{MaxBytes: 1000}, -1},
		{"both limits", "after 3h ago", map[string]string{server.HeaderLimitPackets: "50", server.HeaderLimitBytes: " 2000 "}, pcap.Limits{MaxPackets: 50, MaxBytes: 2000}, -1},
		{"zero limits", "port 1000", map[string]string{server.HeaderLimitPackets: "0", server.HeaderLimitBytes: "0"}, pcap.Limits{}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, res := servertest.Expected(t, e.st, tc.query, tc.limits)
			resp := e.post(t, tc.query, tc.headers)
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d (%s)", resp.StatusCode, got)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
				t.Errorf("Content-Type %q", ct)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("result differs from the store's answer: %d bytes, want %d", len(got), len(want))
			}
			pkts := servertest.Packets(t, got)
			if tc.want >= 0 && len(pkts) != tc.want {
				t.Errorf("%d packets, want %d", len(pkts), tc.want)
			}
			if l := tc.limits.MaxBytes; l > 0 {
				servertest.CheckByteLimit(t, got, l)
				if res.Truncated && int64(len(got)) < l {
					t.Errorf("%d bytes cut by a %d byte limit; want the packet that reached it too", len(got), l)
				}
			}
			if tr := resp.Trailer.Get(server.TrailerTruncated); tr != strconv.FormatBool(res.Truncated) {
				t.Errorf("trailer %s = %q; store says truncated=%v", server.TrailerTruncated, tr, res.Truncated)
			}
			if tr := resp.Trailer.Get(server.TrailerBytes); tr != strconv.Itoa(len(got)) {
				t.Errorf("trailer %s = %q; got %d bytes", server.TrailerBytes, tr, len(got))
			}
		})
	}
}

func TestBadRequests(t *testing.T) {
	t.Parallel()
	e := start(t, small)
	for _, tc := range []struct {
		name    string
		method  string
		query   string
		headers map[string]string
		code    int
		reason  string // in the one-line body
	}{
		{"port out of range", "POST", "port 70000", nil, 400, "position 6"},
		{"trailing garbage", "POST", "port 53 foo", nil, 400, "position 9"},
		{"hostname", "POST", "host example.com", nil, 400, "position"},
		{"empty", "POST", "", nil, 400, "empty query"},
		{"negative limit", "POST", "port 1000", map[string]string{server.HeaderLimitPackets: "-1"}, 400, server.HeaderLimitPackets},
		{"word limit", "POST", "port 1000", map[string]string{server.HeaderLimitBytes: "lots"}, 400, server.HeaderLimitBytes},
		{"fraction limit", "POST", "port 1000", map[string]string{server.HeaderLimitBytes: "1.5"}, 400, server.HeaderLimitBytes},
		{"empty limit", "POST", "port 1000", map[string]string{server.HeaderLimitPackets: ""}, 400, server.HeaderLimitPackets},
		{"huge body", "POST", "port 1000 or " + strings.Repeat("port 1 or ", server.MaxQueryBytes/10) + "port 2", nil, 400, "longer than"},
		{"GET", "GET", "", nil, 405, ""},
		{"PUT", "PUT", "port 1000", nil, 405, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.m.Queries()[metrics.TransportHTTP]
			req, err := http.NewRequest(tc.method, e.url+"/query", strings.NewReader(tc.query))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.headers {
				req.Header[k] = []string{v}
			}
			resp, err := e.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d (%q), want %d", resp.StatusCode, body, tc.code)
			}
			if tc.code == 405 {
				return
			}
			line := strings.TrimSuffix(string(body), "\n")
			if strings.Contains(line, "\n") || !strings.Contains(line, tc.reason) {
				t.Errorf("body %q: want one line naming %q", body, tc.reason)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type %q", ct)
			}
			after := e.m.Queries()[metrics.TransportHTTP]
			if got := after.ByOutcome[metrics.OutcomeBadQuery] - before.ByOutcome[metrics.OutcomeBadQuery]; got != 1 {
				t.Errorf("bad_query count went up by %d, want 1", got)
			}
		})
	}
}

// TestClientGoneCancels stops reading a large result and disconnects: the
// query must end (in-flight back to 0, counted as canceled) without the
// result being read. A client that would rather speak HTTP/2 (curl's
// default) is answered in HTTP/1.1, which streams large results faster.
func TestClientGoneCancels(t *testing.T) {
	t.Parallel()
	e := start(t, big)
	for _, wantH2 := range []bool{false, true} {
		const proto = "HTTP/1.1"
		t.Run(fmt.Sprintf("client offers h2: %v", wantH2), func(t *testing.T) {
			tr := e.client.Transport.(*http.Transport).Clone()
			tr.ForceAttemptHTTP2 = wantH2
			defer tr.CloseIdleConnections()
			before := e.m.Queries()[metrics.TransportHTTP]
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.url+"/query", strings.NewReader("after 3h ago"))
			resp, err := (&http.Client{Transport: tr}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Proto != proto {
				t.Fatalf("spoke %s, want %s", resp.Proto, proto)
			}
			// The PCAP header is sent before the query runs.
			var hdr [pcap.FileHeaderSize]byte
			if _, err := io.ReadFull(resp.Body, hdr[:]); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(hdr[:4], []byte{0xd4, 0xc3, 0xb2, 0xa1}) {
				t.Errorf("stream starts % x; want the PCAP magic", hdr[:4])
			}
			if n := e.m.Queries()[metrics.TransportHTTP].InFlight; n != 1 {
				t.Errorf("%d queries in flight while reading, want 1", n)
			}
			cancel()
			resp.Body.Close()
			servertest.Eventually(t, "the query to end", func() bool {
				return e.m.Queries()[metrics.TransportHTTP].InFlight == 0
			})
			after := e.m.Queries()[metrics.TransportHTTP]
			if got := after.ByOutcome[metrics.OutcomeCanceled] - before.ByOutcome[metrics.OutcomeCanceled]; got != 1 {
				t.Errorf("canceled count went up by %d, want 1 (outcomes %v)", got, after.ByOutcome)
			}
			if sent, total := after.Bytes-before.Bytes, int64(big.Packets*(big.Size+16)); sent < pcap.FileHeaderSize || sent >= total {
				t.Errorf("server produced %d bytes of %d: the query was not cut short", sent, total)
			}
		})
	}
}

// TestShutdownCancelsQueries shuts the server down while a client holds a
// query open without reading: Serve must return nil, ending the query.
func TestShutdownCancelsQueries(t *testing.T) {
	t.Parallel()
	e := start(t, big)
	resp := e.post(t, "after 3h ago", nil)
	defer resp.Body.Close()
	if _, err := io.ReadFull(resp.Body, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	servertest.MustStop(t, "a query in flight", e.stop)
	if n := e.m.Queries()[metrics.TransportHTTP].InFlight; n != 0 {
		t.Errorf("%d queries in flight after shutdown", n)
	}
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Error("the interrupted result read to a clean end; want a broken transfer")
	}
}

// TestRefused checks that only a client certificate from the CA, valid
// now and usable for client authentication, gets an answer, and that
// plain HTTP gets nothing.
func TestRefused(t *testing.T) {
	t.Parallel()
	e := start(t, small)
	addr := strings.TrimPrefix(e.url, "https://")
	for _, tc := range []struct {
		name string
		cfg  func() *tls.Config
	}{
		{"no client certificate", func() *tls.Config { return servertest.TLS(t, e.certs, testcerts.Pair{}) }},
		{"another CA", func() *tls.Config { return servertest.TLS(t, e.certs, e.certs.OtherCAClient) }},
		{"expired", func() *tls.Config { return servertest.TLS(t, e.certs, e.certs.ExpiredClient) }},
		{"server usage only", func() *tls.Config { return servertest.TLS(t, e.certs, e.certs.ServerUsageClient) }},
		{"TLS 1.1", func() *tls.Config {
			c := servertest.TLS(t, e.certs, e.certs.Client)
			c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
			return c
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.m.Queries()[metrics.TransportHTTP]
			client := &http.Client{Transport: &http.Transport{TLSClientConfig: tc.cfg()}}
			resp, err := client.Post(e.url+"/query", "text/plain", strings.NewReader("port 1001"))
			if err == nil {
				resp.Body.Close()
				t.Fatalf("request answered with status %d; want the handshake refused", resp.StatusCode)
			}
			t.Logf("refused: %v", err)
			after := e.m.Queries()[metrics.TransportHTTP]
			if after.ByOutcome[metrics.OutcomeOK] != before.ByOutcome[metrics.OutcomeOK] {
				t.Error("a query ran")
			}
		})
	}
	t.Run("good certificate", func(t *testing.T) {
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: servertest.TLS(t, e.certs, e.certs.Client)}}
		resp, err := client.Get(e.url + "/debug/stats")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
	t.Run("plain HTTP", func(t *testing.T) {
		for _, path := range []string{"/query", "/debug/stats", "/metrics"} {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			conn.SetDeadline(time.Now().Add(30 * time.Second))
			io.WriteString(conn, "POST "+path+" HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nport 1001")
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			conn.Close()
			if err != nil {
				continue // connection closed: nothing served
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusBadRequest || bytes.Contains(body, []byte{0xd4, 0xc3, 0xb2, 0xa1}) || bytes.Contains(body, []byte("stenographer")) {
				t.Errorf("plain HTTP %s: status %d body %q", path, resp.StatusCode, body)
			}
		}
	})
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	st := servertest.Store(t, servertest.Layout{Packets: 10, PerFile: 10, Step: time.Second})
	certs := servertest.Certs(t)
	for _, f := range []string{server.CACertFile, server.ServerCertFile, server.ServerKeyFile} {
		t.Run("missing "+f, func(t *testing.T) {
			dir := t.TempDir()
			for _, g := range []string{server.CACertFile, server.ServerCertFile, server.ServerKeyFile} {
				if g != f {
					data, _ := os.ReadFile(filepath.Join(certs.Dir, g))
					os.WriteFile(filepath.Join(dir, g), data, 0o600)
				}
			}
			_, err := server.New(server.Config{Addr: "127.0.0.1:0", CertPath: dir, Store: st})
			if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, f)) {
				t.Errorf("New: %v; want an error naming %s", err, f)
			}
		})
	}
	t.Run("key of another certificate", func(t *testing.T) {
		dir := t.TempDir()
		for src, dst := range map[string]string{certs.CA: server.CACertFile, certs.Server.Cert: server.ServerCertFile, certs.Client.Key: server.ServerKeyFile} {
			data, _ := os.ReadFile(src)
			os.WriteFile(filepath.Join(dir, dst), data, 0o600)
		}
		if _, err := server.New(server.Config{CertPath: dir, Store: st}); err == nil || !strings.Contains(err.Error(), server.ServerKeyFile) {
			t.Errorf("New: %v; want an error naming the key", err)
		}
	})
	t.Run("address in use", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		srv, err := server.New(server.Config{Addr: ln.Addr().String(), CertPath: certs.Dir, Store: st})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := srv.Serve(ctx); err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Serve on a busy address: %v; want a listen error", err)
		}
	})
}

// TestIdleConnections opens more idle TCP connections than the server
// allows from one address: a client on another address still gets its
// answer, and the server closes every idle one (those over the bound at
// once, the rest when the handshake timeout passes).
func TestIdleConnections(t *testing.T) {
	t.Parallel()
	e := startWith(t, small, server.Config{Conns: connlimit.Limits{MaxConns: 30, MaxConnsPerIP: 10, HandshakeTimeout: time.Second}})
	idle := servertest.IdleConns(t, strings.TrimPrefix(e.url, "https://"), 40)
	resp := e.post(t, "port 1001", nil)
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || len(servertest.Packets(t, got)) != 200 {
		t.Errorf("query with 40 idle connections open: %d, %d bytes, %v", resp.StatusCode, len(got), err)
	}
	servertest.WaitClosed(t, idle)
}

type captureDown time.Time

func (c captureDown) CaptureState() (bool, time.Time) { return false, time.Time(c) }

// TestUnreadableFileAndCaptureDown spoils one index file and reports
// capture down: the result has every other file's packets, its trailers
// count and name the file, and the Steno-Capture header, /debug/stats and
// /metrics say since when capture is down.
func TestUnreadableFileAndCaptureDown(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st := servertest.StoreIn(t, dir, small)
	bad := st.Files(0)[2]
	if err := os.WriteFile(filepath.Join(dir, "IDX0", bad.Name), bytes.Repeat([]byte{0xee}, 5000), 0o644); err != nil {
		t.Fatal(err)
	}
	down := time.Now().Add(-time.Hour).Truncate(time.Second)
	e := startStore(t, st, server.Config{Capture: captureDown(down)})
	resp := e.post(t, "after 3h ago", nil)
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("query: %d %v", resp.StatusCode, err)
	}
	if n := len(servertest.Packets(t, got)); n != small.Packets-100 {
		t.Errorf("%d packets, want the %d of the readable files", n, small.Packets-100)
	}
	if v := resp.Trailer.Get(server.TrailerFileErrors); v != "1" {
		t.Errorf("trailer %s = %q, want 1", server.TrailerFileErrors, v)
	}
	if v := resp.Trailer.Get(server.TrailerFileErrorDetail); !strings.Contains(v, bad.Name) {
		t.Errorf("trailer %s = %q, want it to name %s", server.TrailerFileErrorDetail, v, bad.Name)
	}
	wantDown := "down since " + down.UTC().Format(time.RFC3339)
	if v := resp.Header.Get(server.HeaderCapture); v != wantDown {
		t.Errorf("header %s = %q, want %q", server.HeaderCapture, v, wantDown)
	}
	_, body := e.get(t, "/debug/stats")
	stats := parseStatsText(t, body)
	if stats["capture_up"] != 0 || stats["capture_down_since"] != down.UnixNano() || stats["http_queries_file_errors"] != 1 {
		t.Errorf("/debug/stats: capture_up %d, capture_down_since %d (want %d), http_queries_file_errors %d",
			stats["capture_up"], stats["capture_down_since"], down.UnixNano(), stats["http_queries_file_errors"])
	}
	_, body = e.get(t, "/metrics")
	for _, c := range []struct {
		name, labels string
		want         float64
	}{
		{"stenographer_capture_up", `thread="0"`, 0},
		{"stenographer_capture_down_since_seconds", `thread="1"`, float64(down.Unix())},
		{"stenographer_query_file_errors_total", `transport="http"`, 1},
	} {
		if v := metricValue(t, string(body), c.name, c.labels); v != c.want {
			t.Errorf("%s{%s} = %v, want %v", c.name, c.labels, v, c.want)
		}
	}
}

// TestCaptureUp: no Steno-Capture header while capture runs.
func TestCaptureUp(t *testing.T) {
	t.Parallel()
	e := startWith(t, small, server.Config{Capture: captureUp{}})
	resp := e.post(t, "port 1001", nil)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if v, ok := resp.Header[server.HeaderCapture]; ok {
		t.Errorf("header %s = %q while capture is up", server.HeaderCapture, v)
	}
	_, body := e.get(t, "/metrics")
	if v := metricValue(t, string(body), "stenographer_capture_up", `thread="1"`); v != 1 {
		t.Errorf("stenographer_capture_up = %v while capture is up", v)
	}
}

type captureUp struct{}

func (captureUp) CaptureState() (bool, time.Time) { return true, time.Time{} }

// TestIdleFlood fills the connection bound with idle connections that
// stay within a long handshake timeout: a client with a certificate still
// gets its answers (its connection takes the place of the oldest idle
// one), also after more idle connections came while it was connected.
func TestIdleFlood(t *testing.T) {
	t.Parallel()
	e := startWith(t, small, server.Config{Conns: connlimit.Limits{MaxConns: 20, MaxConnsPerIP: 1000, HandshakeTimeout: time.Hour}})
	addr := strings.TrimPrefix(e.url, "https://")
	servertest.IdleConns(t, addr, 60)
	for i := range 2 {
		resp := e.post(t, "port 1001", nil)
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || len(servertest.Packets(t, got)) != 200 {
			t.Errorf("query %d with the bound full of idle connections: %d, %d bytes, %v", i, resp.StatusCode, len(got), err)
		}
		servertest.IdleConns(t, addr, 30)
	}
}
