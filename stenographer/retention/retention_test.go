package retention

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stenographer-ng/stenographer/stenographer/config"
	"github.com/stenographer-ng/stenographer/stenographer/internal/fixture"
	"github.com/stenographer-ng/stenographer/stenographer/pcap"
	"github.com/stenographer-ng/stenographer/stenographer/query"
	"github.com/stenographer-ng/stenographer/stenographer/store"
)

const blockSize = 4096

var base = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

// portKey is the index key of a port (SPEC §4).
func portKey(p int) []byte { return []byte{0x02, byte(p >> 8), byte(p)} }

// logBuf collects the log as text lines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) lines(substr string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.b.String(), "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}

// env is a store over thread directories under one temp dir.
type env struct {
	dir     string
	threads []config.Thread
	store   *store.Store
	log     *logBuf
}

func newEnv(t *testing.T, dir string, nthreads int) *env {
	t.Helper()
	e := &env{dir: dir, log: &logBuf{}}
	var st []store.Thread
	for i := 0; i < nthreads; i++ {
		th := config.Thread{Thread: store.Thread{
			PacketsDirectory: filepath.Join(dir, fmt.Sprintf("PKT%d", i)),
			IndexDirectory:   filepath.Join(dir, fmt.Sprintf("IDX%d", i)),
		}}
		for _, d := range []string{th.PacketsDirectory, th.IndexDirectory} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		e.threads = append(e.threads, th)
		st = append(st, th.Thread)
	}
	e.store = store.New(store.Config{Threads: st, BlockSize: blockSize})
	return e
}

// pair writes one pair for thread at base+sec seconds with n packets of
// size bytes, all on port 1000; packet k's first two bytes are k.
func (e *env) pair(t *testing.T, thread, sec, n, size int) string {
	t.Helper()
	start := base.Add(time.Duration(sec) * time.Second)
	var pkts []fixture.Packet
	for k := 0; k < n; k++ {
		data := make([]byte, size)
		data[0], data[1] = byte(k), byte(k>>8)
		pkts = append(pkts, fixture.Packet{Time: start.Add(time.Duration(k) * time.Microsecond), Data: data, Keys: [][]byte{portKey(1000)}})
	}
	if _, err := fixture.Write(e.dir, thread, start, blockSize, pkts); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(start.UnixMicro())
}

func (e *env) cleaner(statfs StatFS) *Cleaner {
	return New(Config{Store: e.store, Threads: e.threads, StatFS: statfs,
		Logger: slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
}

// names lists a thread's visible files in both directories; it fails the
// test if the two differ (a half-deleted pair).
func (e *env) names(t *testing.T, thread int) []string {
	t.Helper()
	var sides [2][]string
	for j, d := range []string{e.threads[thread].PacketsDirectory, e.threads[thread].IndexDirectory} {
		entries, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, en := range entries {
			sides[j] = append(sides[j], en.Name())
		}
	}
	if !reflect.DeepEqual(sides[0], sides[1]) {
		t.Fatalf("thread %d: packet files %q, index files %q", thread, sides[0], sides[1])
	}
	return sides[0]
}

func storeNames(s *store.Store, thread int) []string {
	var out []string
	for _, f := range s.Files(thread) {
		out = append(out, f.Name)
	}
	return out
}

func deletedCounter(t *testing.T, thread, reason string) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "stenographer_files_deleted_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["thread"] == thread && labels["reason"] == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// plenty is a StatFS with the real device and 90% free.
func plenty(path string) (Disk, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return Disk{}, err
	}
	return Disk{Dev: st.Dev, Total: 100 << 30, Free: 90 << 30}, nil
}

// noFree is a StatFS with the real device and nothing free.
func noFree(path string) (Disk, error) {
	d, err := plenty(path)
	d.Free = 0
	return d, err
}

func TestMaxDirectoryFiles(t *testing.T) {
	e := newEnv(t, t.TempDir(), 2)
	var names []string
	for k := 0; k < 10; k++ {
		names = append(names, e.pair(t, 0, k*60, 5, 100))
	}
	other := e.pair(t, 1, 0, 5, 100)
	e.threads[0].MaxDirectoryFiles = 4
	e.threads[1].MaxDirectoryFiles = 4
	before := deletedCounter(t, "0", "max_files")
	if err := e.cleaner(plenty).Once(); err != nil {
		t.Fatal(err)
	}
	if got := e.names(t, 0); !reflect.DeepEqual(got, names[6:]) {
		t.Errorf("thread 0 files %q, want the newest four %q", got, names[6:])
	}
	if got := storeNames(e.store, 0); !reflect.DeepEqual(got, names[6:]) {
		t.Errorf("store still lists %q", got)
	}
	if got := e.names(t, 1); !reflect.DeepEqual(got, []string{other}) {
		t.Errorf("thread 1 files %q, want %q untouched", got, other)
	}
	if d := deletedCounter(t, "0", "max_files") - before; d != 6 {
		t.Errorf("files_deleted_total{thread=0,reason=max_files} grew by %v, want 6", d)
	}
	logged := e.log.lines(`msg="deleted oldest file pair"`)
	if len(logged) != 6 || !strings.Contains(logged[0], "thread=0 name="+names[0]) ||
		!strings.Contains(logged[0], "reason=max_files files=10 max_files=4") || !strings.Contains(logged[0], "bytes=") {
		t.Errorf("deletion log:\n%s", strings.Join(logged, "\n"))
	}
}

// pairBytes is the space one pair takes on disk, as statfs counts it.
func pairBytes(t *testing.T, th config.Thread, name string) uint64 {
	t.Helper()
	var n uint64
	for _, d := range []string{th.PacketsDirectory, th.IndexDirectory} {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(d, name), &st); err != nil {
			t.Fatal(err)
		}
		n += uint64(st.Blocks) * 512
	}
	return n
}

// Two threads on one disk: while it is low, the oldest pair of either
// goes first, and deleting stops once the deleted bytes bring it above
// the threshold.
func TestDiskFreeSharedDisk(t *testing.T) {
	e := newEnv(t, t.TempDir(), 2)
	var order []string // all pairs, oldest first, as "thread/name"
	for k := 0; k < 6; k++ {
		th := k % 2
		order = append(order, fmt.Sprintf("%d/%s", th, e.pair(t, th, k*60, 20, 200)))
	}
	b := pairBytes(t, e.threads[0], strings.Split(order[0], "/")[1])
	for _, o := range order {
		p := strings.Split(o, "/")
		th := 0
		if p[0] == "1" {
			th = 1
		}
		if got := pairBytes(t, e.threads[th], p[1]); got != b {
			t.Fatalf("pairs differ in size (%d, %d bytes); the arithmetic below needs equal ones", got, b)
		}
	}
	for i := range e.threads {
		e.threads[i].DiskFreePercentage = 10
		e.threads[i].MaxDirectoryFiles = 1000
	}
	// 100 pairs' worth of disk, 7 free: 7%, 8%, 9%, 10% (still at the
	// threshold), 11% — four pairs go.
	statfs := func(path string) (Disk, error) {
		d, err := plenty(path)
		d.Total, d.Free = 100*b, 7*b
		return d, err
	}
	before := deletedCounter(t, "1", "disk_free")
	if err := e.cleaner(statfs).Once(); err != nil {
		t.Fatal(err)
	}
	var left []string
	for i := range e.threads {
		for _, n := range e.names(t, i) {
			left = append(left, fmt.Sprintf("%d/%s", i, n))
		}
	}
	if want := []string{order[4], order[5]}; !reflect.DeepEqual(left, []string{order[4], order[5]}) {
		t.Errorf("left %q, want the two newest %q", left, want)
	}
	if d := deletedCounter(t, "1", "disk_free") - before; d != 2 {
		t.Errorf("files_deleted_total{thread=1,reason=disk_free} grew by %v, want 2", d)
	}
	logged := e.log.lines(`msg="deleted oldest file pair"`)
	if len(logged) != 4 || !strings.Contains(logged[0], "reason=disk_free free_pct=7 disk_free_percentage=10") ||
		!strings.Contains(logged[3], "free_pct=10 ") {
		t.Errorf("deletion log:\n%s", strings.Join(logged, "\n"))
	}
}

// A disk that stays full whatever is deleted keeps each thread's newest
// pair and says so once, not every cycle.
func TestDiskFreeKeepsNewestPair(t *testing.T) {
	e := newEnv(t, t.TempDir(), 1)
	var names []string
	for k := 0; k < 3; k++ {
		names = append(names, e.pair(t, 0, k*60, 5, 100))
	}
	e.threads[0].DiskFreePercentage = 10
	e.threads[0].MaxDirectoryFiles = 1000
	c := e.cleaner(noFree)
	for i := 0; i < 3; i++ {
		if err := c.Once(); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.names(t, 0); !reflect.DeepEqual(got, names[2:]) {
		t.Errorf("files %q, want only the newest %q", got, names[2:])
	}
	warn := e.log.lines("disk still low after deleting all but the newest file pair")
	if len(warn) != 1 || !strings.Contains(warn[0], "level=ERROR") || !strings.Contains(warn[0], "free_pct=0 disk_free_percentage=10") {
		t.Errorf("warnings:\n%s", strings.Join(warn, "\n"))
	}
	// Space comes back: the warning is re-armed.
	c.cfg.StatFS = plenty
	if err := c.Once(); err != nil {
		t.Fatal(err)
	}
	c.cfg.StatFS = noFree
	if err := c.Once(); err != nil {
		t.Fatal(err)
	}
	if n := len(e.log.lines("disk still low")); n != 2 {
		t.Errorf("%d warnings after the disk recovered and filled again, want 2", n)
	}
}

// A packet file whose index write failed holds space no query sees: the
// disk-free rule deletes it in its turn, oldest first. One newer than the
// newest pair (its index may be being written) is left alone.
func TestDiskFreeCountsUnindexed(t *testing.T) {
	e := newEnv(t, t.TempDir(), 1)
	var names []string
	for k := 0; k < 4; k++ {
		names = append(names, e.pair(t, 0, k*60, 5, 100))
	}
	for _, n := range []string{names[1], names[3]} {
		if err := os.Remove(filepath.Join(e.threads[0].IndexDirectory, n)); err != nil {
			t.Fatal(err)
		}
	}
	e.threads[0].DiskFreePercentage = 10
	e.threads[0].MaxDirectoryFiles = 1000
	if err := e.cleaner(noFree).Once(); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(e.threads[0].PacketsDirectory)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, en := range entries {
		left = append(left, en.Name())
	}
	if want := []string{names[2], names[3]}; !reflect.DeepEqual(left, want) {
		t.Errorf("packet files left %q, want %q (the newest pair and the unindexed file after it)", left, want)
	}
	deleted := e.log.lines("deleted oldest file pair")
	if len(deleted) != 2 || !strings.Contains(deleted[0], "name="+names[0]) || !strings.Contains(deleted[1], "name="+names[1]) {
		t.Errorf("deletions, want %s then the unindexed %s:\n%s", names[0], names[1], strings.Join(deleted, "\n"))
	}
}

// On a real small filesystem (tmpfs), the measured free space ends above
// the threshold and the newest data is kept.
func TestDiskFreeRealFilesystem(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	e := newEnv(t, mnt, 1)
	e.threads[0].DiskFreePercentage = 40
	e.threads[0].MaxDirectoryFiles = 1000
	var names []string
	for k := 0; ; k++ {
		d, err := statFS(mnt)
		if err != nil {
			t.Fatal(err)
		}
		if 100*d.Free/d.Total < 20 {
			break
		}
		names = append(names, e.pair(t, 0, k*60, 100, 1000)) // ~100 KiB each
	}
	if err := e.cleaner(nil).Once(); err != nil {
		t.Fatal(err)
	}
	d, _ := statFS(mnt)
	if pct := 100 * float64(d.Free) / float64(d.Total); pct <= 40 {
		t.Errorf("free space %.1f%% after cleanup, want > 40%%", pct)
	}
	got := e.names(t, 0)
	if len(got) == 0 || len(got) == len(names) || got[len(got)-1] != names[len(names)-1] || !reflect.DeepEqual(got, names[len(names)-len(got):]) {
		t.Errorf("%d of %d pairs left (%q); want the newest ones kept and some deleted", len(got), len(names), got)
	}
}

// A query reading a pair when retention deletes it finishes with every
// packet of it: the store keeps its open files, the unlink only removes
// the names.
func TestQueryWhileDeleted(t *testing.T) {
	e := newEnv(t, t.TempDir(), 1)
	const perFile = 2000
	for k := 0; k < 3; k++ {
		e.pair(t, 0, k*60, perFile, 300)
	}
	if err := e.store.Refresh(); err != nil {
		t.Fatal(err)
	}
	oldest := e.store.Files(0)[0].Name
	q, err := query.Parse("port 1000", base.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	type outcome struct {
		res *store.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		w, _ := pcap.NewWriter(pw, pcap.Limits{})
		res, err := e.store.Query(context.Background(), q, w)
		pw.CloseWithError(err)
		done <- outcome{res, err}
	}()
	// Read the header and a first packet: the query now has the oldest
	// pair open and waits for the reader.
	r, err := pcapgo.NewReader(pr)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.ReadPacketData(); err != nil {
		t.Fatal(err)
	}
	e.threads[0].MaxDirectoryFiles = 2
	if err := e.cleaner(plenty).Once(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.threads[0].PacketsDirectory, oldest)); !os.IsNotExist(err) {
		t.Fatalf("the oldest pair was not deleted: %v", err)
	}
	n := 1
	for {
		if _, _, err := r.ReadPacketData(); err != nil {
			if err != io.EOF {
				t.Fatalf("reading the result: %v", err)
			}
			break
		}
		n++
	}
	o := <-done
	if o.err != nil || len(o.res.Errors) != 0 {
		t.Fatalf("query: %v, file errors %v", o.err, o.res.Errors)
	}
	if n != 3*perFile {
		t.Errorf("query returned %d packets, want %d (all three pairs)", n, 3*perFile)
	}
	if got := len(e.store.Files(0)); got != 2 {
		t.Errorf("store lists %d pairs, want 2", got)
	}
}

func TestRun(t *testing.T) {
	e := newEnv(t, t.TempDir(), 1)
	e.threads[0].MaxDirectoryFiles = 1
	e.threads[0].DiskFreePercentage = 10
	c := New(Config{Store: e.store, Threads: e.threads, StatFS: plenty, Interval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { c.Run(ctx); close(stopped) }()
	// Files arriving while it runs are picked up and trimmed.
	var last string
	for k := 0; k < 3; k++ {
		last = e.pair(t, 0, k*60, 3, 100)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if got := e.names(t, 0); len(got) == 1 && got[0] == last && len(e.store.Files(0)) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("files %q, store %d pairs; want only %s", e.names(t, 0), len(e.store.Files(0)), last)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-stopped
}

// mountTmpfs mounts a tmpfs of size at a new directory until the test ends.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	return mnt
}

// The index directory on its own filesystem: when that one is low, pairs
// go too, until it is above the threshold.
func TestDiskFreeIndexFilesystem(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	pktFS, idxFS := mountTmpfs(t, "8m"), mountTmpfs(t, "1m")
	e := newEnv(t, pktFS, 1)
	e.threads[0].IndexDirectory = filepath.Join(idxFS, "IDX0")
	e.threads[0].DiskFreePercentage = 50
	e.threads[0].MaxDirectoryFiles = 1000
	e.store = store.New(store.Config{BlockSize: blockSize, Threads: []store.Thread{
		{PacketsDirectory: e.threads[0].PacketsDirectory, IndexDirectory: e.threads[0].IndexDirectory}}})
	// fixture writes IDX0 beside PKT0: make that a link to the index disk.
	if err := os.Remove(filepath.Join(pktFS, "IDX0")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(e.threads[0].IndexDirectory, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(e.threads[0].IndexDirectory, filepath.Join(pktFS, "IDX0")); err != nil {
		t.Fatal(err)
	}
	var names []string
	for k := 0; k < 8; k++ {
		names = append(names, e.pair(t, 0, k*60, 20, 100))
	}
	// Ballast on the index disk: 2.5 pages below the threshold.
	d, _ := statFS(idxFS)
	target := d.Total/2 - 10*1024
	if err := os.WriteFile(filepath.Join(idxFS, "ballast"), make([]byte, d.Free-target), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.cleaner(nil).Once(); err != nil {
		t.Fatal(err)
	}
	d, _ = statFS(idxFS)
	if pct := 100 * float64(d.Free) / float64(d.Total); pct <= 50 {
		t.Errorf("index disk %.1f%% free after cleanup, want > 50%%", pct)
	}
	got := e.names(t, 0)
	if len(got) == 0 || len(got) == len(names) || !reflect.DeepEqual(got, names[len(names)-len(got):]) {
		t.Errorf("%d of %d pairs left (%q); want some oldest deleted, the newest kept", len(got), len(names), got)
	}
	if p, _ := statFS(pktFS); 100*p.Free/p.Total < 50 {
		t.Fatalf("packet disk itself low (%d%% free): the test does not show what it should", 100*p.Free/p.Total)
	}
}
