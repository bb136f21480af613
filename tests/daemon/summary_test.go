package daemon_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/tests/internal/daemon"
	"github.com/stenographer-ng/stenographer/tests/internal/netns"
	"github.com/stenographer-ng/stenographer/tests/internal/pcapfile"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

const (
	sumFiles = 130 // imported files: 16 groups of sumGroup and a tail
	sumGroup = 8   // --summary_group
	sumBlock = "--blocksize_kb=4"
	sumRare  = "10.9.9.9" // in one file only
	sumPort  = 5353       // in three files
)

var sumBase = time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)

// summaryStore imports sumFiles files with stenotype --pcap_in: each
// file a burst of frames larger than a block, the bursts 2 s apart in
// packet time, so --fileage_sec=1 rotates between bursts. It returns the
// store's directory and the frames.
func summaryStore(t *testing.T) (string, [][]byte) {
	t.Helper()
	var pkts []pcapfile.Packet
	var frames [][]byte
	for k := range sumFiles {
		for j := range 4 {
			src, dport := net.IPv4(10, 1, byte(k/200), byte(1+k%200)), 4000+k%7
			switch {
			case k == 77 && j == 1:
				src = net.ParseIP(sumRare)
			case (k == 3 || k == 64 || k == 129) && j == 2:
				dport = sumPort
			}
			f := udpFrame(src, net.IPv4(10, 2, 0, 1), 3000+j, dport, bytes.Repeat([]byte{byte(k)}, 1200))
			frames = append(frames, f)
			at := sumBase.Add(time.Duration(2*k)*time.Second + time.Duration(j)*time.Millisecond)
			pkts = append(pkts, pcapfile.Packet{Time: at, WireLen: len(f), Data: f})
		}
	}
	in := filepath.Join(t.TempDir(), "in.pcap")
	if err := pcapfile.Write(in, pkts); err != nil {
		t.Fatal(err)
	}
	dir := testenv.OutputDir(t, 1)
	testenv.MustRun(t, time.Minute, testenv.Stenotype(t), "--pcap_in="+in, "--dir="+dir, sumBlock, "--fileage_sec=1", "--uid=0", "--gid=0", "-q")
	return dir, frames
}

var explainRE = regexp.MustCompile(`(?m)^([a-z ]+): (\d+)`)

// explained returns /explain's numbered lines by label ("files", "files
// skipped by summary", "indexes read", ...) and its text.
func explained(t *testing.T, d *daemon.Daemon, query string) (map[string]int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	text, err := d.Explain(ctx, query)
	if err != nil {
		t.Fatal(err)
	}
	v := map[string]int{}
	for _, m := range explainRE.FindAllStringSubmatch(text, -1) {
		v[m[1]], _ = strconv.Atoi(m[2])
	}
	for _, k := range []string{"files", "files skipped by summary", "indexes read"} {
		if _, ok := v[k]; !ok {
			t.Fatalf("/explain %q lacks %q:\n%s", query, k, text)
		}
	}
	return v, text
}

// TestSummariesInDaemon: a store of 130 files served by the daemon with
// --summary_group=8. The daemon writes summary tables under IDX0/.summary
// in the background; then a query for a host of one file skips every
// covered file but that one by summary (/explain) and opens the rest, and
// the rare host's and a port's answers are exactly the packets the oracle
// expects and stenoquery --no_summaries finds in the same directories.
// Every table truncated to half its size changes no answer (the query
// looks those files up one by one); the daemon replaces the tables and
// skips by summary again.
func TestSummariesInDaemon(t *testing.T) {
	dir, frames := summaryStore(t)
	th := daemon.Thread{PacketsDirectory: filepath.Join(dir, "PKT0"), IndexDirectory: filepath.Join(dir, "IDX0")}
	if names, _ := filepath.Glob(filepath.Join(th.PacketsDirectory, "*")); len(names) != sumFiles {
		t.Fatalf("the import made %d files, want %d", len(names), sumFiles)
	}
	pair := netns.NewPair(t)
	d := daemon.Start(t, pair, daemon.Options{ThreadDirs: []daemon.Thread{th}, Flags: append([]string{sumBlock}, daemon.FastFlags...),
		Args: []string{"--summary_group=" + strconv.Itoa(sumGroup)}})

	rare := "host " + sumRare
	covered := sumFiles / sumGroup * sumGroup
	waitSkipped := func(what string) {
		t.Helper()
		var v map[string]int
		var text string
		d.WaitFor(what, 2*time.Minute, func() bool {
			v, text = explained(t, d, rare)
			return v["files skipped by summary"] >= covered-1
		})
		// Every file a summary does not rule out is opened, and no other.
		if v["indexes read"] != v["files"]-v["files skipped by summary"] || v["indexes read"] < 1 {
			t.Errorf("%q: indexes read, want the files not skipped (at least the one that holds it):\n%s", rare, text)
		}
	}
	waitSkipped("summaries covering the imported files")
	tables, err := filepath.Glob(filepath.Join(th.IndexDirectory, ".summary", "*.sum"))
	if err != nil || len(tables) == 0 {
		t.Fatalf("no summary table under %s/.summary (%v)", th.IndexDirectory, err)
	}

	queries := []string{rare, fmt.Sprintf("port %d", sumPort)}
	want := map[string][]pcapfile.Packet{}
	for _, q := range queries {
		r := testenv.MustRun(t, time.Minute, testenv.Binary(t, "stenoquery"), "--dir="+dir, sumBlock, "--no_summaries", q)
		offline := parsePCAP(t, "stenoquery "+q, r).Packets
		if n := count(t, q, frames); len(offline) != n {
			t.Fatalf("stenoquery --no_summaries %q: %d packets, the oracle %d", q, len(offline), n)
		}
		want[q] = offline
	}
	same := func(when string) {
		t.Helper()
		for _, q := range queries {
			got := parsePCAP(t, q, d.MustQuery(q, nil)).Packets
			if !slices.EqualFunc(got, want[q], func(a, b pcapfile.Packet) bool { return a.Time.Equal(b.Time) && bytes.Equal(a.Data, b.Data) }) {
				t.Errorf("%s: the daemon's %q has %d packets, not the %d of stenoquery --no_summaries", when, q, len(got), len(want[q]))
			}
		}
	}
	same("with summaries")

	for _, p := range tables {
		info, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, info.Size()/2); err != nil {
			t.Fatal(err)
		}
	}
	same("tables truncated")
	d.WaitFor("the daemon meeting a truncated table", time.Minute, func() bool {
		return bytes.Contains(d.Log(), []byte("summary table unused")) || bytes.Contains(d.Log(), []byte("removed an unreadable summary table"))
	})
	waitSkipped("summaries rebuilt after the damage")
	same("tables rebuilt")
	if d.Exited() {
		t.Fatalf("the daemon exited; log:\n%s", d.LogTail())
	}
}
