// Package testcerts writes certificate sets for tests of the mutual-TLS
// servers: a CA, a server certificate for 127.0.0.1/::1/localhost, a good
// client certificate, and the client certificates a server must refuse
// (another CA's, an expired one, a server-usage-only one). It is a test
// helper; nothing outside tests imports it.
package testcerts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Pair names a certificate file and its key file.
type Pair struct{ Cert, Key string }

// Set lists the files Generate wrote. The names of the CA, server and
// good client files are those stenokeys.sh writes into CertPath.
type Set struct {
	Dir    string
	CA     string // ca_cert.pem (ca_key.pem beside it)
	Server Pair   // server_cert.pem, server_key.pem
	Client Pair   // client_cert.pem, client_key.pem

	OtherCA           string // other_ca_cert.pem: a CA the server does not trust
	OtherCAClient     Pair   // client certificate issued by OtherCA
	ExpiredClient     Pair   // issued by CA, expired an hour ago
	ServerUsageClient Pair   // issued by CA with ExtKeyUsageServerAuth only
}

type authority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// Generate writes a Set into dir (which must exist).
func Generate(dir string) (*Set, error) {
	s := &Set{
		Dir:               dir,
		CA:                filepath.Join(dir, "ca_cert.pem"),
		Server:            pair(dir, "server"),
		Client:            pair(dir, "client"),
		OtherCA:           filepath.Join(dir, "other_ca_cert.pem"),
		OtherCAClient:     pair(dir, "other_ca_client"),
		ExpiredClient:     pair(dir, "expired_client"),
		ServerUsageClient: pair(dir, "server_usage_client"),
	}
	ca, err := newAuthority("steno test CA", s.CA, filepath.Join(dir, "ca_key.pem"))
	if err != nil {
		return nil, err
	}
	other, err := newAuthority("another test CA", s.OtherCA, filepath.Join(dir, "other_ca_key.pem"))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	valid := [2]time.Time{now.Add(-time.Hour), now.Add(24 * time.Hour)}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	server := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	for _, c := range []struct {
		issuer *authority
		p      Pair
		cn     string
		usage  []x509.ExtKeyUsage
		valid  [2]time.Time
		hosts  bool
	}{
		{ca, s.Server, "localhost", server, valid, true},
		{ca, s.Client, "steno client", client, valid, false},
		{other, s.OtherCAClient, "other client", client, valid, false},
		{ca, s.ExpiredClient, "expired client", client, [2]time.Time{now.Add(-48 * time.Hour), now.Add(-time.Hour)}, false},
		{ca, s.ServerUsageClient, "server usage client", server, valid, false},
	} {
		tmpl := &x509.Certificate{
			Subject:     pkix.Name{CommonName: c.cn},
			NotBefore:   c.valid[0],
			NotAfter:    c.valid[1],
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: c.usage,
		}
		if c.hosts {
			tmpl.DNSNames = []string{"localhost"}
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		}
		if err := c.issuer.issue(tmpl, c.p); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func pair(dir, name string) Pair {
	return Pair{filepath.Join(dir, name+"_cert.pem"), filepath.Join(dir, name+"_key.pem")}
}

func newAuthority(cn, certFile, keyFile string) (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-72 * time.Hour),
		NotAfter:              time.Now().Add(72 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("testcerts: CA %s: %w", cn, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if err := write(certFile, keyFile, der, key); err != nil {
		return nil, err
	}
	return &authority{cert, key}, nil
}

func (a *authority) issue(tmpl *x509.Certificate, p Pair) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl.SerialNumber = serial()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		return fmt.Errorf("testcerts: %s: %w", p.Cert, err)
	}
	return write(p.Cert, p.Key, der, key)
}

func write(certFile, keyFile string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	return os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}
