package blockfile

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stenographer-ng/stenographer/stenographer/internal/testdata"
)

// fresh is an allocator handing out new memory each time, so that every
// packet a test keeps must stay intact until the end.
func fresh(n int) []byte { return make([]byte, n) }

// scanAll returns every packet of f by Scan (each with its own memory).
func scanAll(t *testing.T, f *File) []Packet {
	t.Helper()
	var out []Packet
	s := f.Scan()
	for s.Next() {
		out = append(out, s.Packet())
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func samePacket(a, b Packet) bool {
	return a.Position == b.Position && a.WireLen == b.WireLen && a.Timestamp.Equal(b.Timestamp) && bytes.Equal(a.Data, b.Data)
}

// ReadPositionsInto and ScanInPlace return exactly what Scan returns on
// the reference capture (whose stripped VLAN tags are restored in place),
// for dense, sparse, repeated and single positions; packets kept from
// earlier reads are not disturbed by later ones.
func TestInPlaceReadsMatchScan(t *testing.T) {
	f, err := Open(filepath.Join(testdata.Shared(t), "upstream-testdata/capture/PKT0/1795335446956521"), DefaultBlockSize)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := scanAll(t, f)
	byPos := map[int64]Packet{}
	var all []uint32
	for _, p := range want {
		byPos[p.Position] = p
		all = append(all, uint32(p.Position))
	}
	every := func(k int) []uint32 {
		var out []uint32
		for i := 0; i < len(all); i += k {
			out = append(out, all[i])
		}
		return out
	}
	repeated := []uint32{all[0], all[0], all[1], all[5], all[5], all[5], all[len(all)-1], all[len(all)-1]}
	for _, tc := range []struct {
		name      string
		positions []uint32
		unique    int
	}{
		{"all", all, len(all)},
		{"every-3rd", every(3), len(every(3))},
		{"every-200th", every(200), len(every(200))},
		{"one", all[7:8], 1},
		{"last", all[len(all)-1:], 1},
		{"repeated", repeated, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []Packet
			n, err := f.ReadPositionsInto(context.Background(), tc.positions, fresh, func(p *Packet) bool {
				got = append(got, *p)
				return true
			})
			if err != nil || n != len(tc.positions) || len(got) != tc.unique {
				t.Fatalf("ReadPositionsInto = %d packets, %d consumed, %v; want %d, %d", len(got), n, err, tc.unique, len(tc.positions))
			}
			for _, p := range got {
				if !samePacket(p, byPos[p.Position]) {
					t.Fatalf("packet at %d differs from Scan's", p.Position)
				}
			}
		})
	}
	s := f.ScanInPlace()
	i := 0
	for ; s.Next(); i++ {
		if i >= len(want) || !samePacket(s.Packet(), want[i]) {
			t.Fatalf("ScanInPlace packet %d differs from Scan's", i)
		}
	}
	if s.Err() != nil || i != len(want) {
		t.Fatalf("ScanInPlace: %d packets, %v", i, s.Err())
	}
}

// A frame longer than the read-ahead past a run's last header is read
// again in full; packets of a truncated block are returned up to the cut;
// a stop by fn reports the positions consumed.
func TestReadPositionsIntoEdges(t *testing.T) {
	long := bytes.Repeat([]byte{0xab}, 3000)
	b := append(block(make([]byte, 60), long, make([]byte, 70)), block(long)...)
	f, err := New(bytes.NewReader(b), int64(len(b)), "mem", 4096)
	if err != nil {
		t.Fatal(err)
	}
	want := scanAll(t, f)
	var all []uint32
	for _, p := range want {
		all = append(all, uint32(p.Position))
	}
	var got []Packet
	if n, err := f.ReadPositionsInto(context.Background(), all, fresh, func(p *Packet) bool { got = append(got, *p); return true }); err != nil || n != len(all) {
		t.Fatalf("ReadPositionsInto = %d, %v", n, err)
	}
	for i := range want {
		if i >= len(got) || !samePacket(got[i], want[i]) {
			t.Fatalf("packet %d differs from Scan's", i)
		}
	}
	// Stop after the second packet: two positions consumed (a repeat of
	// the second counts as consumed too).
	stopAt := []uint32{all[0], all[1], all[1], all[2]}
	calls := 0
	n, err := f.ReadPositionsInto(context.Background(), stopAt, fresh, func(*Packet) bool { calls++; return calls < 2 })
	if err != nil || n != 3 || calls != 2 {
		t.Errorf("stopped read: consumed %d, %d calls, %v; want 3, 2", n, calls, err)
	}
	// The file cut inside the second packet's frame: the first is returned,
	// then an error naming the position.
	cut := b[:int(all[1])+82+1000]
	g, _ := New(bytes.NewReader(cut), int64(len(cut)), "cut", 4096)
	got = got[:0]
	_, err = g.ReadPositionsInto(context.Background(), all, fresh, func(p *Packet) bool { got = append(got, *p); return true })
	if !errors.Is(err, ErrCorrupt) || len(got) != 1 || !samePacket(got[0], want[0]) {
		t.Errorf("truncated: %d packets, err %v; want 1 and ErrCorrupt", len(got), err)
	}
	// Positions in a block header or past the file are errors, not panics.
	for _, bad := range [][]uint32{{4}, {4096 + 8}, {uint32(len(b)) + 48}, {all[0], 4090}} {
		if _, err := f.ReadPositionsInto(context.Background(), bad, fresh, func(*Packet) bool { return true }); !errors.Is(err, ErrCorrupt) {
			t.Errorf("ReadPositionsInto(%v) err = %v, want ErrCorrupt", bad, err)
		}
	}
}

// A VLAN tag in the header is restored in place, with its TPID.
func TestInPlaceVLANRestore(t *testing.T) {
	frame := make([]byte, 60)
	for i := range frame {
		frame[i] = byte(i)
	}
	b := block(frame, frame)
	le := binary.LittleEndian
	h := b[48:]
	le.PutUint32(h[20:], 1|statusVlanValid|statusVlanTPIDValid)
	le.PutUint32(h[32:], 0x0123)
	le.PutUint16(h[36:], 0x88a8)
	f, _ := New(bytes.NewReader(b), int64(len(b)), "mem", 4096)
	var got []Packet
	if _, err := f.ReadPositionsInto(context.Background(), []uint32{48, 48 + 144}, fresh, func(p *Packet) bool { got = append(got, *p); return true }); err != nil || len(got) != 2 {
		t.Fatalf("ReadPositionsInto = %d, %v", len(got), err)
	}
	want := append(append(append([]byte(nil), frame[:12]...), 0x88, 0xa8, 0x01, 0x23), frame[12:]...)
	if !bytes.Equal(got[0].Data, want) || got[0].WireLen != 64 {
		t.Errorf("tagged packet = % x (wire %d), want % x (64)", got[0].Data, got[0].WireLen, want)
	}
	if !bytes.Equal(got[1].Data, frame) || got[1].WireLen != 60 {
		t.Errorf("untagged neighbour changed: % x", got[1].Data)
	}
}

// An allocator that refuses (nil) ends the read before the next run, with
// the positions consumed so far reported, and the read resumes from there.
func TestReadPositionsIntoAllocStop(t *testing.T) {
	frames := [][]byte{make([]byte, 60), make([]byte, 61)}
	b := append(block(frames...), block(frames...)...)
	f, _ := New(bytes.NewReader(b), int64(len(b)), "mem", 4096)
	want := scanAll(t, f)
	var all []uint32
	for _, p := range want {
		all = append(all, uint32(p.Position))
	}
	var got []Packet
	for start := 0; start < len(all); {
		runs := 0
		n, err := f.ReadPositionsInto(context.Background(), all[start:], func(n int) []byte {
			if runs++; runs > 1 {
				return nil
			}
			return make([]byte, n)
		}, func(p *Packet) bool { got = append(got, *p); return true })
		if err != nil || n == 0 {
			t.Fatalf("ReadPositionsInto from %d = %d, %v", start, n, err)
		}
		start += n
	}
	if len(got) != len(want) {
		t.Fatalf("%d packets, want %d", len(got), len(want))
	}
	for i := range want {
		if !samePacket(got[i], want[i]) {
			t.Fatalf("packet %d differs", i)
		}
	}
}

// With CheckChains a position must be on its block's chain of packets: a
// position inside a frame that holds a plausible packet header is refused
// (ErrNotAPacket), where without it the fake packet is served.
func TestCheckChains(t *testing.T) {
	frame := make([]byte, 300)
	// A fake header 16-byte aligned inside the frame of the first packet
	// (at 48): the frame starts at 48+82, so frame[18:] is at offset 148.
	fake := frame[18:]
	binary.LittleEndian.PutUint16(fake[24:], 48)
	binary.LittleEndian.PutUint32(fake[12:], 16)
	b := append(block(frame, frame, frame), block(frame)...)
	name := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(name, b, 0o644); err != nil {
		t.Fatal(err)
	}
	real := []uint32{48, 48 + 384, 48 + 768, 4096 + 48}
	for _, check := range []bool{false, true} {
		f, err := Open(name, 4096)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if check {
			f.CheckChains()
		}
		n := 0
		if err := f.ReadPositions(context.Background(), real, func(Packet) bool { n++; return true }); err != nil || n != 4 {
			t.Errorf("check=%v: real positions: %d packets, %v", check, n, err)
		}
		n = 0
		err = f.ReadPositions(context.Background(), []uint32{48, 148}, func(Packet) bool { n++; return true })
		switch {
		case check && (!errors.Is(err, ErrNotAPacket) || !strings.Contains(err.Error(), name) || n != 1):
			t.Errorf("fake position with CheckChains: %d packets, %v; want 1 and ErrNotAPacket naming the file", n, err)
		case !check && (err != nil || n != 2):
			t.Errorf("fake position without CheckChains: %d packets, %v; want it served (the check is what refuses it)", n, err)
		}
	}
}
