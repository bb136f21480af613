package supervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stenographer-ng/stenographer/stenographer/store"
)

func writeFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("data of "+n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func TestCleanLeftovers(t *testing.T) {
	_, th := threads(t, 1)
	rec := newRecorder()
	for _, d := range []string{th[0].PacketsDirectory, th[0].IndexDirectory} {
		if err := os.MkdirAll(filepath.Join(d, ".snapshot"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFiles(t, th[0].PacketsDirectory, "1000", "2000", ".3000", ".stenotype_probe", "4000", "README")
	writeFiles(t, th[0].IndexDirectory, "1000", "2000", ".3000", "5000", "notes.txt")
	// The files hold no packets: nothing to re-index, so none is kept.
	n, err := cleanLeftovers(rec.logger(), 0, th[0], reindexer{blockSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if n != 5 {
		t.Errorf("deleted %d files, want 5", n)
	}
	if got, want := listDir(t, th[0].PacketsDirectory), []string{".snapshot", "1000", "2000", "README"}; !reflect.DeepEqual(got, want) {
		t.Errorf("packet dir = %q, want %q", got, want)
	}
	if got, want := listDir(t, th[0].IndexDirectory), []string{".snapshot", "1000", "2000", "notes.txt"}; !reflect.DeepEqual(got, want) {
		t.Errorf("index dir = %q, want %q", got, want)
	}
	reasons := map[string]string{}
	for _, r := range rec.find("deleted leftover file") {
		reasons[filepath.Base(r.Attrs["path"])+"@"+filepath.Base(filepath.Dir(r.Attrs["path"]))] = r.Attrs["reason"]
	}
	want := map[string]string{
		".3000@pkt":            "hidden file of an unfinished write",
		".stenotype_probe@pkt": "hidden file of an unfinished write",
		".3000@idx":            "hidden file of an unfinished write",
		"4000@pkt":             "packet file without index or packets",
		"5000@idx":             "index file without packet file",
	}
	if !reflect.DeepEqual(reasons, want) {
		t.Errorf("logged deletions %v, want %v", reasons, want)
	}
}

func TestNewMakesDirectories(t *testing.T) {
	base, th := threads(t, 2)
	rec := newRecorder()
	s, err := New(fast("/bin/true", th, rec))
	if err != nil {
		t.Fatal(err)
	}
	d := s.Dir()
	info, err := os.Stat(d)
	if err != nil || info.Mode().Perm() != 0o755 {
		t.Errorf("private dir %s: %v, mode %v; want 0755", d, err, info.Mode())
	}
	for i, th := range th {
		for _, l := range []struct{ link, target string }{
			{"PKT" + strconv.Itoa(i), th.PacketsDirectory}, {"IDX" + strconv.Itoa(i), th.IndexDirectory},
		} {
			if got, err := os.Readlink(filepath.Join(d, l.link)); err != nil || got != l.target {
				t.Errorf("%s -> %q (%v), want %q", l.link, got, err, l.target)
			}
			if fi, err := os.Stat(l.target); err != nil || !fi.IsDir() {
				t.Errorf("thread directory %s not created: %v", l.target, err)
			}
		}
	}
	if got := len(rec.find("created directory")); got != 6 { // t0, t0/pkt, t0/idx, t1, ...
		t.Errorf("%d directories logged as created, want 6; log:\n%s", got, rec.dump())
	}
	if os.Geteuid() == 0 {
		nobody, _ := user.Lookup("nobody")
		for _, p := range []string{filepath.Join(base, "t0"), th[0].PacketsDirectory, th[1].IndexDirectory} {
			fi, _ := os.Stat(p)
			if got := strconv.Itoa(int(statUID(fi))); got != nobody.Uid {
				t.Errorf("%s owned by uid %s, want nobody (%s): stenotype drops to nobody", p, got, nobody.Uid)
			}
		}
		if statUID(mustStat(t, base)) != 0 {
			t.Errorf("%s existed and must keep its owner", base)
		}
	}
	if want := append(slices.Clone(LiveDefaults), "--threads=2", "--dir="+d, "--iface=lo"); !reflect.DeepEqual(s.Args(), want) {
		t.Errorf("args = %q, want %q", s.Args(), want)
	}
	if err := stop(t, s); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("private dir after Stop: %v, want it removed", err)
	}
	if _, err := os.Stat(th[0].PacketsDirectory); err != nil {
		t.Errorf("Stop removed a thread directory: %v", err)
	}
}

// As root, thread directories that stenotype's user (nobody) cannot reach
// or write are refused by New, before anything is created, with the
// component, its mode and owner, and a fix; reachable ones, existing or
// to be created, pass.
func TestAccessRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to test access as nobody")
	}
	base, _ := threads(t, 0) // base is 0755
	closed := filepath.Join(base, "closed")
	rootOnly := filepath.Join(base, "rootonly")
	for _, d := range []string{closed, rootOnly} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(rootOnly, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(base, "file")
	writeFiles(t, base, "file")
	for _, tc := range []struct {
		name string
		dir  string // the packets directory
		want string // the message has it
	}{
		{"parent not searchable", filepath.Join(closed, "x", "pkt"),
			"user nobody cannot search " + closed + " (mode 0700 owner root): chmod o+x " + closed + " or pick a directory it can reach"},
		{"existing directory not writable", rootOnly,
			"user nobody cannot write to " + rootOnly + " (mode 0755 owner root): chown nobody " + rootOnly + " or pick a directory it can write"},
		{"not a directory", file, file + " is not a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			th := []store.Thread{{PacketsDirectory: tc.dir, IndexDirectory: filepath.Join(base, "idx-"+tc.name)}}
			s, err := New(fast("/bin/true", th, newRecorder()))
			if err == nil {
				stop(t, s)
				t.Fatalf("New accepted %s", tc.dir)
			}
			if !errors.Is(err, ErrNoAccess) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q: want one line with ErrNoAccess and %q", err, tc.want)
			}
			if _, err := os.Stat(th[0].IndexDirectory); err == nil {
				t.Errorf("a refused New created %s", th[0].IndexDirectory)
			}
		})
	}
	// Missing below a searchable directory: created for nobody.
	th := []store.Thread{{PacketsDirectory: filepath.Join(base, "new", "pkt"), IndexDirectory: filepath.Join(base, "new", "idx")}}
	s, err := New(fast("/bin/true", th, newRecorder()))
	if err != nil {
		t.Fatal(err)
	}
	if err := stop(t, s); err != nil {
		t.Error(err)
	}
}

// A second supervisor on thread directories in use is refused by New,
// naming the directory and the holder, and touches nothing: the first's
// private directory and files stay. Once the first stops, the directories
// can be used again.
func TestDirectoriesLocked(t *testing.T) {
	_, th := threads(t, 2)
	rec := newRecorder()
	first, err := New(fast("/bin/true", th, rec))
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, th[1].PacketsDirectory, ".1700000000000000")
	// The second shares only thread 1's index directory.
	_, other := threads(t, 1)
	other = append(other, store.Thread{PacketsDirectory: filepath.Join(t.TempDir(), "pkt"), IndexDirectory: th[1].IndexDirectory})
	second, err := New(fast("/bin/true", other, newRecorder()))
	if err == nil {
		stop(t, second)
		t.Fatal("a second supervisor on directories in use was not refused")
	}
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), th[1].IndexDirectory) ||
		!strings.Contains(err.Error(), fmt.Sprintf("process %d", os.Getpid())) {
		t.Errorf("error %q: want ErrInUse naming %s and pid %d", err, th[1].IndexDirectory, os.Getpid())
	}
	if _, err := os.Stat(first.Dir()); err != nil {
		t.Errorf("the first supervisor's private directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(th[1].PacketsDirectory, ".1700000000000000")); err != nil {
		t.Errorf("the first supervisor's open file: %v", err)
	}
	// The refused one released the locks it had taken (on other[0]).
	third, err := New(fast("/bin/true", other[:1], newRecorder()))
	if err != nil {
		t.Errorf("directories the refused supervisor had locked are still locked: %v", err)
	} else if err := stop(t, third); err != nil {
		t.Error(err)
	}
	if err := stop(t, first); err != nil {
		t.Error(err)
	}
	again, err := New(fast("/bin/true", th, rec))
	if err != nil {
		t.Fatalf("after Stop the directories are still locked: %v", err)
	}
	if err := stop(t, again); err != nil {
		t.Error(err)
	}
}

func mustStat(t *testing.T, p string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

func statUID(fi os.FileInfo) uint32 { return fi.Sys().(*syscall.Stat_t).Uid }
