package steno

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// craftBlock lays out frames as SPEC §3 says, in a block of size bytes.
func craftBlock(size int, frames ...[]byte) []byte {
	le := binary.LittleEndian
	b := make([]byte, size)
	le.PutUint32(b[0:], 2)
	le.PutUint32(b[12:], uint32(len(frames)))
	le.PutUint32(b[16:], 48)
	off := 48
	for i, f := range frames {
		h := b[off:]
		le.PutUint32(h[4:], uint32(1700000000+i))
		le.PutUint32(h[12:], uint32(len(f)))
		le.PutUint32(h[16:], uint32(len(f)+4))
		le.PutUint16(h[24:], 80)
		copy(h[80:], f)
		next := (80 + len(f) + 15) &^ 15
		if i < len(frames)-1 {
			le.PutUint32(h[0:], uint32(next))
		}
		off += next
	}
	return b
}

func TestReadBlocks(t *testing.T) {
	a, b, c := bytes.Repeat([]byte{1}, 60), bytes.Repeat([]byte{2}, 61), bytes.Repeat([]byte{3}, 62)
	good := append(append(craftBlock(4096, a, b), craftBlock(4096, c)...), make([]byte, 4096)...)
	for _, tc := range []struct {
		name    string
		file    []byte
		want    [][]byte
		wantErr string
	}{
		{"two blocks and a zero block", good, [][]byte{a, b, c}, ""},
		{"partial block", good[:5000], nil, "not a multiple"},
		{"snaplen past the block", func() []byte {
			f := bytes.Clone(good)
			binary.LittleEndian.PutUint32(f[48+12:], 5000)
			return f
		}(), nil, "out of bounds"},
		{"chain shorter than num_pkts", func() []byte {
			f := bytes.Clone(good)
			binary.LittleEndian.PutUint32(f[12:], 3)
			return f
		}(), nil, "tp_next_offset"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "f")
			if err := os.WriteFile(p, tc.file, 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := ReadBlocks(p, 4096)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d packets, want %d", len(got), len(tc.want))
			}
			for i, w := range tc.want {
				if !bytes.Equal(got[i].Data, w) || got[i].WireLen != uint32(len(w)+4) {
					t.Errorf("packet %d: %d bytes (wire %d), want %d", i, len(got[i].Data), got[i].WireLen, len(w))
				}
			}
			if got[2].Position != 4096+48 {
				t.Errorf("third packet at %d, want %d", got[2].Position, 4096+48)
			}
		})
	}
}
