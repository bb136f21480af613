package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"

	"github.com/stenographer-ng/stenographer/stenographer/internal/fixture"
	"github.com/stenographer-ng/stenographer/stenographer/pcap"
	"github.com/stenographer-ng/stenographer/stenographer/query"
)

// queryWithin runs q like run, but fails the test instead of hanging when
// the query does not end within a generous deadline (a query blocked in
// open(2) cannot be cancelled through its context).
func queryWithin(t *testing.T, s *Store, q string) ([]int, *Result) {
	t.Helper()
	n, err := query.Parse(q, base.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	type outcome struct {
		buf bytes.Buffer
		res *Result
		err error
	}
	done := make(chan *outcome, 1)
	go func() {
		o := &outcome{}
		w, _ := pcap.NewWriter(&o.buf, pcap.Limits{})
		o.res, o.err = s.Query(context.Background(), n, w)
		done <- o
	}()
	var o *outcome
	select {
	case o = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("query %q did not end within 2 minutes", q)
	}
	if o.err != nil {
		t.Fatalf("Query(%q): %v", q, o.err)
	}
	r, err := pcapgo.NewReader(&o.buf)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		got = append(got, int(data[0])|int(data[1])<<8)
	}
	return got, o.res
}

// errorsNaming reports whether some error of res names each path.
func errorsNaming(res *Result, paths ...string) bool {
	for _, p := range paths {
		if !slices.ContainsFunc(res.Errors, func(e error) bool { return strings.Contains(e.Error(), p) }) {
			return false
		}
	}
	return true
}

// A FIFO with a pair's name, as index or as packet file, is reported as a
// file error naming it; the query answers from the other files at once
// instead of waiting forever for a writer.
func TestQueryFIFO(t *testing.T) {
	dir, _ := build(t, 200)
	name := strconv.FormatInt(base.Add(1000*time.Second).UnixMicro(), 10)
	before := open(t, dir)
	// Thread 0: a FIFO index beside a regular packet file. Thread 1: a
	// FIFO packet file beside a valid index that matches the query.
	fifoIdx := filepath.Join(dir, "IDX0", name)
	fifoPkt := filepath.Join(dir, "PKT1", name)
	for _, p := range []string{fifoIdx, fifoPkt} {
		if err := syscall.Mkfifo(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := open(t, dir)
	oldPkt, _ := before.paths(before.Files(0)[0])
	_, oldIdx := before.paths(before.Files(1)[0])
	for _, l := range [][2]string{{oldPkt, filepath.Join(dir, "PKT0", name)}, {oldIdx, filepath.Join(dir, "IDX1", name)}} {
		if err := os.Link(l[0], l[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Refresh(); err != nil {
		t.Fatal(err)
	}
	got, res := queryWithin(t, s, "port 1001 or port 1002")
	want := seq(0, 200, 1, func(k int) bool { return k%10 == 1 || k%10 == 2 })
	if !slices.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	if len(res.Errors) != 2 || !errorsNaming(res, fifoIdx, fifoPkt) {
		t.Errorf("errors %v, want one naming %s and one naming %s", res.Errors, fifoIdx, fifoPkt)
	}
}

// numbered writes files pairs into dir for thread 0, perFile packets each.
// Packet k is captured at base + k*step; its frame is frame(k) with k in
// its first two bytes; it carries the index key ip proto 6 and keys(k).
// It returns the files' names and a Store over the thread.
func numbered(t *testing.T, dir string, files, perFile int, step time.Duration, frame func(k int) []byte, keys func(k int) [][]byte,
	write func(string, int, time.Time, int, []fixture.Packet) ([]uint32, error)) ([]string, *Store) {
	t.Helper()
	var names []string
	for f := range files {
		pkts := make([]fixture.Packet, perFile)
		for i := range pkts {
			k := f*perFile + i
			data := frame(k)
			data[0], data[1] = byte(k), byte(k>>8)
			pkts[i] = fixture.Packet{Time: base.Add(time.Duration(k) * step), Data: data, Keys: append([][]byte{{0x01, 6}}, keys(k)...)}
		}
		if _, err := write(dir, 0, pkts[0].Time, blockSize, pkts); err != nil {
			t.Fatal(err)
		}
		names = append(names, strconv.FormatInt(pkts[0].Time.UnixMicro(), 10))
	}
	s := New(Config{BlockSize: blockSize, Threads: []Thread{{PacketsDirectory: filepath.Join(dir, "PKT0"), IndexDirectory: filepath.Join(dir, "IDX0")}}})
	if err := s.Refresh(); err != nil {
		t.Fatal(err)
	}
	return names, s
}

func frameOf(n int) func(int) []byte { return func(int) []byte { return make([]byte, n) } }

func noKeys(int) [][]byte { return nil }

// A long 'or' of the same key (the pathological query of issue 8: every
// operand's set was kept while eight files were evaluated ahead) looks the
// key up once per file and allocates about what one operand does.
func TestQueryLongOrMemory(t *testing.T) {
	const files, perFile = 12, 20000
	_, s := numbered(t, t.TempDir(), files, perFile, time.Millisecond, frameOf(60), func(k int) [][]byte { return [][]byte{portKey(1000 + k%7)} }, fixture.Write)
	at := base.Add(time.Duration(files*perFile/2) * time.Millisecond).Format(time.RFC3339Nano)
	for _, tc := range []struct {
		name, q string
		want    int64
	}{
		{"exact", strings.Repeat("tcp or ", query.MaxPrimitives-1) + "tcp", files * perFile},
		{"inexact", strings.Repeat("(tcp and after "+at+") or ", query.MaxPrimitives/2-1) + "tcp", files * perFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := query.Parse(tc.q, base)
			if err != nil {
				t.Fatal(err)
			}
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			w, _ := pcap.NewWriter(io.Discard, pcap.Limits{})
			res, err := s.Query(context.Background(), q, w)
			if err != nil {
				t.Fatal(err)
			}
			runtime.ReadMemStats(&after)
			if res.Packets != tc.want || len(res.Errors) > 0 {
				t.Fatalf("%d packets, errors %v; want %d", res.Packets, res.Errors, tc.want)
			}
			// One operand's set is 80 KB per file; the arena and block
			// buffers a few MB. Keeping every operand would be 1000 × 80 KB
			// per file, 80 MB for each of the eight files evaluated ahead.
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("query allocated %.1f MB", float64(alloc)/(1<<20))
			if alloc > 64<<20 {
				t.Errorf("query allocated %d MB", alloc>>20)
			}
		})
	}
}

// A time-only query scans packet files; damage it meets is a file error
// naming the file (and the block's offset), and the scan goes on past it.
// A file cut at a block boundary, or whose last blocks were zeroed, is
// caught by its index, which knows of later packets.
func TestQueryTimeScanDamage(t *testing.T) {
	const files, perFile = 3, 100 // 28 packets per 4 KiB block: blocks of 28, 28, 28, 16
	build := func(t *testing.T) (string, *Store) {
		dir := t.TempDir()
		_, s := numbered(t, dir, files, perFile, time.Second, frameOf(60), noKeys, fixture.Write)
		return dir, s
	}
	middle := strconv.FormatInt(base.Add(perFile*time.Second).UnixMicro(), 10) // packets 100..199
	lost := func(from, to int) func(int) bool { return func(k int) bool { return k >= from && k < to } }
	tests := []struct {
		name   string
		damage func(path string) error
		lost   func(k int) bool
		says   string
	}{
		{"cut at a block boundary", func(p string) error { return os.Truncate(p, 2*blockSize) }, lost(156, 200), "was cut"},
		{"last block zeroed", func(p string) error { return writeAt(p, 3*blockSize, make([]byte, blockSize)) }, lost(184, 200), "was cut"},
		{"block header zeroed", func(p string) error { return writeAt(p, blockSize, make([]byte, 48)) }, lost(128, 156), "at offset 4096:"},
		{"count smaller", func(p string) error { return writeAt(p, blockSize+12, []byte{2, 0, 0, 0}) }, lost(130, 156), "at offset 4288:"},
		{"next offset 0", func(p string) error { return writeAt(p, blockSize+48, []byte{0, 0, 0, 0}) }, lost(129, 156), "at offset 4144:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, s := build(t)
			pkt := filepath.Join(dir, "PKT0", middle)
			if err := tc.damage(pkt); err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{"after 2000-01-01T00:00:00Z", "last=1000000h", "before 2100-01-01T00:00:00Z"} {
				got, res := queryWithin(t, s, q)
				want := seq(0, files*perFile, 1, func(k int) bool { return !tc.lost(k) })
				if !slices.Equal(got, want) {
					t.Errorf("%q: got %v\nwant %v", q, got, want)
				}
				if len(res.Errors) != 1 || !errorsNaming(res, pkt, tc.says) {
					t.Errorf("%q: errors %v, want one naming %s and %q", q, res.Errors, pkt, tc.says)
				}
			}
		})
	}
}

func writeAt(path string, off int64, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteAt(b, off)
	return err
}

// Two pairs whose packet files were swapped under the same names: no
// packet that was not captured is ever served, and the mismatch is a file
// error naming the files. The payloads are full of fake packet headers
// (mac offset 48, snaplen 16) at every 16-byte boundary, so a position
// from the other file's index that lands inside a packet passes every
// header check. With the pair-identity record the swapped pairs give
// nothing; without it (the reference's indexes) each position is checked
// against its block's chain, and what is served is a captured packet.
func TestQuerySwappedPairs(t *testing.T) {
	fake := make([]byte, 16)
	binary.LittleEndian.PutUint32(fake[4:], 1)   // tp_sec, tp_status
	binary.LittleEndian.PutUint16(fake[8:], 48)  // tp_mac
	binary.LittleEndian.PutUint32(fake[12:], 16) // tp_snaplen
	for _, identified := range []bool{true, false} {
		t.Run(fmt.Sprintf("identified=%v", identified), func(t *testing.T) {
			dir := t.TempDir()
			write := fixture.Write
			if identified {
				write = fixture.WriteIdentified
			}
			captured := map[string]bool{}
			sizes := []int{400, 560, 480}
			names, _ := numbered(t, dir, 3, 30, time.Second, func(k int) []byte {
				// The frame starts 82 bytes after its header: data[14:] is
				// 16-byte aligned in the file.
				data := make([]byte, sizes[k/30])
				for j := 14; j+16 <= len(data); j += 16 {
					copy(data[j:], fake)
				}
				data[0], data[1] = byte(k), byte(k>>8)
				captured[string(data)] = true
				return data
			}, noKeys, write)
			a, b := filepath.Join(dir, "PKT0", names[0]), filepath.Join(dir, "PKT0", names[1])
			for _, mv := range [][2]string{{a, a + ".tmp"}, {b, a}, {a + ".tmp", b}} {
				if err := os.Rename(mv[0], mv[1]); err != nil {
					t.Fatal(err)
				}
			}
			s := New(Config{BlockSize: blockSize, Threads: []Thread{{PacketsDirectory: filepath.Join(dir, "PKT0"), IndexDirectory: filepath.Join(dir, "IDX0")}}})
			if err := s.Refresh(); err != nil {
				t.Fatal(err)
			}
			q, _ := query.Parse("tcp", base)
			var buf bytes.Buffer
			w, _ := pcap.NewWriter(&buf, pcap.Limits{})
			res, err := s.Query(context.Background(), q, w)
			if err != nil {
				t.Fatal(err)
			}
			r, err := pcapgo.NewReader(&buf)
			if err != nil {
				t.Fatal(err)
			}
			var fromC int
			for {
				data, _, err := r.ReadPacketData()
				if err != nil {
					break
				}
				if !captured[string(data)] {
					t.Fatalf("served a packet that was never captured: %x", data)
				}
				if k := int(data[0]) | int(data[1])<<8; k >= 60 {
					fromC++
				}
			}
			if fromC != 30 {
				t.Errorf("%d packets of the intact pair, want 30", fromC)
			}
			if len(res.Errors) != 2 {
				t.Errorf("errors %v, want one per swapped pair", res.Errors)
			}
			for _, e := range res.Errors {
				if !errors.Is(e, ErrNotAPair) {
					t.Errorf("error %v is not ErrNotAPair", e)
				}
			}
			if !errorsNaming(res, a, b, filepath.Join(dir, "IDX0", names[0]), filepath.Join(dir, "IDX0", names[1])) {
				t.Errorf("errors %v do not name both packet files and both indexes", res.Errors)
			}
			if identified && res.Packets != 30 {
				t.Errorf("%d packets, want only the intact pair's 30", res.Packets)
			}
		})
	}
}
