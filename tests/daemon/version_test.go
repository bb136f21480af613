package daemon_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// TestVersion: every Go binary answers --version with the version and
// commit the Makefile linked in (not "unknown" when built in a git
// checkout), without reading a config or starting anything.
func TestVersion(t *testing.T) {
	t.Parallel()
	inGit := false
	if _, err := os.Stat(filepath.Join(testenv.Root(t), ".git")); err == nil {
		inGit = true
	}
	cmds, err := os.ReadDir(filepath.Join(testenv.Root(t), "cmd"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cmds {
		name := c.Name()
		r := testenv.Run(30*time.Second, testenv.Binary(t, name), "--version")
		if r.Err != nil {
			t.Errorf("%s --version: %v\n%s", name, r.Err, r.Stderr)
			continue
		}
		line := strings.TrimSpace(string(r.Stdout))
		m := regexp.MustCompile(`^` + name + ` version (\S+) commit (\S+) \(go\S+\)$`).FindStringSubmatch(line)
		if m == nil {
			t.Errorf("%s --version printed %q; want \"%s version VERSION commit HASH (goX.Y)\"", name, line, name)
			continue
		}
		if inGit && (m[1] == "unknown" || !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(m[2])) {
			t.Errorf("%s --version: %q; built in a git checkout, want git describe and the commit (make build)", name, line)
		}
	}
}
