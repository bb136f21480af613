// HTTPS requests to stenofleet and the checks on their answers.

package fleet_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/tests/internal/daemon"
	"github.com/stenographer-ng/stenographer/tests/internal/pcapfile"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

func caPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", file)
	}
	return pool, nil
}

func (e *fleetEnv) httpClient(c *tls.Config) *http.Client {
	ns := "/var/run/netns/" + e.ns
	return &http.Client{Transport: &http.Transport{TLSClientConfig: c, DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return daemon.DialInNS(ctx, ns, network, addr)
		}}}
}

// refused checks that a client with certs gets no answer: the handshake
// fails, or (no certificate, where browsers may log in) 401.
func (e *fleetEnv) refused(t *testing.T, certs []tls.Certificate, what string) {
	t.Helper()
	pool, err := caPool(filepath.Join(e.dir, "analysts_ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	tc := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	if len(certs) > 0 {
		// Sent whatever CAs the server names: a client picking by them
		// would send none, which is the 401 case.
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &certs[0], nil }
	}
	c := e.httpClient(tc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", "https://"+fleetAddr+"/query", strings.NewReader("host "+sharedHost))
	resp, err := c.Do(req)
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if len(certs) > 0 || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: status %d, %d bytes; want the TLS handshake refused or 401", what, resp.StatusCode, len(body))
		}
	}
}

type answer struct {
	status  int
	body    []byte
	raw     []byte
	trailer http.Header
}

func (e *fleetEnv) do(t *testing.T, method, path, ctype, body string, hdr map[string]string) answer {
	t.Helper()
	return e.doAt(t, fleetAddr, method, path, ctype, body, hdr)
}

// doAt is do on the instance listening on addr.
func (e *fleetEnv) doAt(t *testing.T, addr, method, path, ctype, body string, hdr map[string]string) answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "https://"+addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading: %v", method, path, err)
	}
	return answer{status: resp.StatusCode, body: b, raw: b, trailer: resp.Trailer}
}

func (e *fleetEnv) expect(t *testing.T, a answer, what string, status int) answer {
	t.Helper()
	if a.status != status {
		t.Fatalf("%s: status %d, want %d: %s", what, a.status, status, testenv.Tail(a.body, 300))
	}
	if status == http.StatusOK && a.trailer.Get("Steno-Missing-Sensors") != "" && !strings.Contains(what, "bad") {
		t.Errorf("%s: Steno-Missing-Sensors %q", what, a.trailer.Get("Steno-Missing-Sensors"))
	}
	return a
}

func (e *fleetEnv) query(t *testing.T, path, q string, status int) *pcapfile.File {
	t.Helper()
	a := e.expect(t, e.do(t, "POST", path, "", q, nil), "POST "+path+" "+q, status)
	if status != http.StatusOK {
		return nil
	}
	e.tcpdumpReads(t, q, a.body)
	return parse(t, a.body)
}

type got struct {
	*pcapfile.File
	raw []byte
}

func (e *fleetEnv) get(t *testing.T, path string, status int) got {
	t.Helper()
	a := e.expect(t, e.do(t, "GET", path, "", "", nil), "GET "+path, status)
	g := got{raw: a.body}
	if status == http.StatusOK && !strings.HasPrefix(path, "/stats") && !strings.HasPrefix(path, "/metrics") {
		g.File = parse(t, a.body)
	}
	return g
}

// getRaw is a GET whose answer is not a PCAP (JSON, or an error).
func (e *fleetEnv) getRaw(t *testing.T, path string, status int) []byte {
	t.Helper()
	return e.expect(t, e.do(t, "GET", path, "", "", nil), "GET "+path, status).body
}

func (e *fleetEnv) post(t *testing.T, path, ctype, body string, status int) got {
	t.Helper()
	a := e.expect(t, e.do(t, "POST", path, ctype, body, nil), "POST "+path+" "+body, status)
	return got{File: parse(t, a.body), raw: a.body}
}

func parse(t *testing.T, b []byte) *pcapfile.File {
	t.Helper()
	f, err := pcapfile.Parse(b)
	if err != nil {
		t.Fatalf("not a PCAP (%d bytes): %v", len(b), err)
	}
	return f
}

// union is what the sensors return alone for q, merged in timestamp order
// (ties in sensor order, as stenofleet's merge breaks them).
func (e *fleetEnv) union(t *testing.T, q string, sensors []*sensorNode) []pcapfile.Packet {
	t.Helper()
	var all []pcapfile.Packet
	for _, s := range sensors {
		all = append(all, parse(t, s.d.MustQuery(q, nil)).Packets...)
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].Time.Before(all[j].Time) })
	if len(all) == 0 {
		t.Fatalf("%q: no sensor returns a packet; the test checks nothing", q)
	}
	return all
}

func (e *fleetEnv) samePackets(t *testing.T, what string, gotP, want []pcapfile.Packet) {
	t.Helper()
	if len(gotP) != len(want) {
		t.Errorf("%s: %d packets, want %d", what, len(gotP), len(want))
		return
	}
	for i := range want {
		g, w := gotP[i], want[i]
		if !g.Time.Equal(w.Time) || g.WireLen != w.WireLen || !bytes.Equal(g.Data, w.Data) {
			t.Errorf("%s: packet %d is %v/%d/%x, want %v/%d/%x", what, i, g.Time, g.WireLen, g.Data[:min(len(g.Data), 40)],
				w.Time, w.WireLen, w.Data[:min(len(w.Data), 40)])
			return
		}
	}
}

var tcpdumpLine = regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d\.\d+ `)

// tcpdumpReads has the real tcpdump read the merged result.
func (e *fleetEnv) tcpdumpReads(t *testing.T, what string, data []byte) {
	t.Helper()
	f := filepath.Join(e.dir, "merged-"+strconv.Itoa(len(data))+".pcap")
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatal(err)
	}
	r := testenv.Run(testenv.Deadline, "tcpdump", "-n", "-r", f)
	if r.Err != nil {
		t.Fatalf("%s: tcpdump -r: %v", what, r.Err)
	}
	if n, want := len(tcpdumpLine.FindAll(r.Stdout, -1)), len(parse(t, data).Packets); n != want {
		t.Errorf("%s: tcpdump prints %d packets, the file holds %d", what, n, want)
	}
}

// waitCount polls a sensor until q returns want packets.
func (s *sensorNode) waitCount(t *testing.T, q string, want int) {
	t.Helper()
	n := -1
	ok := s.d.Poll(90*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r, err := s.d.Query(ctx, q, nil)
		if err != nil || r.Status != http.StatusOK {
			return false
		}
		f, err := pcapfile.Parse(r.Body)
		if err != nil {
			return false
		}
		n = len(f.Packets)
		return n >= want
	})
	if !ok || n != want {
		t.Fatalf("%s: %q returns %d packets, want %d", s.name, q, n, want)
	}
}
