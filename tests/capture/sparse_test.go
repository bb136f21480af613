package capture_test

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/tests/internal/pcapfile"
	"github.com/stenographer-ng/stenographer/tests/internal/steno"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// trickleFrames are n UDP frames of size bytes, each with its number in
// the payload so that a lost, repeated or reordered one shows.
func trickleFrames(n, size int) []pcapfile.Packet {
	base := time.Unix(1700000000, 0).UTC()
	out := make([]pcapfile.Packet, n)
	for i := range out {
		f := make([]byte, size)
		copy(f[0:], []byte{0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00})
		ip := f[14:]
		ip[0], ip[8], ip[9] = 0x45, 64, 17
		binary.BigEndian.PutUint16(ip[2:], uint16(size-14))
		copy(ip[12:], []byte{10, 9, 0, 1, 10, 9, 0, 2})
		udp := ip[20:]
		binary.BigEndian.PutUint16(udp[0:], 40000)
		binary.BigEndian.PutUint16(udp[2:], 9999)
		binary.BigEndian.PutUint16(udp[4:], uint16(size-34))
		binary.BigEndian.PutUint32(udp[8:], uint32(i))
		for j := 12; j < len(udp); j++ {
			udp[j] = byte(i + j)
		}
		out[i] = pcapfile.Packet{Time: base.Add(time.Duration(i) * time.Millisecond), WireLen: size, Data: f}
	}
	return out
}

// sparseFactor bounds the disk space of a trickle's packet files relative
// to the packet bytes. A block retired by --blockage_sec=1 at 5 packets/s
// of 1000-byte frames holds about 5 KB (frames and their 48-byte headers)
// and takes 8 KiB on disk; a block caught with one packet takes 4 KiB for
// 1 KB. Whole-block writes would take 1 MiB per block: a factor of ~200.
const sparseFactor = 4

// TestLiveSparse trickles 5 packets/s for 40 s past a real stenotype with
// --blockage_sec=1, so every block retires almost empty: the packet files
// must take about what their packets take on disk (allocated blocks, as
// du counts), keep a block-multiple length, and read back byte-exact
// through stenodump and through the tests' own block reader.
func TestLiveSparse(t *testing.T) {
	frames := trickleFrames(200, 1000)
	trickle := filepath.Join(t.TempDir(), "trickle.pcap")
	if err := pcapfile.Write(trickle, frames); err != nil {
		t.Fatal(err)
	}
	res := runLive(t, liveConfig{threads: 1, pcaps: []string{trickle}, pps: 5,
		flags: []string{"--fileage_sec=15"}, minFiles: 2})
	s := res.stored[0]
	checkSequence(t, "stored packets (stenodump)", res.expected, s.Packets)

	var length, allocated, packetBytes int64
	var independent []pcapfile.Packet
	for _, p := range s.Pairs {
		var st syscall.Stat_t
		if err := syscall.Stat(p.PKT, &st); err != nil {
			t.Fatal(err)
		}
		if st.Size%(blocksizeKB<<10) != 0 {
			t.Errorf("%s: length %d is not a multiple of the %d KiB block", p.PKT, st.Size, blocksizeKB)
		}
		length += st.Size
		allocated += st.Blocks * 512
		pkts, err := steno.ReadBlocks(p.PKT, blocksizeKB<<10)
		if err != nil {
			t.Errorf("independent block reader: %v", err)
			continue
		}
		for _, q := range pkts {
			packetBytes += int64(len(q.Data))
			independent = append(independent, pcapfile.Packet{Time: q.Time, WireLen: int(q.WireLen), Data: q.Data})
		}
	}
	checkSequence(t, "stored packets (independent block reader)", res.expected, independent)
	t.Logf("%d packets, %d packet bytes in %d files: %d bytes on disk (%.2fx), length %d bytes",
		len(independent), packetBytes, len(s.Pairs), allocated, float64(allocated)/float64(max(packetBytes, 1)), length)
	if packetBytes == 0 || allocated > sparseFactor*packetBytes {
		t.Errorf("packet files take %d bytes on disk for %d packet bytes; want at most %dx", allocated, packetBytes, sparseFactor)
	}
	if allocated >= length/8 {
		t.Errorf("packet files take %d of their %d bytes on disk: not sparse", allocated, length)
	}
	crashCut(t, s.Pairs[len(s.Pairs)-1].PKT, s.Positions[len(s.Positions)-1])
}

// seekHole is lseek's SEEK_HOLE on Linux: the next hole at or after an
// offset, here the end of the last block's written part.
const seekHole = 4

// crashCut copies pkt as a crash between a sparse block's short write and
// the file's cut to its block multiple would leave it (the length ending
// where the last block's data does) and requires stenodump to find the
// same packets there, and reindex to succeed.
func crashCut(t *testing.T, pkt string, want []steno.Position) {
	t.Helper()
	data, err := os.ReadFile(pkt)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(pkt)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	last := int64(len(data)) - blocksizeKB<<10
	end, err := f.Seek(last, seekHole)
	if err != nil {
		t.Fatal(err)
	}
	if end == int64(len(data)) {
		t.Fatalf("%s: the last block has no hole: it was written whole", pkt)
	}
	cut := filepath.Join(t.TempDir(), filepath.Base(pkt))
	if err := os.WriteFile(cut, data[:end], 0o600); err != nil {
		t.Fatal(err)
	}
	got := steno.Positions(t, cut, blocksizeKB)
	if len(got) != len(want) || len(got) > 0 && got[len(got)-1] != want[len(want)-1] {
		t.Errorf("file cut at %d of %d bytes: stenodump positions found %d packets, want %d", end, len(data), len(got), len(want))
	}
	testenv.MustRun(t, testenv.Deadline, testenv.Stenodump(t), "reindex",
		"--blocksize_kb="+strconv.Itoa(blocksizeKB), cut, cut+".idx")
}
