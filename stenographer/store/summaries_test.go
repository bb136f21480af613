package store

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/stenographer/indexfile"
	"github.com/stenographer-ng/stenographer/stenographer/internal/fixture"
	"github.com/stenographer-ng/stenographer/stenographer/pcap"
	"github.com/stenographer-ng/stenographer/stenographer/query"
)

// sumFiles is how many files buildSummarized writes: with groups of 4,
// 16 first-level tables merge into one and 4 remain.
const sumFiles = 82

// buildSummarized writes sumFiles one-thread files of 10 packets each:
// packet k is in file k/10, carries port 1000+k%7, address 10.0.<file>.1,
// and packets 33 and 701 also the rare address 192.0.2.9 and VLAN 77.
func buildSummarized(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for f := range sumFiles {
		var pkts []fixture.Packet
		for k := f * 10; k < f*10+10; k++ {
			data := make([]byte, 60)
			data[0], data[1] = byte(k), byte(k>>8)
			keys := [][]byte{indexfile.ProtoKey(6), portKey(1000 + k%7), indexfile.AddrKey(netip.AddrFrom4([4]byte{10, 0, byte(f), 1}))}
			if k == 33 || k == 701 {
				keys = append(keys, indexfile.AddrKey(netip.MustParseAddr("192.0.2.9")), indexfile.VLANKey(77))
			}
			slices.SortFunc(keys, func(a, b []byte) int { return compareBytes(a, b) })
			pkts = append(pkts, fixture.Packet{Time: base.Add(time.Duration(k) * time.Second), Data: data, Keys: keys})
		}
		if _, err := fixture.Write(dir, 0, pkts[0].Time, blockSize, pkts); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func compareBytes(a, b []byte) int { return slices.Compare(a, b) }

func openSummarized(t *testing.T, dir string, summaries bool) *Store {
	t.Helper()
	return openListed(t, dir, summaries, false)
}

// openListed opens dir's store; namesOnly lists it as stenoquery does.
func openListed(t *testing.T, dir string, summaries, namesOnly bool) *Store {
	t.Helper()
	s := New(Config{BlockSize: blockSize, Summaries: summaries, NamesOnly: namesOnly, SummaryGroup: 4, Threads: []Thread{
		{filepath.Join(dir, "PKT0"), filepath.Join(dir, "IDX0"), "eth0"},
	}})
	if err := s.Refresh(); err != nil {
		t.Fatal(err)
	}
	return s
}

var summaryQueries = []string{
	"host 192.0.2.9",
	"vlan 77",
	"port 1003",
	"net 10.0.7.0/24",
	"net 10.0.0.0/8 and port 1002",
	"host 10.0.40.1 or host 192.0.2.9",
	"host 198.51.100.1",
	"tcp and host 10.0.3.1",
	"host 10.0.81.1 and after 2024-03-01T12:00:00Z",
	// Directions and negations: a summary knows keys, not directions,
	// and must never narrow a negated term.
	"src host 192.0.2.9",
	"dst host 192.0.2.9 or dst net 10.0.7.0/24",
	"src port 1003",
	"dst port 1003 and not vlan 77",
	"not host 10.0.3.1",
	"!port 1002 and host 192.0.2.9",
	"net 10.0.0.0/8 and not (port 1002 or port 1004)",
	"not not host 192.0.2.9",
}

// checkSame runs every summary query on s and compares the result with
// the one without summaries.
func checkSame(t *testing.T, dir string, s *Store) map[string]*Result {
	t.Helper()
	ref := openSummarized(t, dir, false)
	out := map[string]*Result{}
	for _, q := range summaryQueries {
		want, _ := run(t, ref, q, pcap.Limits{})
		got, res := run(t, s, q, pcap.Limits{})
		if !slices.Equal(got, want) {
			t.Errorf("%q: got packets %v, want %v", q, got, want)
		}
		if len(res.Errors) > 0 {
			t.Errorf("%q: file errors %v", q, res.Errors)
		}
		out[q] = res
	}
	return out
}

func summarize(t *testing.T, s *Store) int {
	t.Helper()
	n, err := s.Summarize(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Refresh(); err != nil {
		t.Fatal(err)
	}
	return n
}

func summaryTables(t *testing.T, dir string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "IDX0", SummaryDirName, "*"+summaryExt))
	return m
}

func TestSummariesSkipFiles(t *testing.T) {
	for _, namesOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("names_only=%v", namesOnly), func(t *testing.T) { checkSkipFiles(t, namesOnly) })
	}
}

func checkSkipFiles(t *testing.T, namesOnly bool) {
	dir := buildSummarized(t)
	s := openListed(t, dir, true, namesOnly)
	// 20 first-level tables of 4 files, then 16 of them merged: 21 written,
	// 5 left; the 2 newest files are not summarized yet.
	if n := summarize(t, s); n != 21 {
		t.Errorf("Summarize wrote %d tables, want 21", n)
	}
	if got := len(summaryTables(t, dir)); got != 5 {
		t.Errorf("%d tables left, want 5", got)
	}
	if n := summarize(t, s); n != 0 {
		t.Errorf("a second Summarize wrote %d tables, want 0", n)
	}
	res := checkSame(t, dir, s)
	// The rare host is in files 3 and 70, and the 2 newest are looked up.
	for q, opened := range map[string]int{"host 192.0.2.9": 4, "vlan 77": 4, "net 10.0.7.0/24": 3, "host 198.51.100.1": 2} {
		r := res[q]
		if r.FilesOpened != opened || r.FilesSummarySkipped != sumFiles-opened || r.SummaryBytes == 0 {
			t.Errorf("%q: %d files opened, %d skipped by summary, %d summary bytes; want %d opened, %d skipped", q, r.FilesOpened, r.FilesSummarySkipped, r.SummaryBytes, opened, sumFiles-opened)
		}
	}
	c, err := s.Cost(context.Background(), mustParse(t, "host 192.0.2.9"))
	if err != nil || c.FilesOpened != 4 || c.FilesSummarySkipped != sumFiles-4 {
		t.Errorf("Cost: %+v, %v; want 4 opened, %d skipped by summary", c, err, sumFiles-4)
	}
}

// TestSummariesNeverChangeResults damages, removes and outdates summaries
// in every way a store meets and checks that each query still returns
// exactly the packets it returns without them.
func TestSummariesNeverChangeResults(t *testing.T) {
	damage := map[string]func(t *testing.T, dir string, s *Store){
		"deleted": func(t *testing.T, dir string, s *Store) {
			os.RemoveAll(filepath.Join(dir, "IDX0", SummaryDirName))
		},
		"truncated": func(t *testing.T, dir string, s *Store) {
			for _, p := range summaryTables(t, dir) {
				info, _ := os.Stat(p)
				os.Truncate(p, info.Size()/2)
			}
		},
		"damaged bytes": func(t *testing.T, dir string, s *Store) {
			for _, p := range summaryTables(t, dir) {
				b, _ := os.ReadFile(p)
				for i := 40; i < len(b)-60; i += 97 {
					b[i] ^= 0x5a
				}
				os.WriteFile(p, b, 0o640)
			}
		},
		"changed after the scan": func(t *testing.T, dir string, s *Store) {
			// The store read the tables; then another build replaced them.
			for _, p := range summaryTables(t, dir) {
				b, _ := os.ReadFile(p)
				os.WriteFile(p, append(b, 0), 0o640)
			}
		},
		"files added after": func(t *testing.T, dir string, s *Store) {
			pkts := []fixture.Packet{{Time: base.Add(2 * time.Hour), Data: make([]byte, 60),
				Keys: [][]byte{indexfile.AddrKey(netip.MustParseAddr("192.0.2.9"))}}}
			pkts[0].Data[0], pkts[0].Data[1] = 0x99, 0x09
			if _, err := fixture.Write(dir, 0, pkts[0].Time, blockSize, pkts); err != nil {
				t.Fatal(err)
			}
		},
		"files deleted by retention": func(t *testing.T, dir string, s *Store) {
			for _, f := range s.Files(0)[:30] {
				s.Forget(f)
				pkt, idx := s.paths(f)
				os.Remove(pkt)
				os.Remove(idx)
			}
		},
		"index rewritten in place": func(t *testing.T, dir string, s *Store) {
			// File 5 gets the rare host in a new index, same inode.
			f := s.Files(0)[5]
			_, idx := s.paths(f)
			writeRareIndex(t, idx)
		},
		"index replaced by a rename": func(t *testing.T, dir string, s *Store) {
			// As a restore by rsync or mv does: another inode.
			f := s.Files(0)[5]
			_, idx := s.paths(f)
			writeRareIndex(t, idx+".new")
			if err := os.Rename(idx+".new", idx); err != nil {
				t.Fatal(err)
			}
		},
	}
	for _, namesOnly := range []bool{false, true} {
		for name, fn := range damage {
			if namesOnly && name == "index rewritten in place" {
				// The inode number alone cannot tell (summaryCovers);
				// stenoquery --stat_files is the listing above.
				continue
			}
			t.Run(fmt.Sprintf("%s/names_only=%v", name, namesOnly), func(t *testing.T) {
				checkDamage(t, name, fn, namesOnly)
			})
		}
	}
}

// writeRareIndex writes at idx an index holding the rare host and VLAN
// at the first packet.
func writeRareIndex(t *testing.T, idx string) {
	t.Helper()
	pos := []uint32{48}
	err := fixture.WriteIndex(idx, map[string][]uint32{
		string(indexfile.AddrKey(netip.MustParseAddr("192.0.2.9"))): pos,
		string(indexfile.VLANKey(77)):                               pos,
	})
	if err != nil {
		t.Fatal(err)
	}
}

func checkDamage(t *testing.T, name string, fn func(t *testing.T, dir string, s *Store), namesOnly bool) {
	t.Helper()
	dir := buildSummarized(t)
	s := openListed(t, dir, true, namesOnly)
	summarize(t, s)
	fn(t, dir, s)
	if name != "changed after the scan" {
		if err := s.Refresh(); err != nil {
			t.Fatal(err)
		}
	}
	checkSame(t, dir, s)
	// And a fresh build over what is left agrees as well.
	if _, err := s.Summarize(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.Refresh()
	checkSame(t, dir, s)
}

// TestSummaryOfDamagedIndex: a file whose index cannot be read is left
// out of the summaries and looked up on its own, reporting its error.
func TestSummaryOfDamagedIndex(t *testing.T) {
	dir := buildSummarized(t)
	s := openSummarized(t, dir, true)
	f := s.Files(0)[2]
	_, idx := s.paths(f)
	os.WriteFile(idx, []byte("not a table"), 0o640)
	s.Refresh()
	summarize(t, s)
	covered := 0
	for _, g := range s.Files(0) {
		if g.cover != nil {
			covered++
		}
		if g.Name == f.Name && g.cover != nil {
			t.Errorf("damaged index %s is covered by a summary", f.Name)
		}
	}
	if covered != 76 {
		t.Errorf("%d files covered, want 76 (19 groups of 4)", covered)
	}
	_, res := run(t, s, "host 192.0.2.9", pcap.Limits{})
	if len(res.Errors) != 1 {
		t.Errorf("errors %v, want the damaged index's", res.Errors)
	}
}

func TestSummaryPrunedWhenItsFilesAreGone(t *testing.T) {
	dir := buildSummarized(t)
	s := openSummarized(t, dir, true)
	summarize(t, s)
	before := len(summaryTables(t, dir))
	// The merged table covers files 0-63: delete them all.
	for _, f := range s.Files(0)[:64] {
		s.Forget(f)
		pkt, idx := s.paths(f)
		os.Remove(pkt)
		os.Remove(idx)
	}
	s.Refresh()
	summarize(t, s)
	if got := len(summaryTables(t, dir)); got != before-1 {
		t.Errorf("%d tables after retention, want %d", got, before-1)
	}
	checkSame(t, dir, s)
}

func mustParse(t *testing.T, q string) query.Node {
	t.Helper()
	n, err := query.Parse(q, base.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestConcurrentSummarize: a daemon and stenoquery --summarize building
// the same tables at once each write a temporary file of their own, so
// neither renames the other's half-written table into place.
func TestConcurrentSummarize(t *testing.T) {
	dir := buildSummarized(t)
	a, b := openSummarized(t, dir, true), openListed(t, dir, true, true)
	errs := make(chan error, 2)
	for _, s := range []*Store{a, b} {
		go func() {
			_, err := s.Summarize(context.Background())
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	left, _ := filepath.Glob(filepath.Join(dir, "IDX0", SummaryDirName, ".*"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	for _, s := range []*Store{a, b} {
		if err := s.Refresh(); err != nil {
			t.Fatal(err)
		}
		res := checkSame(t, dir, s)
		if r := res["host 192.0.2.9"]; r.FilesSummarySkipped == 0 {
			t.Errorf("no file skipped by summary after concurrent builds: %+v", r)
		}
	}
}

// TestSummaryRebuiltWhenItsFilesChange: after every index file's status
// changed (a chown -R of the index directory changes each ctime), the
// tables that listed them are removed and the files summarized again,
// once: a stale table must neither keep its files uncovered nor make
// every later Summarize write their tables anew.
func TestSummaryRebuiltWhenItsFilesChange(t *testing.T) {
	dir := buildSummarized(t)
	s := openSummarized(t, dir, true)
	summarize(t, s)
	var stale [][]byte // the tables as they were before the change
	for _, p := range summaryTables(t, dir) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		stale = append(stale, b)
	}
	for _, f := range s.Files(0) {
		_, idx := s.paths(f)
		if err := os.Chmod(idx, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	// A build interrupted after the change can leave an old table beside
	// new ones covering the same files, under another name (here one
	// that sorts last, so that it is read last).
	for k, b := range stale {
		if err := os.WriteFile(filepath.Join(dir, "IDX0", SummaryDirName, fmt.Sprintf("zz-stale-%d%s", k, summaryExt)), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Refresh(); err != nil {
		t.Fatal(err)
	}
	if n := summarize(t, s); n != 21 {
		t.Errorf("Summarize after the change wrote %d tables, want 21 (all again)", n)
	}
	if n := summarize(t, s); n != 0 {
		t.Errorf("a second Summarize wrote %d tables, want 0", n)
	}
	if got := len(summaryTables(t, dir)); got != 5 {
		t.Errorf("%d tables left, want 5", got)
	}
	res := checkSame(t, dir, s)
	if r := res["host 192.0.2.9"]; r.FilesOpened != 4 {
		t.Errorf("host 192.0.2.9: %d files opened, want 4", r.FilesOpened)
	}
}
