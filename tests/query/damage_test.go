package query_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/stenographer-ng/stenographer/tests/internal/pcapfile"
	"github.com/stenographer-ng/stenographer/tests/internal/steno"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// Damaged and mismatched files through the real stenotype and stenoquery:
// a store of three files of 60 TCP packets each (4 KiB blocks, 13 packets
// a block), imported with stenotype, then damaged. Every query names the
// bad file and exits with status 1 (not a crash), and answers from the
// other files; none of this needs the shared corpus.

const (
	perFile = 60
	nFiles  = 3
)

var damageBase = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// damageStore imports the three files and returns the directory and the
// files' names, oldest first.
func damageStore(t *testing.T) (string, []string) {
	t.Helper()
	var pkts []pcapfile.Packet
	for i := range nFiles * perFile {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP,
			SrcIP: net.IPv4(10, 0, 0, byte(1+i%50)), DstIP: net.IPv4(10, 1, 0, 1)}
		tcp := &layers.TCP{SrcPort: layers.TCPPort(10000 + i), DstPort: 80, ACK: true, Window: 512}
		if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		buf := gopacket.NewSerializeBuffer()
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
		payload := gopacket.Payload(make([]byte, 150+i%40))
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp, payload); err != nil {
			t.Fatal(err)
		}
		data := slices.Clone(buf.Bytes())
		pkts = append(pkts, pcapfile.Packet{Time: damageBase.Add(time.Duration(i) * time.Second), WireLen: len(data), Data: data})
	}
	in := filepath.Join(t.TempDir(), "in.pcap")
	if err := pcapfile.Write(in, pkts); err != nil {
		t.Fatal(err)
	}
	dir := testenv.OutputDir(t, 1)
	testenv.MustRun(t, timeout, testenv.Stenotype(t), "--pcap_in="+in, "--dir="+dir, "--blocksize_kb=4",
		fmt.Sprintf("--fileage_sec=%d", perFile-1), "-q")
	ents, err := os.ReadDir(filepath.Join(dir, "PKT0"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) != nFiles {
		t.Fatalf("import made files %v, want %d", names, nFiles)
	}
	return dir, names
}

// query runs stenoquery --count and returns the count, stderr and exit
// status (-1: it did not exit by itself, e.g. a crash by signal).
func countQuery(t *testing.T, dir, q string) (int, string, int) {
	t.Helper()
	r := testenv.Run(timeout, testenv.Binary(t, "stenoquery"), "--dir="+dir, "--blocksize_kb=4", "--count", q)
	status := 0
	var ee *exec.ExitError
	switch {
	case errors.As(r.Err, &ee):
		status = ee.ExitCode()
	case r.Err != nil:
		t.Fatalf("%q: %v", q, r.Err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(r.Stdout)))
	if err != nil {
		t.Fatalf("%q: count %q (exit %d, stderr %s)", q, r.Stdout, status, r.Stderr)
	}
	return n, string(r.Stderr), status
}

// wantFailure checks a query that answers with the packets of the other
// files, names each of paths, and exits with status 1.
func wantFailure(t *testing.T, dir, q string, want int, paths ...string) {
	t.Helper()
	n, stderr, status := countQuery(t, dir, q)
	if n != want || status != 1 {
		t.Errorf("%q: %d packets, exit %d; want %d and exit 1 (stderr: %s)", q, n, status, want, stderr)
	}
	for _, p := range paths {
		if !strings.Contains(stderr, p) {
			t.Errorf("%q: stderr does not name %s: %s", q, p, stderr)
		}
	}
}

// An index whose data block handle claims 64 GiB (goleveldb allocated it:
// a fatal out-of-memory) or lies past the end of the file (0 packets, no
// error): stenoquery names the index, answers from the other files and
// exits with status 1.
func TestCraftedIndex(t *testing.T) {
	dir, names := damageStore(t)
	for i, h := range [][2]uint64{{0, 64 << 30}, {1 << 20, 40}} {
		name := strconv.Itoa(int(time.Now().UnixMicro()) + i) // after every imported file
		if err := os.Link(filepath.Join(dir, "PKT0", names[0]), filepath.Join(dir, "PKT0", name)); err != nil {
			t.Fatal(err)
		}
		idx := filepath.Join(dir, "IDX0", name)
		if err := os.WriteFile(idx, steno.CraftedIndex(h[0], h[1]), 0o644); err != nil {
			t.Fatal(err)
		}
		wantFailure(t, dir, "tcp", nFiles*perFile, idx)
		wantFailure(t, dir, "host 10.1.0.1 or port 80", nFiles*perFile, idx)
		if err := os.Remove(idx); err != nil {
			t.Fatal(err)
		}
	}
}

// Damage a time-only query meets while scanning a packet file is named
// with the file and the block's offset; the scan goes on with the next
// block, and an index query on the same file still finds those packets.
func TestTimeScanDamage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string)
		says   string
	}{
		{"block header zeroed", func(t *testing.T, p string) { writeAt(t, p, 4096, make([]byte, 48)) }, "at offset 4096:"},
		{"cut at a block boundary", func(t *testing.T, p string) {
			if err := os.Truncate(p, 2*4096); err != nil {
				t.Fatal(err)
			}
		}, "was cut"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, names := damageStore(t)
			pkt := filepath.Join(dir, "PKT0", names[1])
			all := nFiles * perFile
			before, _, _ := countQuery(t, dir, "port 80 and after 2000-01-01T00:00:00Z")
			if before != all {
				t.Fatalf("intact store: %d packets, want %d", before, all)
			}
			// The packets of blocks 1.. of the middle file, by their positions.
			lost := 0
			out := testenv.MustRun(t, timeout, testenv.Stenodump(t), "positions", "--blocksize_kb=4", pkt)
			for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				f := strings.Fields(l)
				p, err := strconv.Atoi(f[0])
				if err != nil {
					t.Fatalf("stenodump positions line %q", l)
				}
				if (tc.says == "was cut" && p >= 2*4096) || (tc.says != "was cut" && p >= 4096 && p < 2*4096) {
					lost++
				}
			}
			if lost == 0 {
				t.Fatal("the damage loses no packet: the test would prove nothing")
			}
			tc.damage(t, pkt)
			for _, q := range []string{"after 2000-01-01T00:00:00Z", "last=1000000h", "before 2100-01-01T00:00:00Z"} {
				wantFailure(t, dir, q, all-lost, pkt, tc.says)
			}
			if tc.says != "was cut" {
				if n, stderr, status := countQuery(t, dir, "tcp"); n != all || status != 0 {
					t.Errorf("index query on the damaged store: %d packets, exit %d; want %d, 0 (stderr: %s)", n, status, all, stderr)
				}
			}
		})
	}
}

// Two pairs whose packet files were swapped: stenotype's index records
// its packet file's first block, so neither pair serves a packet, each is
// named, and the third pair answers.
func TestSwappedPairs(t *testing.T) {
	dir, names := damageStore(t)
	a, b := filepath.Join(dir, "PKT0", names[0]), filepath.Join(dir, "PKT0", names[1])
	for _, mv := range [][2]string{{a, a + ".tmp"}, {b, a}, {a + ".tmp", b}} {
		if err := os.Rename(mv[0], mv[1]); err != nil {
			t.Fatal(err)
		}
	}
	third, err := strconv.ParseInt(names[2], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	inThird := func(keep func(i int) bool) int { // packet i was captured at damageBase + i s
		n := 0
		for i := range nFiles * perFile {
			if damageBase.Add(time.Duration(i)*time.Second).UnixMicro() >= third && keep(i) {
				n++
			}
		}
		return n
	}
	for _, q := range []string{"tcp", "port 80", "host 10.0.0.7"} {
		want := inThird(func(int) bool { return true })
		if q == "host 10.0.0.7" {
			want = inThird(func(i int) bool { return i%50 == 6 })
		}
		wantFailure(t, dir, q, want, a, b, filepath.Join(dir, "IDX0", names[0]), filepath.Join(dir, "IDX0", names[1]), "not a pair")
	}
}

// A FIFO with a pair's name does not hang the query: it is named, and the
// other files answer.
func TestFIFOInStore(t *testing.T) {
	dir, names := damageStore(t)
	name := strconv.FormatInt(time.Now().UnixMicro(), 10)
	fifo := filepath.Join(dir, "IDX0", name)
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, "PKT0", names[0]), filepath.Join(dir, "PKT0", name)); err != nil {
		t.Fatal(err)
	}
	wantFailure(t, dir, "tcp", nFiles*perFile, fifo, "not a regular file")
}

func writeAt(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}
