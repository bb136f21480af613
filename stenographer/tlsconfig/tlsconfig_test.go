package tlsconfig_test

import (
	"crypto/tls"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stenographer-ng/stenographer/stenographer/tlsconfig"
	"github.com/stenographer-ng/stenographer/stenographer/tlsconfig/testcerts"
)

func TestLoad(t *testing.T) {
	set, err := testcerts.Generate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(set.Dir, "absent.pem")
	for _, tc := range []struct {
		name          string
		ca, cert, key string
		want          string // in the error; "" for success
	}{
		{"good", set.CA, set.Server.Cert, set.Server.Key, ""},
		{"missing CA", missing, set.Server.Cert, set.Server.Key, missing},
		{"missing certificate", set.CA, missing, set.Server.Key, missing},
		{"missing key", set.CA, set.Server.Cert, missing, missing},
		{"CA file without a certificate", set.Server.Key, set.Server.Cert, set.Server.Key, set.Server.Key},
		{"key of another certificate", set.CA, set.Server.Cert, set.Client.Key, set.Client.Key},
		{"certificate file holding a key", set.CA, set.Server.Key, set.Server.Key, set.Server.Key},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for side, load := range map[string]func(a, b, c string) (*tls.Config, error){
				"server": tlsconfig.Server,
				"client": func(a, b, c string) (*tls.Config, error) { return tlsconfig.Client(a, b, c, "") },
			} {
				cfg, err := load(tc.ca, tc.cert, tc.key)
				if tc.want == "" {
					if err != nil {
						t.Fatalf("%s: %v", side, err)
					}
					if cfg.MinVersion != tls.VersionTLS12 {
						t.Errorf("%s: MinVersion %x", side, cfg.MinVersion)
					}
					if side == "server" && (cfg.ClientAuth != tls.RequireAndVerifyClientCert || cfg.ClientCAs == nil) {
						t.Errorf("server: ClientAuth %v, ClientCAs %v", cfg.ClientAuth, cfg.ClientCAs)
					}
					continue
				}
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s: %v; want an error naming %s", side, err, tc.want)
				}
			}
		})
	}
}
