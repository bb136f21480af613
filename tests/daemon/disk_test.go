package daemon_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/stenographer-ng/stenographer/protobuf"
	"github.com/stenographer-ng/stenographer/tests/internal/daemon"
	"github.com/stenographer-ng/stenographer/tests/internal/netns"
	"github.com/stenographer-ng/stenographer/tests/internal/pcapfile"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

const (
	diskImageMB  = 256
	diskFreePct  = 40
	queryTimeout = 2 * time.Minute
)

// smallDisk is a loop-mounted ext4 of sizeMB, unmounted at test end after
// the daemon registered later has been stopped.
func smallDisk(t *testing.T, sizeMB int) string {
	t.Helper()
	return testenv.LoopDisk(t, sizeMB)
}

// raceBinary builds cmd/stenographer with -race into a temporary
// directory, unless STENO_DAEMON_RACE=0; it returns "" then.
func raceBinary(t *testing.T) string {
	t.Helper()
	if os.Getenv("STENO_DAEMON_RACE") == "0" {
		t.Log("STENO_DAEMON_RACE=0: running the plain build/bin/stenographer")
		return ""
	}
	out := filepath.Join(t.TempDir(), "stenographer")
	start := time.Now()
	cmd := exec.Command("go", "build", "-race", "-o", out, "./cmd/stenographer")
	cmd.Dir = testenv.Root(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build -race ./cmd/stenographer: %v\n%s", err, b)
	}
	t.Logf("built stenographer with -race in %v", time.Since(start).Round(time.Second))
	if info, err := exec.Command("go", "version", "-m", out).Output(); err != nil || !strings.Contains(string(info), "-race=true") {
		t.Fatalf("%s: no -race=true in its build information (%v)", out, err)
	}
	return out
}

func freePercent(dir string) (float64, uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return 100 * float64(st.Bavail) / float64(st.Blocks), st.Blocks * uint64(st.Bsize), nil
}

// diskWatch samples the small disk while the test runs.
type diskWatch struct {
	mu          sync.Mutex
	seen        map[string]int64 // every visible packet file seen, with its largest size
	idxSize     map[string]int64
	order       []string // problems with the deletion order
	minFree     float64  // lowest free space once cleanup has started
	newestAt    []time.Time
	newest      string
	deletedSeen bool
	minAt       string // when minFree was seen, and the files then
	written     []writtenAt
}

// writtenAt is how many bytes the files seen so far hold in all.
type writtenAt struct {
	at    time.Time
	bytes int64
}

// maxWritten returns the most bytes written in any window of length d
// (tcpreplay sends in bursts when it falls behind its rate).
func (w *diskWatch) maxWritten(d time.Duration) int64 {
	var most int64
	j := 0
	for i := range w.written {
		for w.written[i].at.Sub(w.written[j].at) > d {
			j++
		}
		most = max(most, w.written[i].bytes-w.written[j].bytes)
	}
	return most
}

func (w *diskWatch) sample(d *daemon.Daemon, mnt string) {
	th := d.Config.Threads[0]
	pkts := d.Files(0)
	free, _, err := freePercent(mnt)
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, n := range pkts {
		if fi, err := os.Stat(filepath.Join(th.PacketsDirectory, n)); err == nil && fi.Size() > w.seen[n] {
			w.seen[n] = fi.Size()
		} else if _, ok := w.seen[n]; !ok {
			w.seen[n] = 0
		}
		if fi, err := os.Stat(filepath.Join(th.IndexDirectory, n)); err == nil && fi.Size() > w.idxSize[n] {
			w.idxSize[n] = fi.Size()
		}
	}
	var written int64
	for n, sz := range w.seen {
		written += sz + w.idxSize[n]
	}
	w.written = append(w.written, writtenAt{time.Now(), written})
	if len(pkts) > 0 {
		if last := pkts[len(pkts)-1]; last != w.newest {
			w.newest = last
			w.newestAt = append(w.newestAt, time.Now())
		}
		// Oldest first: every file seen that is newer than the oldest one
		// present must still be there.
		oldest := pkts[0]
		present := map[string]bool{}
		for _, n := range pkts {
			present[n] = true
		}
		for n := range w.seen {
			if n > oldest && !present[n] && len(w.order) < 10 {
				w.order = append(w.order, fmt.Sprintf("%s deleted while the older %s is still there", n, oldest))
			}
			if n < oldest {
				w.deletedSeen = true
			}
		}
	}
	if err == nil && w.deletedSeen && free < w.minFree {
		w.minFree = free
		var sizes []string
		for _, n := range pkts {
			sizes = append(sizes, fmt.Sprintf("%s:%d+%d", n, w.seen[n], w.idxSize[n]))
		}
		w.minAt = fmt.Sprintf("%s: %.1f%% free, files %v", time.Now().UTC().Format("15:04:05.000"), free, sizes)
	}
}

// TestDiskFullAndConcurrentQueries captures into a 256 MB file system with
// DiskFreePercentage 40 until the daemon has to delete files, and, while
// it keeps deleting, runs 20 parallel queries (10 HTTPS, 10 gRPC). The
// daemon is built with -race for this test. Asserts: the oldest files go
// first and are counted in /metrics; capture never stops (same stenotype,
// new files keep appearing, no ENOSPC); queries keep working; free space
// stays above the threshold less one sync's worth of writing; every
// parallel query completes or ends with a clear error, none hangs; an
// HTTPS and a gRPC client that go away mid-stream get their queries
// canceled; the daemon survives and reports no data race; SIGTERM while a
// large result streams stops it cleanly and the client sees an error.
func TestDiskFullAndConcurrentQueries(t *testing.T) {
	testenv.RequireTools(t, "tcpreplay")
	bin := raceBinary(t)
	mnt := smallDisk(t, diskImageMB)
	_, fsBytes, err := freePercent(mnt)
	if err != nil {
		t.Fatal(err)
	}
	th := daemon.Thread{PacketsDirectory: filepath.Join(mnt, "pkt"), IndexDirectory: filepath.Join(mnt, "idx"), DiskFreePercentage: diskFreePct}
	for _, p := range []string{th.PacketsDirectory, th.IndexDirectory} {
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pair := netns.NewPair(t)
	// Small files (4 MB, or a second): a query pins the file it reads and
	// the few it looks ahead at, whose space returns only when it lets go.
	flags := append([]string{"--filesize_mb=4"}, daemon.FastFlags...)
	d := daemon.Start(t, pair, daemon.Options{Binary: bin, ThreadDirs: []daemon.Thread{th}, RPC: true, Flags: flags,
		RPCEdit: func(r *daemon.RPC) { r.ClientPcapMaxSize = 200 << 20 }})
	firstPID := d.Stenotype()

	// Traffic: a corpus file (or the generated frames) looped at 80 Mbit/s.
	src, host := generatedPcap(t), "host 10.1.0.1"
	if dir := testenv.SharedPcapDir(t); dir != "" {
		src, host = filepath.Join(dir, "pcapplusplus-example.pcap"), "host 212.199.202.9"
	}
	captured := func() float64 {
		m, err := d.Metrics()
		if err != nil {
			return 0
		}
		return m["stenographer_captured_bytes_total"]
	}
	t0, b0 := time.Now(), captured()
	sender := startSender(t, pair, "tcpreplay", "-i", pair.SenderIf, "-K", "--mbps=80", "--loop=1000000", src)

	w := &diskWatch{seen: map[string]int64{}, idxSize: map[string]int64{}, minFree: 100}
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Add(2)
	go func() { // the disk, four times a second
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(250 * time.Millisecond):
				w.sample(d, mnt)
			}
		}
	}()
	var pollMu sync.Mutex
	var pollErrs []string
	polls := 0
	go func() { // a small query every second: queries keep working
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
			}
			ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
			r, err := d.Query(ctx, everything, map[string]string{"Steno-Limit-Packets": "500"})
			cancel()
			pollMu.Lock()
			polls++
			switch {
			case err != nil:
				pollErrs = append(pollErrs, err.Error())
			case r.Status != http.StatusOK:
				pollErrs = append(pollErrs, fmt.Sprintf("status %d: %s", r.Status, testenv.Tail(r.Body, 200)))
			default:
				if _, err := pcapfile.Parse(r.Body); err != nil {
					pollErrs = append(pollErrs, "bad pcap: "+err.Error())
				}
			}
			pollMu.Unlock()
		}
	}()
	stopAll := func() {
		select {
		case <-stop:
		default:
			close(stop)
			bg.Wait()
		}
	}
	defer stopAll()

	// Until cleanup has deleted a few pairs.
	deleted := func() float64 {
		m, err := d.Metrics()
		if err != nil {
			return 0
		}
		return m["stenographer_files_deleted_total"]
	}
	if !d.Poll(3*time.Minute, func() bool { return deleted() >= 3 }) {
		free, _, _ := freePercent(mnt)
		t.Fatalf("no cleanup after 3 minutes: %d files, %.1f%% free (threshold %d%%); tcpreplay: %s",
			len(d.Files(0)), free, diskFreePct, testenv.Tail([]byte(sender.output()), 500))
	}
	if sender.exited() {
		t.Fatalf("tcpreplay ended early: %s", sender.output())
	}

	// 20 parallel queries while capture and cleanup go on.
	before := deleted()
	results := parallelQueries(t, d, host)
	if after := deleted(); after <= before {
		t.Errorf("no file was deleted while the parallel queries ran (%v deletions before and after)", before)
	}
	complete := 0
	for _, r := range results {
		switch {
		case r.hung:
			t.Errorf("%s: still running at its %v deadline (hung): %v", r.name, queryTimeout, r.err)
		case r.err != nil:
			t.Logf("%s: ended with an error: %v", r.name, r.err)
		default:
			complete++
		}
	}
	t.Logf("parallel queries: %d of %d complete", complete, len(results))
	if complete < len(results)/2 {
		t.Errorf("only %d of %d parallel queries completed", complete, len(results))
	}

	// A client that goes away mid-stream cancels its query.
	cancelled(t, d)

	// Let cleanup go on a little longer under traffic, then stop sending.
	start := deleted()
	d.Poll(time.Minute, func() bool { return deleted() >= start+3 })
	rate := (captured() - b0) / time.Since(t0).Seconds() // bytes per second stored
	sender.stop()
	time.Sleep(3 * time.Second)
	stopAll()

	// Free space: above the threshold once the last writes are synced.
	var free float64
	if !d.Poll(time.Minute, func() bool { free, _, _ = freePercent(mnt); return free > diskFreePct }) {
		t.Errorf("after the traffic stopped: %.1f%% free, want above %d%%", free, diskFreePct)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var maxPair int64
	names := make([]string, 0, len(w.seen))
	for n, s := range w.seen {
		maxPair = max(maxPair, s+w.idxSize[n])
		names = append(names, n)
	}
	sort.Strings(names)
	// Below the threshold by at most what is written between syncs (a
	// sync every second; the most written in any four seconds allows for
	// a slow cycle on a loaded machine, for tcpreplay's catch-up bursts and
	// for the space of deleted files a query still reads) and the pair
	// being finished when cleanup looked.
	burst := w.maxWritten(4 * time.Second)
	slack := float64(burst+maxPair) / float64(fsBytes) * 100
	if w.minFree < diskFreePct-slack {
		t.Errorf("free space fell to %.1f%% during capture; threshold %d%%, allowed slack %.1f points (largest pair %d bytes); at %s",
			w.minFree, diskFreePct, slack, maxPair, w.minAt)
	}
	t.Logf("file system %d MB; stored %.1f MB/s on average, at most %.1f MB in 4s; lowest free %.1f%% after cleanup began (threshold %d%%, slack %.1f); %d packet files seen, largest pair %d bytes; %v deleted",
		fsBytes>>20, rate/1e6, float64(burst)/1e6, w.minFree, diskFreePct, slack, len(names), maxPair, deleted())

	// Oldest first, and the first files are gone (both halves).
	for _, p := range w.order {
		t.Errorf("deletion order: %s", p)
	}
	present := d.Files(0)
	if len(present) == 0 || len(names) < 5 {
		t.Fatalf("%d files present, %d seen", len(present), len(names))
	}
	for _, n := range names[:3] {
		for _, dir := range []string{th.PacketsDirectory, th.IndexDirectory} {
			if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
				t.Errorf("the oldest file %s/%s is still there", dir, n)
			}
		}
	}
	m, err := d.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	if v := m[`stenographer_files_deleted_total{reason="disk_free",thread="0"}`]; v < 3 {
		t.Errorf(`stenographer_files_deleted_total{reason="disk_free",thread="0"} = %v, want >= 3`, v)
	}

	// Capture never stopped.
	if p := d.Stenotype(); p != firstPID {
		t.Errorf("stenotype changed from pid %d to %d during the fill", firstPID, p)
	}
	for i := 1; i < len(w.newestAt); i++ {
		if gap := w.newestAt[i].Sub(w.newestAt[i-1]); gap > 20*time.Second {
			t.Errorf("no new packet file for %v during the fill (rotation every second)", gap.Round(time.Second))
		}
	}
	log := string(d.Log())
	for _, bad := range []string{"No space left", "ENOSPC", "DATA RACE"} {
		if strings.Contains(log, bad) {
			t.Errorf("the daemon log contains %q", bad)
		}
	}
	pollMu.Lock()
	if len(pollErrs) > 0 {
		t.Errorf("%d of %d periodic queries failed during the fill, first: %s", len(pollErrs), polls, pollErrs[0])
	}
	pollMu.Unlock()

	// The daemon survived.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if code, _, err := d.Get(ctx, "/debug/stats"); err != nil || code != http.StatusOK {
		t.Errorf("/debug/stats after the test: %d %v", code, err)
	}
	if d.Exited() {
		t.Fatalf("stenographer exited: %v", d.ExitErr())
	}

	// SIGTERM while a large result streams: the daemon stops promptly and
	// cleanly, and the client sees a broken transfer, not a PCAP that
	// looks complete.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL("/query"), strings.NewReader(everything))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := d.HTTPClient(d.TLSConfig()).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadFull(resp.Body, make([]byte, 64<<10)); err != nil {
		t.Fatalf("the first 64 KiB of %q: %v", everything, err)
	}
	stopped := time.Now()
	d.Stop() // SIGTERM; exit status 0, no hidden or unpaired files
	rest, err := io.Copy(io.Discard, resp.Body)
	if err == nil {
		t.Errorf("the stream cut by the shutdown ended like a complete result (%d more bytes, no error)", rest)
	}
	t.Logf("stopped in %v with a query streaming; the client read %d more bytes, then: %v",
		time.Since(stopped).Round(time.Millisecond), rest, err)
}

// queryResult is one of the parallel queries.
type queryResult struct {
	name string
	err  error // nil: a complete, well-formed PCAP
	hung bool  // the deadline ended it
}

// parallelQueries runs 10 HTTPS and 10 gRPC queries at once, half broad
// (every packet, cut at 20 MB) and half selective.
func parallelQueries(t *testing.T, d *daemon.Daemon, host string) []queryResult {
	const limit = 20 << 20
	conn := d.GRPCConn(nil)
	d.TLSConfig()
	results := make([]queryResult, 20)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		q := everything
		if i%2 == 1 {
			q = host
		}
		wg.Add(1)
		go func(i int, q string) {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
			defer cancel()
			r := &results[i]
			if i < 10 {
				r.name = fmt.Sprintf("HTTPS #%d %q", i, q)
				res, err := d.Query(ctx, q, map[string]string{"Steno-Limit-Bytes": fmt.Sprint(limit)})
				switch {
				case err != nil:
					r.err = err
				case res.Status != http.StatusOK:
					if len(strings.TrimSpace(string(res.Body))) == 0 {
						r.err = fmt.Errorf("status %d without a reason", res.Status)
					} else {
						r.err = fmt.Errorf("status %d: %s", res.Status, testenv.Tail(res.Body, 200))
					}
				default:
					if _, err := pcapfile.Parse(res.Body); err != nil {
						r.err = fmt.Errorf("status 200 but a broken pcap (%d bytes): %w", len(res.Body), err)
						t.Errorf("%s: %v", r.name, r.err)
					}
				}
			} else {
				r.name = fmt.Sprintf("gRPC #%d %q", i, q)
				res, err := daemon.Retrieve(ctx, conn, &pb.PcapRequest{Uid: r.name, ChunkSize: 1 << 16, MaxSize: limit, Query: q})
				if err != nil {
					r.err = err
					if s, ok := status.FromError(err); ok && s.Message() == "" && s.Code() != codes.DeadlineExceeded {
						t.Errorf("%s: gRPC error without a message: %v", r.name, err)
					}
				} else if _, err := pcapfile.Parse(res.PCAP); err != nil {
					r.err = fmt.Errorf("OK but a broken pcap (%d bytes): %w", len(res.PCAP), err)
					t.Errorf("%s: %v", r.name, r.err)
				}
			}
			if ctx.Err() != nil {
				r.hung = true
			}
		}(i, q)
	}
	wg.Wait()
	return results
}

// cancelled starts an unlimited HTTPS and an unlimited gRPC query over the
// whole store, reads the first 64 KiB of each and goes away: the daemon
// must log each as canceled.
func cancelled(t *testing.T, d *daemon.Daemon) {
	t.Helper()
	const httpQuery, uid = "after 59m ago", "cancel-me"
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL("/query"), strings.NewReader(httpQuery))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := d.HTTPClient(d.TLSConfig()).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 64<<10)); err != nil {
		t.Fatalf("the first 64 KiB of %q: %v", httpQuery, err)
	}
	cancel()
	resp.Body.Close()

	gctx, gcancel := context.WithCancel(context.Background())
	stream, err := pb.NewStenographerClient(d.GRPCConn(nil)).RetrievePcap(gctx, &pb.PcapRequest{Uid: uid, ChunkSize: 1 << 16, Query: everything})
	if err != nil {
		t.Fatal(err)
	}
	for got := 0; got < 64<<10; {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("gRPC %s: %v", uid, err)
		}
		got += len(m.GetPcap())
	}
	gcancel()

	logged := func(parts ...string) bool {
		for _, l := range strings.Split(string(d.Log()), "\n") {
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(l, p)
			}
			if ok {
				return true
			}
		}
		return false
	}
	if !d.Poll(30*time.Second, func() bool {
		return logged("query canceled", `query="`+httpQuery+`"`) && logged("query canceled", `uid=`+uid)
	}) {
		t.Errorf("the daemon did not log both queries whose clients went away as canceled (HTTPS %q: %v, gRPC %s: %v)",
			httpQuery, logged("query canceled", `query="`+httpQuery+`"`), uid, logged("query canceled", `uid=`+uid))
	}
}

// TestMaxDirectoryFiles: with MaxDirectoryFiles 4 and a new file every
// second, the daemon keeps deleting the oldest pairs (reason max_files)
// so that a thread holds about four pairs, and queries keep working.
func TestMaxDirectoryFiles(t *testing.T) {
	t.Parallel()
	testenv.RequireTools(t, "tcpreplay")
	const maxFiles = 4
	base := testenv.DiskTempDir(t)
	th := daemon.Thread{PacketsDirectory: filepath.Join(base, "pkt"), IndexDirectory: filepath.Join(base, "idx"), MaxDirectoryFiles: maxFiles}
	pair := netns.NewPair(t)
	d := daemon.Start(t, pair, daemon.Options{ThreadDirs: []daemon.Thread{th}})
	gp := generatedPcap(t)
	startSender(t, pair, "tcpreplay", "-i", pair.SenderIf, "--pps=100", "--loop=100000", gp)

	seen := map[string]bool{}
	most := 0
	key := `stenographer_files_deleted_total{reason="max_files",thread="0"}`
	d.WaitFor("five max_files deletions", 2*time.Minute, func() bool {
		files := d.Files(0)
		most = max(most, len(files))
		for _, n := range files {
			seen[n] = true
		}
		m, err := d.Metrics()
		return err == nil && m[key] >= 5
	})
	// A sync every second and a new file every second: between two syncs
	// (or during a slow one on a loaded machine) a few more may appear.
	if most > maxFiles+3 {
		t.Errorf("thread held %d packet files at once, MaxDirectoryFiles is %d", most, maxFiles)
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names[:3] {
		if _, err := os.Stat(filepath.Join(th.PacketsDirectory, n)); err == nil {
			t.Errorf("the oldest file %s is still there", n)
		}
	}
	if !strings.Contains(string(d.Log()), "reason=max_files") {
		t.Errorf("the log does not say files were deleted for max_files")
	}
	body := d.MustQuery(everything, nil)
	n := len(parsePCAP(t, "after max_files deletions", body).Packets)
	if n == 0 {
		t.Errorf("no packets served from the remaining files")
	}
	t.Logf("at most %d packet files at once (MaxDirectoryFiles %d), %d seen; %d packets still served", most, maxFiles, len(names), n)
}
