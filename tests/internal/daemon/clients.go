// Clients of a running daemon: TLS, HTTPS requests, metrics, gRPC address.

package daemon

import (
	"bufio"
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
	"strconv"
	"strings"
	"time"

	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// NSPath is the capture namespace's file for setns.
func (d *Daemon) NSPath() string { return "/var/run/netns/" + d.Pair.CaptureNS }

// TLSConfig is a client configuration with the client certificate of
// CertPath, trusting its CA.
func (d *Daemon) TLSConfig() *tls.Config {
	d.t.Helper()
	d.clientOnce.Do(func() {
		c, err := ClientTLS(filepath.Join(d.CertDir, "ca_cert.pem"), filepath.Join(d.CertDir, "client_cert.pem"), filepath.Join(d.CertDir, "client_key.pem"))
		if err != nil {
			d.t.Fatal(err)
		}
		d.tlsConfig = c
		d.client = d.HTTPClient(c)
	})
	return d.tlsConfig
}

// ClientTLS loads a client TLS configuration; certFile may be empty for no
// client certificate.
func ClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("client tls: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("client tls: no certificate in %s", caFile)
	}
	c := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if certFile != "" {
		kp, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client tls: %s / %s: %w", certFile, keyFile, err)
		}
		c.Certificates = []tls.Certificate{kp}
	}
	return c, nil
}

// HTTPClient is an HTTPS client dialing inside the capture namespace.
func (d *Daemon) HTTPClient(c *tls.Config) *http.Client {
	ns := d.NSPath()
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig: c,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return DialInNS(ctx, ns, network, addr)
		},
		MaxIdleConnsPerHost: 32,
		ForceAttemptHTTP2:   false,
	}}
}

// URL of a path on the HTTPS port.
func (d *Daemon) URL(path string) string {
	return fmt.Sprintf("https://127.0.0.1:%d%s", HTTPSPort, path)
}

// GRPCAddr is the gRPC address inside the namespace.
func GRPCAddr() string { return fmt.Sprintf("127.0.0.1:%d", GRPCPort) }

// Get fetches a path with the client certificate.
func (d *Daemon) Get(ctx context.Context, path string) (int, []byte, error) {
	d.TLSConfig()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.URL(path), nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// QueryResult is the answer to POST /query.
type QueryResult struct {
	Status int
	Header http.Header
	Body   []byte
}

// Query POSTs a query with the client certificate; headers are extra
// request headers (e.g. Steno-Limit-Packets).
func (d *Daemon) Query(ctx context.Context, query string, headers map[string]string) (*QueryResult, error) {
	return d.post(ctx, "/query", query, headers)
}

// Explain POSTs a query to /explain and returns its text, which must
// come with status 200.
func (d *Daemon) Explain(ctx context.Context, query string) (string, error) {
	r, err := d.post(ctx, "/explain", query, nil)
	if err != nil {
		return "", err
	}
	if r.Status != http.StatusOK {
		return "", fmt.Errorf("POST /explain %q: status %d: %s", query, r.Status, testenv.Tail(r.Body, 300))
	}
	return string(r.Body), nil
}

func (d *Daemon) post(ctx context.Context, path, query string, headers map[string]string) (*QueryResult, error) {
	d.TLSConfig()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL(path), strings.NewReader(query))
	if err != nil {
		return nil, err
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("POST %s %q: %w", path, query, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("POST %s %q: reading the body (after %d bytes): %w", path, query, len(body), err)
	}
	return &QueryResult{Status: resp.StatusCode, Header: resp.Header, Body: body}, nil
}

// MustQuery is Query that fails the test unless the status is 200.
func (d *Daemon) MustQuery(query string, headers map[string]string) []byte {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := d.Query(ctx, query, headers)
	if err != nil {
		d.t.Fatal(err)
	}
	if r.Status != http.StatusOK {
		d.t.Fatalf("POST /query %q: status %d: %s", query, r.Status, testenv.Tail(r.Body, 500))
	}
	return r.Body
}

// Metrics fetches /metrics and sums each metric's samples over their
// labels ("name" → sum), also keeping each labelled sample
// ("name{labels}" → value).
func (d *Daemon) Metrics() (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code, body, err := d.Get(ctx, "/metrics")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: status %d: %s", code, testenv.Tail(body, 300))
	}
	return ParseMetrics(body), nil
}

var sampleRE = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)`)

// ParseMetrics reads the Prometheus text format (see Metrics).
func ParseMetrics(body []byte) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		m := sampleRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			continue
		}
		out[m[1]] += v
		if m[2] != "" {
			out[m[1]+m[2]] = v
		}
	}
	return out
}
