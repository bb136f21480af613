// Package tlsconfig loads the mutual-TLS configurations of stenographer's
// HTTPS and gRPC servers and of its Go clients.
//
// Input: PEM files (a CA certificate, a certificate and its key). Output:
// *tls.Config values that require TLS 1.2 or later and, on the server, a
// client certificate that chains to the CA and is valid for client
// authentication (crypto/tls checks ExtKeyUsageClientAuth when verifying
// client certificates; a certificate without any extended key usage is
// unrestricted per RFC 5280 and accepted).
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// MinVersion is the oldest TLS version either side accepts.
const MinVersion = tls.VersionTLS12

// Server returns a server configuration presenting certFile/keyFile and
// requiring a client certificate issued by the CA in caFile.
func Server(caFile, certFile, keyFile string) (*tls.Config, error) {
	pool, cert, err := load(caFile, certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   MinVersion,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}, nil
}

// Client returns a client configuration presenting certFile/keyFile and
// trusting only the CA in caFile. serverName, when not empty, is the name
// the server certificate must carry; otherwise the dialled host is used.
func Client(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	pool, cert, err := load(caFile, certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   MinVersion,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ServerName:   serverName,
	}, nil
}

// load reads the CA that vouches for the peer and our own key pair.
func load(caFile, certFile, keyFile string) (*x509.CertPool, tls.Certificate, error) {
	pool, err := loadPool(caFile)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	cert, err := loadPair(certFile, keyFile)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	return pool, cert, nil
}

func loadPool(caFile string) (*x509.CertPool, error) {
	data, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("tlsconfig: CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("tlsconfig: CA certificate %s: no PEM certificate found", caFile)
	}
	return pool, nil
}

func loadPair(certFile, keyFile string) (tls.Certificate, error) {
	// Read each file here so that an error names the file that is missing
	// or unreadable; tls.X509KeyPair then checks contents and the match.
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tlsconfig: certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tlsconfig: key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tlsconfig: certificate %s with key %s: %w", certFile, keyFile, err)
	}
	return cert, nil
}
