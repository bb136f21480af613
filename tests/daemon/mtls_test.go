package daemon_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/stenographer-ng/stenographer/protobuf"
	"github.com/stenographer-ng/stenographer/stenographer/server/servertest"
	"github.com/stenographer-ng/stenographer/tests/internal/daemon"
	"github.com/stenographer-ng/stenographer/tests/internal/netns"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// pcapMagics are the first bytes of a classic pcap in either byte order.
var pcapMagics = [][]byte{{0xd4, 0xc3, 0xb2, 0xa1}, {0xa1, 0xb2, 0xc3, 0xd4}, {0x4d, 0x3c, 0xb2, 0xa1}, {0xa1, 0xb2, 0x3c, 0x4d}}

func hasPCAP(b []byte) bool {
	for _, m := range pcapMagics {
		if bytes.Contains(b, m) {
			return true
		}
	}
	return false
}

// clientCert is a key pair a client presents ("" for none).
type clientCert struct {
	name      string
	cert, key string
}

// TestMTLS: the HTTPS and gRPC servers refuse a client without a
// certificate, with a certificate from another CA, with an expired one,
// and with a server-usage-only certificate of the right CA; plain HTTP
// gets no PCAP; the right client certificate gets the packets. The same
// daemon has small gRPC limits: ServerPcapMaxSize caps every stream (the
// trailer says it was cut) and ClientPcapChunkSize sizes the responses.
func TestMTLS(t *testing.T) {
	testenv.RequireTools(t, "tcpreplay", "openssl", "curl")
	pair := netns.NewPair(t)
	// Small gRPC limits, checked at the end: a server cap and a chunk size.
	const serverCap, chunk = 4000, 512
	d := daemon.Start(t, pair, daemon.Options{RPC: true, RPCEdit: func(r *daemon.RPC) {
		r.ServerPcapMaxSize, r.ClientPcapChunkSize = serverCap, chunk
	}})
	gp := generatedPcap(t)
	frames := framesOf(t, gp)
	replay(t, pair, 500, len(frames), gp)
	waitCount(t, d, everything, len(frames), 2*time.Minute)

	dir := t.TempDir()
	caCert, caKey := filepath.Join(d.CertDir, "ca_cert.pem"), filepath.Join(d.CertDir, "ca_key.pem")
	otherCA, otherKey := opensslCA(t, dir, "other_ca")
	bad := []clientCert{
		{name: "no client certificate"},
		opensslLeaf(t, dir, "other_ca_client", otherCA, otherKey, "clientAuth"),
		goLeaf(t, dir, "expired", caCert, caKey, time.Now().Add(-72*time.Hour), time.Now().Add(-24*time.Hour)),
		opensslLeaf(t, dir, "server_usage", caCert, caKey, "serverAuth"),
	}
	good := clientCert{name: "the client certificate", cert: filepath.Join(d.CertDir, "client_cert.pem"), key: filepath.Join(d.CertDir, "client_key.pem")}
	// The certificates that must be refused are otherwise well formed:
	// openssl verifies the other CA's client against its own CA.
	must(t, testenv.Run(time.Minute, "openssl", "verify", "-CAfile", otherCA, bad[1].cert))

	curl := func(t *testing.T, c clientCert, url string) (code string, body []byte, err error) {
		out := filepath.Join(t.TempDir(), "out")
		args := []string{"-sS", "--max-time", "60", "--cacert", caCert, "-o", out, "-w", "%{http_code}",
			"-H", "Content-Type: text/plain", "--data-binary", everything}
		if c.cert != "" {
			args = append(args, "--cert", c.cert, "--key", c.key)
		}
		r := d.Run(2*time.Minute, "curl", append(args, url)...)
		body, _ = os.ReadFile(out)
		if r.Err != nil {
			// curl's own message is the useful part.
			err = errors.New(strings.TrimSpace(testenv.Tail(r.Stderr, 300)))
		}
		return strings.TrimSpace(string(r.Stdout)), body, err
	}

	t.Run("https", func(t *testing.T) {
		code, body, err := curl(t, good, d.URL("/query"))
		if err != nil || code != "200" || !hasPCAP(body) {
			t.Fatalf("%s: curl %v, HTTP %s, %d bytes: want 200 and a PCAP (the control case)", good.name, err, code, len(body))
		}
		if n := len(parsePCAP(t, "control", body).Packets); n != len(frames) {
			t.Errorf("control: %d packets, want %d", n, len(frames))
		}
		for _, c := range bad {
			code, body, err := curl(t, c, d.URL("/query"))
			if code == "200" || hasPCAP(body) {
				t.Errorf("%s: HTTP %s with %d bytes (PCAP: %v): want the connection refused", c.name, code, len(body), hasPCAP(body))
			} else {
				t.Logf("%s: refused (curl: %v, HTTP %s)", c.name, err, code)
			}
		}
	})

	t.Run("plain http", func(t *testing.T) {
		code, body, err := curl(t, clientCert{}, strings.Replace(d.URL("/query"), "https://", "http://", 1))
		if code == "200" || hasPCAP(body) {
			t.Errorf("plain HTTP: status %s, %d bytes (PCAP: %v): want no PCAP", code, len(body), hasPCAP(body))
		} else {
			t.Logf("plain HTTP: no PCAP (curl: %v, HTTP %s, body %q)", err, code, testenv.Tail(body, 100))
		}
	})

	t.Run("grpc", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		req := &pb.PcapRequest{Uid: "mtls", Query: everything}
		res, err := daemon.Retrieve(ctx, d.GRPCConn(tlsFor(t, caCert, good)), req)
		if err != nil || !hasPCAP(res.PCAP) {
			t.Fatalf("%s: %v: want a PCAP (the control case)", good.name, err)
		}
		for _, c := range bad {
			res, err := daemon.Retrieve(ctx, d.GRPCConn(tlsFor(t, caCert, c)), req)
			if err == nil || (res != nil && len(res.PCAP) > 0) {
				t.Errorf("%s: RetrievePcap error %v, %d PCAP bytes: want it refused", c.name, err, pcapLen(res))
			} else {
				t.Logf("%s: refused: %v", c.name, err)
			}
		}
		// No TLS at all.
		ns := d.NSPath()
		conn, err := grpc.NewClient("passthrough:///"+daemon.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return daemon.DialInNS(ctx, ns, "tcp", addr) }))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if res, err := daemon.Retrieve(ctx, conn, req); err == nil || (res != nil && len(res.PCAP) > 0) {
			t.Errorf("gRPC without TLS: error %v, %d PCAP bytes: want it refused", err, pcapLen(res))
		}
	})

	t.Run("grpc server limits", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		conn := d.GRPCConn(nil)
		// ServerPcapMaxSize caps even a request for more; chunk_size 0
		// means ClientPcapChunkSize.
		for _, max := range []int64{0, 1 << 30} {
			res, err := daemon.Retrieve(ctx, conn, &pb.PcapRequest{Uid: "cap", MaxSize: max, Query: everything})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.PCAP) < serverCap {
				t.Errorf("max_size %d: %d bytes, want ServerPcapMaxSize %d and the packet that crossed it", max, len(res.PCAP), serverCap)
			}
			servertest.CheckByteLimit(t, res.PCAP, serverCap)
			parsePCAP(t, "capped result", res.PCAP)
			if v := res.Trailer.Get("steno-truncated"); len(v) == 0 || v[0] != "true" {
				t.Errorf("max_size %d: capped at %d bytes but the trailer says steno-truncated=%v", max, serverCap, v)
			}
			if min := (len(res.PCAP) + chunk - 1) / chunk; res.Chunks < min {
				t.Errorf("%d responses for %d bytes: chunks larger than ClientPcapChunkSize %d", res.Chunks, len(res.PCAP), chunk)
			}
		}
	})
}

func pcapLen(r *daemon.GRPCResult) int {
	if r == nil {
		return 0
	}
	return len(r.PCAP)
}

// tlsFor is a client TLS configuration trusting the daemon's CA and
// presenting c.
func tlsFor(t *testing.T, caCert string, c clientCert) *tls.Config {
	t.Helper()
	cfg, err := daemon.ClientTLS(caCert, c.cert, c.key)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// opensslCA makes a self-signed CA with openssl; it returns the cert and
// key paths.
func opensslCA(t *testing.T, dir, name string) (cert, key string) {
	t.Helper()
	cert, key = filepath.Join(dir, name+"_cert.pem"), filepath.Join(dir, name+"_key.pem")
	must(t, testenv.Run(time.Minute, "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
		"-nodes", "-keyout", key, "-out", cert, "-subj", "/O=elsewhere/CN="+name, "-days", "30",
		"-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"))
	return cert, key
}

// opensslLeaf makes a key and a certificate with extendedKeyUsage eku,
// signed by the given CA.
func opensslLeaf(t *testing.T, dir, name, caCert, caKey, eku string) clientCert {
	t.Helper()
	c := clientCert{name: name + " certificate (" + eku + ")", cert: filepath.Join(dir, name+"_cert.pem"), key: filepath.Join(dir, name+"_key.pem")}
	csr, ext := filepath.Join(dir, name+".csr"), filepath.Join(dir, name+".ext")
	must(t, testenv.Run(time.Minute, "openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
		"-nodes", "-keyout", c.key, "-out", csr, "-subj", "/O=stenographer/CN="+name))
	extText := "[v3]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=" + eku +
		"\nsubjectAltName=IP:127.0.0.1\n"
	if err := os.WriteFile(ext, []byte(extText), 0o644); err != nil {
		t.Fatal(err)
	}
	must(t, testenv.Run(time.Minute, "openssl", "x509", "-req", "-in", csr, "-CA", caCert, "-CAkey", caKey,
		"-set_serial", "0x"+strings.Repeat("5a", 8), "-days", "30", "-sha256", "-extfile", ext, "-extensions", "v3", "-out", c.cert))
	return c
}

// goLeaf makes a client certificate valid only from notBefore to notAfter
// (this openssl, 3.0, cannot backdate with `x509 -req`), signed by the CA.
func goLeaf(t *testing.T, dir, name, caCertFile, caKeyFile string, notBefore, notAfter time.Time) clientCert {
	t.Helper()
	ca := readCert(t, caCertFile)
	caKey := readKey(t, caKeyFile)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{Organization: []string{"stenographer"}, CommonName: name},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c := clientCert{name: name + " certificate (valid " + notBefore.Format(time.DateOnly) + " to " + notAfter.Format(time.DateOnly) + ")",
		cert: filepath.Join(dir, name+"_cert.pem"), key: filepath.Join(dir, name+"_key.pem")}
	if err := os.WriteFile(c.cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

func readKey(t *testing.T, path string) any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	if k, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
		return k
	}
	if k, err := x509.ParseECPrivateKey(b.Bytes); err == nil {
		return k
	}
	t.Fatalf("%s: not a PKCS#8 or EC private key", path)
	return nil
}
