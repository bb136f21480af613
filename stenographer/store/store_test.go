package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"

	"github.com/stenographer-ng/stenographer/stenographer/internal/fixture"
	"github.com/stenographer-ng/stenographer/stenographer/internal/testdata"
	"github.com/stenographer-ng/stenographer/stenographer/pcap"
	"github.com/stenographer-ng/stenographer/stenographer/query"
)

const blockSize = 4096

var base = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

// portKey is the index key of a port.
func portKey(p int) []byte { return []byte{0x02, byte(p >> 8), byte(p)} }

// build writes files for two threads. Packet k (k = 0..) is captured at
// base + k seconds, goes to thread k%2, carries port 1000+k%10 and is in
// file k/40 of its thread; its first payload byte is k%256 and the frame
// is 60+k%50 bytes so several blocks are used.
func build(t *testing.T, n int) (string, *Store) {
	t.Helper()
	dir := t.TempDir()
	perFile := map[[2]int][]fixture.Packet{}
	for k := 0; k < n; k++ {
		data := make([]byte, 60+k%50)
		data[0], data[1] = byte(k), byte(k>>8)
		key := [2]int{k % 2, k / 40}
		perFile[key] = append(perFile[key], fixture.Packet{
			Time: base.Add(time.Duration(k) * time.Second),
			Data: data,
			Keys: [][]byte{portKey(1000 + k%10)},
		})
	}
	for key, pkts := range perFile {
		if _, err := fixture.Write(dir, key[0], pkts[0].Time, blockSize, pkts); err != nil {
			t.Fatal(err)
		}
	}
	return dir, open(t, dir)
}

func open(t *testing.T, dir string) *Store {
	s := New(Config{BlockSize: blockSize, MaxOpenFiles: 6, Threads: []Thread{
		{filepath.Join(dir, "PKT0"), filepath.Join(dir, "IDX0"), "eth0"},
		{filepath.Join(dir, "PKT1"), filepath.Join(dir, "IDX1"), "eth1"},
	}})
	if err := s.Refresh(); err != nil {
		t.Fatal(err)
	}
	return s
}

// run returns the packet numbers (from the payload) of a query's result.
func run(t *testing.T, s *Store, q string, limits pcap.Limits) ([]int, *Result) {
	t.Helper()
	n, err := query.Parse(q, base.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, _ := pcap.NewWriter(&buf, limits)
	res, err := s.Query(context.Background(), n, w)
	if err != nil {
		t.Fatalf("Query(%q): %v", q, err)
	}
	r, err := pcapgo.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	var last time.Time
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		if ci.Timestamp.Before(last) {
			t.Errorf("%q: packets out of timestamp order", q)
		}
		last = ci.Timestamp
		got = append(got, int(data[0])|int(data[1])<<8)
	}
	return got, res
}

func seq(from, to, step int, keep func(int) bool) []int {
	var out []int
	for k := from; k < to; k += step {
		if keep == nil || keep(k) {
			out = append(out, k)
		}
	}
	return out
}

func TestQuery(t *testing.T) {
	const n = 400
	_, s := build(t, n)
	at := func(k int) string { return base.Add(time.Duration(k) * time.Second).Format(time.RFC3339) }
	tests := []struct {
		q    string
		want []int
	}{
		{"port 1003", seq(3, n, 10, nil)},
		{"port 1003 or port 1004", seq(0, n, 1, func(k int) bool { return k%10 == 3 || k%10 == 4 })},
		{"port 1003 and port 1004", nil},
		{"port 9", nil},
		{"after " + at(349), seq(350, n, 1, nil)},
		{"before " + at(20), seq(0, 20, 1, nil)},
		{"after " + at(99) + " and before " + at(120), seq(100, 120, 1, nil)},
		{"port 1001 and after " + at(300), seq(301, n, 10, nil)},
		{"port 1001 or after " + at(390), seq(0, n, 1, func(k int) bool { return k%10 == 1 || k > 390 })},
		{"after 2000-01-01T00:00:00Z", seq(0, n, 1, nil)},
		// Thread 0 (even packets) captures on eth0, thread 1 on eth1.
		{"iface eth0", seq(0, n, 2, nil)},
		{"iface eth1 and port 1003", seq(3, n, 10, nil)},
		{"iface eth0 and port 1003", nil},
		{"iface eth0 or iface eth1", seq(0, n, 1, nil)},
		{"(iface eth0 and port 1002) or (iface eth1 and after " + at(389) + ")", seq(0, n, 1, func(k int) bool { return k%10 == 2 || k > 389 && k%2 == 1 })},
		{"iface eth9", nil},
	}
	for _, tc := range tests {
		got, _ := run(t, s, tc.q, pcap.Limits{})
		if !slices.Equal(got, tc.want) {
			t.Errorf("%q = %v\nwant %v", tc.q, got, tc.want)
		}
	}
	if c := s.open.count(); c > 3 {
		t.Errorf("%d pairs open, MaxOpenFiles 6 allows 3", c)
	}
}

// As pcapng, every packet names the interface of its thread, and the
// stream describes each interface once, in thread order.
func TestQueryPcapng(t *testing.T) {
	const n = 100
	_, s := build(t, n)
	q, err := query.Parse("port 1003 or port 1004", base)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := pcap.NewNgWriter(&buf, pcap.Limits{}, s.Interfaces())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Query(context.Background(), q, w); err != nil {
		t.Fatal(err)
	}
	r, err := pcapgo.NewNgReader(&buf, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		k := int(data[0]) | int(data[1])<<8
		if ci.InterfaceIndex != k%2 || !ci.Timestamp.Equal(base.Add(time.Duration(k)*time.Second)) {
			t.Errorf("packet %d: interface %d at %v, want %d at %v", k, ci.InterfaceIndex, ci.Timestamp, k%2, base.Add(time.Duration(k)*time.Second))
		}
		got = append(got, k)
	}
	if want := seq(0, n, 1, func(k int) bool { return k%10 == 3 || k%10 == 4 }); !slices.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	for i, name := range []string{"eth0", "eth1"} {
		if ifc, err := r.Interface(i); err != nil || ifc.Name != name {
			t.Errorf("interface %d = %+v, %v; want %s", i, ifc, err, name)
		}
	}
}

func TestQueryPrunesFilesByTime(t *testing.T) {
	_, s := build(t, 400)
	_, res := run(t, s, "port 1001 and after "+base.Add(390*time.Second).Format(time.RFC3339), pcap.Limits{})
	// 10 files per thread; only the last file of each thread can match
	// (StartSlack keeps at most the files within 5 minutes before).
	if res.FilesOpened > 2+2*(int(StartSlack/time.Second)/80+1) || res.FilesSkipped == 0 {
		t.Errorf("opened %d files, skipped %d", res.FilesOpened, res.FilesSkipped)
	}
}

func TestQueryLimits(t *testing.T) {
	_, s := build(t, 100)
	got, res := run(t, s, "port 1003 or port 1005", pcap.Limits{MaxPackets: 7})
	if want := []int{3, 5, 13, 15, 23, 25, 33}; !slices.Equal(got, want) || !res.Truncated {
		t.Errorf("limited result = %v (truncated %v), want %v", got, res.Truncated, want)
	}
	got, res = run(t, s, "port 1003", pcap.Limits{MaxBytes: 24 + 2*(16+63) + 10})
	if !slices.Equal(got, []int{3, 13}) || !res.Truncated {
		t.Errorf("byte-limited result = %v (truncated %v)", got, res.Truncated)
	}
}

func TestQueryCancelled(t *testing.T) {
	_, s := build(t, 100)
	q, _ := query.Parse("port 1003", base)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w, _ := pcap.NewWriter(&bytes.Buffer{}, pcap.Limits{})
	if _, err := s.Query(ctx, q, w); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled query err = %v", err)
	}
}

// Damaged files: the query returns what it can and reports the rest.
func TestQueryDamagedFiles(t *testing.T) {
	fileOf := func(dir string, thread, k int) (string, string) {
		name := strconv.FormatInt(base.Add(time.Duration(k)*time.Second).UnixMicro(), 10)
		return filepath.Join(dir, fmt.Sprintf("PKT%d", thread), name), filepath.Join(dir, fmt.Sprintf("IDX%d", thread), name)
	}
	tests := []struct {
		name    string
		damage  func(dir string)
		lost    func(k int) bool // packets the damage makes unreadable
		errored bool
	}{
		{"truncated packet file", func(dir string) {
			pkt, _ := fileOf(dir, 0, 0) // thread 0's first file: packets 0,2,..,38
			os.Truncate(pkt, 2000)
		}, func(k int) bool { return k < 40 && k%2 == 0 && k > 22 }, true}, // 12 packets fit before the cut
		{"garbage index", func(dir string) {
			_, idx := fileOf(dir, 1, 41)
			os.WriteFile(idx, []byte("garbage garbage garbage garbage garbage garbage garbage"), 0o644)
		}, func(k int) bool { return k >= 40 && k < 80 && k%2 == 1 }, true},
		{"missing partner", func(dir string) {
			_, idx := fileOf(dir, 0, 80)
			os.Remove(idx)
		}, func(k int) bool { return k >= 80 && k < 120 && k%2 == 0 }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, _ := build(t, 200)
			tc.damage(dir)
			s := open(t, dir)
			got, res := run(t, s, "port 1001 or port 1002 or port 1007 or port 1008", pcap.Limits{})
			want := seq(0, 200, 1, func(k int) bool {
				d := k % 10
				return (d == 1 || d == 2 || d == 7 || d == 8) && !tc.lost(k)
			})
			if !slices.Equal(got, want) {
				t.Errorf("got %v\nwant %v", got, want)
			}
			if (len(res.Errors) > 0) != tc.errored {
				t.Errorf("errors = %v, want errors: %v", res.Errors, tc.errored)
			}
		})
	}
}

// Files removed by retention while a query reads them: open handles keep
// working; files not yet opened have aged out, which is no error.
func TestQueryWhileDeleting(t *testing.T) {
	dir, s := build(t, 400)
	q, _ := query.Parse("port 1001 or port 1002", base)
	done := make(chan error)
	go func() {
		for i := 0; i < 2; i++ {
			for _, f := range s.Files(i) {
				s.Forget(f)
				pkt, idx := s.paths(f)
				os.Remove(pkt)
				os.Remove(idx)
			}
		}
		done <- nil
	}()
	w, _ := pcap.NewWriter(&bytes.Buffer{}, pcap.Limits{})
	res, err := s.Query(context.Background(), q, w)
	if err != nil {
		t.Errorf("query during deletion: %v", err)
	} else if len(res.Errors) != 0 {
		t.Errorf("query during deletion reported %v", res.Errors)
	}
	<-done
	entries, _ := os.ReadDir(filepath.Join(dir, "PKT0"))
	if len(entries) != 0 {
		t.Errorf("%d files left", len(entries))
	}
}

func TestReferenceCapture(t *testing.T) {
	dir := filepath.Join(testdata.Shared(t), "upstream-testdata", "capture")
	s := New(Config{Threads: []Thread{{PacketsDirectory: filepath.Join(dir, "PKT0"), IndexDirectory: filepath.Join(dir, "IDX0")}}})
	if err := s.Refresh(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		q    string
		want int64
	}{
		{"port 445", 3201},      // mercury-emix.pcap's oracle row
		{"mpls 29 and tcp", 11}, // arkime-mpls-basic.pcap's oracle row
		{"net 192.168.122.0/24", 1688},
		{"after 2000-01-01T00:00:00Z", 11896},
	} {
		q, _ := query.Parse(tc.q, time.Now())
		w, _ := pcap.NewWriter(&bytes.Buffer{}, pcap.Limits{})
		res, err := s.Query(context.Background(), q, w)
		if err != nil || res.Packets != tc.want {
			t.Errorf("%q = %d packets, %v; want %d", tc.q, res.Packets, err, tc.want)
		}
	}
}

// A result of several megabytes is read in many batches (each bounded in
// bytes, ending between runs of packets read at once) and arrives complete
// and byte for byte, by index positions and by a time-only scan alike.
func TestQueryManyBatches(t *testing.T) {
	const n, size, bs = 3000, 1400, 64 << 10
	dir := t.TempDir()
	var pkts []fixture.Packet
	frame := func(k int) []byte {
		d := make([]byte, size)
		for i := range d {
			d[i] = byte(k*7 + i)
		}
		d[0], d[1] = byte(k), byte(k>>8)
		return d
	}
	for k := range n {
		keys := [][]byte{portKey(80)}
		if k%3 == 0 {
			keys = append(keys, portKey(81))
		}
		pkts = append(pkts, fixture.Packet{Time: base.Add(time.Duration(k) * time.Millisecond), Data: frame(k), Keys: keys})
	}
	if _, err := fixture.Write(dir, 0, base, bs, pkts); err != nil {
		t.Fatal(err)
	}
	s := New(Config{BlockSize: bs, Threads: []Thread{{PacketsDirectory: filepath.Join(dir, "PKT0"), IndexDirectory: filepath.Join(dir, "IDX0")}}})
	if err := s.Refresh(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		q    string
		want []int
	}{
		{"port 80", seq(0, n, 1, nil)},
		{"port 81", seq(0, n, 3, nil)},
		{"after 2000-01-01T00:00:00Z", seq(0, n, 1, nil)},
	} {
		q, err := query.Parse(tc.q, base)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		w, _ := pcap.NewWriter(&buf, pcap.Limits{})
		if _, err := s.Query(context.Background(), q, w); err != nil {
			t.Fatal(err)
		}
		r, err := pcapgo.NewReader(&buf)
		if err != nil {
			t.Fatal(err)
		}
		i := 0
		for ; ; i++ {
			data, _, err := r.ReadPacketData()
			if err != nil {
				break
			}
			if i >= len(tc.want) || !bytes.Equal(data, frame(tc.want[i])) {
				t.Fatalf("%q: packet %d is not frame %d", tc.q, i, tc.want[min(i, len(tc.want)-1)])
			}
		}
		if i != len(tc.want) {
			t.Errorf("%q: %d packets, want %d", tc.q, i, len(tc.want))
		}
	}
}

// A pair deleted after a query listed it is an error only when nobody
// said it went away: retention forgets a pair before unlinking it, so its
// absence is data that aged out, while a file vanishing behind the
// store's back is damage to report.
func TestQueryFileGoneAfterListing(t *testing.T) {
	for _, forget := range []bool{true, false} {
		t.Run(fmt.Sprintf("forgotten=%v", forget), func(t *testing.T) {
			_, s := build(t, 200)
			q, _ := query.Parse("port 1001", base)
			// The query's snapshot of the files is taken before the
			// deletion, as when retention runs while a query starts.
			files := s.Files(1)
			victim := files[len(files)-1]
			if forget {
				s.Forget(victim)
			}
			pkt, _ := s.paths(victim)
			if err := os.Remove(pkt); err != nil {
				t.Fatal(err)
			}
			res := &Result{}
			src := &threadSource{ctx: context.Background(), s: s, q: q, files: files, res: res}
			defer src.shutdown()
			n := 0
			for src.Next() {
				n++
			}
			if src.Err() != nil {
				t.Fatal(src.Err())
			}
			if want := 20 - 4; n != want { // packets 1, 11, .., 191; 4 in the last file
				t.Errorf("%d packets, want %d", n, want)
			}
			if forget && (len(res.Errors) != 0 || res.FilesAgedOut != 1) {
				t.Errorf("forgotten file: errors %v, aged out %d; want none and 1", res.Errors, res.FilesAgedOut)
			}
			if !forget && (len(res.Errors) != 1 || res.FilesAgedOut != 0) {
				t.Errorf("vanished file: errors %v, aged out %d; want 1 and 0", res.Errors, res.FilesAgedOut)
			}
		})
	}
}

// A query's files are the listed ones with the live ones among them by
// start time, each live file after the listed ones of its start, live
// files in their order: as a stable sort of both lists puts them.
func TestQueryFilesOrder(t *testing.T) {
	file := func(us int64, name string, live bool) FileInfo {
		return FileInfo{Name: name, Start: time.UnixMicro(us), Live: live}
	}
	files := []FileInfo{file(1, "1", false), file(3, "3", false), file(3, "+3", false), file(5, "5", false)}
	for _, tc := range []struct {
		name string
		live []FileInfo
	}{
		{"none", nil},
		{"the newest", []FileInfo{file(9, "9", true)}},
		{"renamed into the middle", []FileInfo{file(4, "4", true), file(9, "9", true)}},
		{"a start already listed", []FileInfo{file(3, "+3x", true), file(3, "+3y", true), file(0, "0", true)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Store{files: [][]FileInfo{files}, live: [][]FileInfo{tc.live}}
			want := slices.Concat(files, tc.live)
			slices.SortStableFunc(want, func(a, b FileInfo) int { return a.Start.Compare(b.Start) })
			got := s.queryFiles(0)
			if !slices.EqualFunc(got, want, func(a, b FileInfo) bool { return a.Name == b.Name }) {
				t.Errorf("queryFiles = %v, want %v", names(got), names(want))
			}
			if len(files) != 4 || files[1].Name != "3" {
				t.Error("queryFiles changed the listed files")
			}
		})
	}
}

func names(fs []FileInfo) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Name)
	}
	return out
}
