package fleet_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// TestBadConfig: a typo'd key or a bad value stops stenofleet at start
// with exit status 2 and the key named.
func TestBadConfig(t *testing.T) {
	bin := testenv.Binary(t, "stenofleet")
	base := "stenographer_instances:\n  - { host: 127.0.0.1, sensor: s1, port: 1234, key: /k, cert: /c, ca: /a }\n" +
		"TLS_CERT: /x\nTLS_KEY: /y\nCLIENT_CA: /z\n"
	for _, c := range []struct{ extra, key string }{
		{"SPOOL_DIRECTORY: /tmp\n", "SPOOL_DIRECTORY"},
		{"EXPIRE_SPACE: plenty\n", "EXPIRE_SPACE"},
		{"SENSOR_TIMEOUT: -5s\n", "SENSOR_TIMEOUT"},
		{"MAX_JOBS: 0\n", "MAX_JOBS"},
	} {
		path := filepath.Join(t.TempDir(), "fleet.yaml")
		if err := os.WriteFile(path, []byte(base+c.extra), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "--config="+path).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), c.key) {
			t.Errorf("%q: %v, output %s; want exit status 2 naming %s", c.extra, err, out, c.key)
		}
	}
}
