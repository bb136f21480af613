package blockfile

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stenographer-ng/stenographer/stenographer/internal/testdata"
)

func TestReferenceCapture(t *testing.T) {
	shared := testdata.Shared(t)
	f, err := Open(filepath.Join(shared, "upstream-testdata/capture/PKT0/1795335446956521"), DefaultBlockSize)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := f.Scan()
	n, tagged := 0, 0
	var first Packet
	for s.Next() {
		p := s.Packet()
		if n == 0 {
			first = p
		}
		if len(p.Data) >= 16 && binary.BigEndian.Uint16(p.Data[12:]) == 0x8100 && binary.BigEndian.Uint16(p.Data[14:])&0xfff == 118 {
			tagged++
		}
		// Random access must return the same packet.
		q, err := f.ReadPacket(p.Position, nil)
		if err != nil || string(q.Data) != string(p.Data) || q.WireLen != p.WireLen || !q.Timestamp.Equal(p.Timestamp) {
			t.Fatalf("ReadPacket(%d) = %v, %v; scan gave %v", p.Position, q, err, p)
		}
		n++
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if n != 11896 {
		t.Errorf("packets = %d, want 11896", n)
	}
	if first.Position != 48 || first.WireLen != 122 || len(first.Data) != 122 {
		t.Errorf("first packet = pos %d wire %d len %d, want 48/122/122 (tag restored)", first.Position, first.WireLen, len(first.Data))
	}
	if tagged == 0 {
		t.Errorf("no packet with restored VLAN 118")
	}
}

func TestEmptyFile(t *testing.T) {
	name := filepath.Join(t.TempDir(), "1")
	if err := os.WriteFile(name, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Open(name, DefaultBlockSize)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := f.Scan()
	if s.Next() || s.Err() != nil {
		t.Fatalf("empty file: Next/Err = true/%v", s.Err())
	}
}

// block builds one 4 KiB block holding frames laid out as the kernel does.
func block(frames ...[]byte) []byte {
	const size = 4096
	b := make([]byte, size)
	le := binary.LittleEndian
	le.PutUint32(b[0:], 2)
	le.PutUint32(b[4:], 48)
	le.PutUint32(b[8:], 1)
	le.PutUint32(b[12:], uint32(len(frames)))
	le.PutUint32(b[16:], 48)
	off := 48
	for i, fr := range frames {
		h := b[off:]
		le.PutUint32(h[4:], uint32(1700000000+i))
		le.PutUint32(h[12:], uint32(len(fr)))
		le.PutUint32(h[16:], uint32(len(fr)))
		le.PutUint32(h[20:], 1)
		le.PutUint16(h[24:], 82)
		copy(h[82:], fr)
		next := (82 + len(fr) + 15) &^ 15
		if i < len(frames)-1 {
			le.PutUint32(h[0:], uint32(next))
		}
		off += next
	}
	le.PutUint32(b[20:], uint32(off))
	return b
}

func TestCorruptFiles(t *testing.T) {
	frame := make([]byte, 60)
	good := block(frame, frame, frame)
	tests := []struct {
		name    string
		mutate  func(b []byte) []byte
		packets int
		wantErr bool
	}{
		{"good", func(b []byte) []byte { return b }, 3, false},
		{"two blocks", func(b []byte) []byte { return append(b, block(frame)...) }, 4, false},
		{"zero block ends data", func(b []byte) []byte { return append(b, make([]byte, 4096)...) }, 3, false},
		{"partial trailing block", func(b []byte) []byte { return append(b, make([]byte, 100)...) }, 3, true},
		{"truncated block", func(b []byte) []byte { return b[:2000] }, 3, true},
		{"truncated inside a packet", func(b []byte) []byte { return b[:48+144+100] }, 1, true},
		{"truncated inside the header", func(b []byte) []byte { return b[:40] }, 0, true},
		{"first offset past block", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[16:], 5000); return b }, 0, true},
		{"first offset in header", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[16:], 4); return b }, 0, true},
		{"snaplen past block", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[48+12:], 1<<31); return b }, 0, true},
		{"mac offset too small", func(b []byte) []byte { binary.LittleEndian.PutUint16(b[48+24:], 3); return b }, 0, true},
		{"next offset past block", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[48:], 9000); return b }, 1, true},
		{"next offset 0 before num_pkts", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[48:], 0); return b }, 1, true},
		{"num_pkts larger than chain", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[12:], 1000); return b }, 3, true},
		{"num_pkts smaller than chain", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[12:], 2); return b }, 2, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mutate(append([]byte(nil), good...))
			name := filepath.Join(t.TempDir(), "f")
			if err := os.WriteFile(name, b, 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := Open(name, 4096)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			s := f.Scan()
			n := 0
			for s.Next() {
				n++
			}
			if n != tc.packets {
				t.Errorf("packets = %d, want %d", n, tc.packets)
			}
			if gotErr := s.Err() != nil; gotErr != tc.wantErr {
				t.Errorf("err = %v, want error %v", s.Err(), tc.wantErr)
			}
			if s.Err() != nil && !errors.Is(s.Err(), ErrCorrupt) {
				t.Errorf("err %v does not wrap ErrCorrupt", s.Err())
			}
		})
	}
}

func TestReadPacketBounds(t *testing.T) {
	b := block(make([]byte, 60))
	name := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(name, b, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Open(name, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, pos := range []int64{-1, 0, 47, 4090, 4096, 1 << 40} {
		if _, err := f.ReadPacket(pos, nil); !errors.Is(err, ErrCorrupt) {
			t.Errorf("ReadPacket(%d) err = %v, want ErrCorrupt", pos, err)
		}
	}
	if p, err := f.ReadPacket(48, nil); err != nil || len(p.Data) != 60 {
		t.Errorf("ReadPacket(48) = %d bytes, %v", len(p.Data), err)
	}
}

func FuzzScan(f *testing.F) {
	f.Add(block(make([]byte, 60), make([]byte, 70)))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 3*4096 {
			b = b[:3*4096]
		}
		// Pad to whole 4 KiB blocks so the fuzzer explores headers, not sizes.
		b = append(b, make([]byte, (4096-len(b)%4096)%4096)...)
		fl, err := New(bytes.NewReader(b), int64(len(b)), "fuzz", 4096)
		if err != nil {
			t.Fatal(err)
		}
		defer fl.Close()
		s := fl.Scan()
		var pkts []Packet
		var positions []uint32
		for s.Next() {
			p := s.Packet()
			if _, err := fl.ReadPacket(p.Position, nil); err != nil {
				t.Fatalf("scan found packet at %d that ReadPacket rejects: %v", p.Position, err)
			}
			pkts = append(pkts, p)
			positions = append(positions, uint32(p.Position))
		}
		// The in-place readers agree with Scan on what it found.
		i := 0
		_, err = fl.ReadPositionsInto(context.Background(), positions, func(n int) []byte { return make([]byte, n) }, func(p *Packet) bool {
			if i >= len(pkts) || p.Position != pkts[i].Position || !bytes.Equal(p.Data, pkts[i].Data) || p.WireLen != pkts[i].WireLen {
				t.Fatalf("ReadPositionsInto packet %d differs from Scan's", i)
			}
			i++
			return true
		})
		if err != nil || i != len(pkts) {
			t.Fatalf("ReadPositionsInto: %d of %d packets, %v", i, len(pkts), err)
		}
		si := fl.ScanInPlace()
		for j := 0; si.Next(); j++ {
			if j >= len(pkts) || !bytes.Equal(si.Packet().Data, pkts[j].Data) {
				t.Fatalf("ScanInPlace packet %d differs from Scan's", j)
			}
		}
	})
}

func TestReadPositions(t *testing.T) {
	frames := [][]byte{make([]byte, 60), make([]byte, 61), make([]byte, 62)}
	b := append(block(frames...), block(frames...)...)
	f, err := New(bytes.NewReader(b), int64(len(b)), "mem", 4096)
	if err != nil {
		t.Fatal(err)
	}
	var all []uint32
	s := f.Scan()
	for s.Next() {
		all = append(all, uint32(s.Packet().Position))
	}
	for _, positions := range [][]uint32{all, {all[0]}, {all[1], all[4]}, {all[3], all[4], all[5]}} {
		var lens []int
		err := f.ReadPositions(context.Background(), positions, func(p Packet) bool {
			lens = append(lens, len(p.Data))
			return true
		})
		if err != nil || len(lens) != len(positions) {
			t.Errorf("ReadPositions(%v) = %v, %v", positions, lens, err)
		}
		for i, n := range lens {
			q, _ := f.ReadPacket(int64(positions[i]), nil)
			if n != len(q.Data) {
				t.Errorf("packet at %d has %d bytes, ReadPacket says %d", positions[i], n, len(q.Data))
			}
		}
	}
	if err := f.ReadPositions(context.Background(), []uint32{all[0], 50}, func(Packet) bool { return true }); !errors.Is(err, ErrCorrupt) {
		t.Errorf("bad position err = %v, want ErrCorrupt", err)
	}
}

// Damage in the middle of a file is reported with the file and the
// block's offset, and the scan goes on with the next block: every packet
// of the undamaged blocks is returned. Trailing empty blocks are
// preallocation, not damage.
func TestScanDamage(t *testing.T) {
	frame := func(i int) []byte { f := make([]byte, 60); f[0] = byte(i); return f }
	// Four blocks of three packets: packet 3b+i is frame i of block b.
	var good []byte
	for b := range 4 {
		good = append(good, block(frame(3*b), frame(3*b+1), frame(3*b+2))...)
	}
	le := binary.LittleEndian
	const blk = 4096
	second := func(off int) int { return blk + off } // an offset in block 1
	tests := []struct {
		name   string
		mutate func(b []byte) []byte
		want   []int // packets returned
		damage []int // offsets the error names; nil: no error
	}{
		{"intact", func(b []byte) []byte { return b }, seqInts(0, 12), nil},
		{"trailing empty blocks", func(b []byte) []byte { return append(b, make([]byte, 3*blk)...) }, seqInts(0, 12), nil},
		{"header zeroed", func(b []byte) []byte { clear(b[blk : blk+48]); return b }, skip(seqInts(0, 12), 3, 4, 5), []int{blk}},
		{"block zeroed", func(b []byte) []byte { clear(b[blk : 2*blk]); return b }, skip(seqInts(0, 12), 3, 4, 5), []int{blk}},
		{"two blocks zeroed", func(b []byte) []byte { clear(b[blk : 3*blk]); return b }, []int{0, 1, 2, 9, 10, 11}, []int{blk}},
		{"last blocks zeroed", func(b []byte) []byte { clear(b[2*blk:]); return b }, seqInts(0, 6), nil},
		{"count smaller than chain", func(b []byte) []byte { le.PutUint32(b[second(12):], 1); return b }, skip(seqInts(0, 12), 4, 5), []int{second(48)}},
		{"count larger than chain", func(b []byte) []byte { le.PutUint32(b[second(12):], 7); return b }, seqInts(0, 12), []int{second(48 + 2*144)}},
		{"next offset 0", func(b []byte) []byte { le.PutUint32(b[second(48):], 0); return b }, skip(seqInts(0, 12), 4, 5), []int{second(48)}},
		{"next offset out of bounds", func(b []byte) []byte { le.PutUint32(b[second(48):], 5000); return b }, skip(seqInts(0, 12), 4, 5), []int{second(48)}},
		{"first offset out of bounds", func(b []byte) []byte { le.PutUint32(b[second(16):], 4090); return b }, skip(seqInts(0, 12), 3, 4, 5), []int{blk}},
		{"snaplen past the block", func(b []byte) []byte { le.PutUint32(b[second(48+144+12):], 9000); return b }, skip(seqInts(0, 12), 4, 5), []int{second(48 + 144)}},
		{"damage in two blocks", func(b []byte) []byte { clear(b[blk : blk+48]); le.PutUint32(b[3*blk+48:], 0); return b }, []int{0, 1, 2, 6, 7, 8, 9}, []int{blk, 3*blk + 48}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mutate(slices.Clone(good))
			name := filepath.Join(t.TempDir(), "f")
			if err := os.WriteFile(name, b, 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := Open(name, blk)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for _, s := range []*Scanner{f.Scan(), f.ScanInPlace()} {
				var got []int
				for s.Next() {
					got = append(got, int(s.Packet().Data[0]))
				}
				if !slices.Equal(got, tc.want) {
					t.Errorf("packets %v, want %v", got, tc.want)
				}
				err := s.Err()
				if tc.damage == nil {
					if err != nil {
						t.Errorf("Err = %v, want none", err)
					}
					continue
				}
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), name) {
					t.Fatalf("Err = %v, want ErrCorrupt naming the file", err)
				}
				for _, off := range tc.damage {
					if !strings.Contains(err.Error(), fmt.Sprintf("at offset %d:", off)) {
						t.Errorf("Err = %v, want offset %d named", err, off)
					}
				}
			}
		})
	}
}

func seqInts(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

func skip(s []int, drop ...int) []int {
	return slices.DeleteFunc(s, func(x int) bool { return slices.Contains(drop, x) })
}
