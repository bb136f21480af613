package scripts

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestStenokeys checks the files, owners, modes and key usages stenokeys.sh
// creates, that a second run changes nothing, and that a deleted
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
