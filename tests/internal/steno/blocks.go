package steno

import (
	"encoding/binary"
	"fmt"
	"os"
	"time"
)

// BlockPacket is one packet as ReadBlocks found it in a packet file.
type BlockPacket struct {
	Position int64 // of its tpacket3_hdr from the start of the file
	Time     time.Time
	WireLen  uint32
	Data     []byte // tp_snaplen bytes from tp_mac (a stripped VLAN tag stays stripped)
}

// ReadBlocks reads every packet of a packet file straight from its bytes,
// following SPEC §3 alone (not the project's readers), so the tests have
// a second opinion on what stenotype wrote: fixed-size blocks, each a
// tpacket_block_desc whose num_pkts packets chain from
// offset_to_first_pkt by tp_next_offset; a block with num_pkts 0 ends the
// data. Any offset or length outside its block is an error naming the
// file and the block.
func ReadBlocks(path string, blockSize int) ([]BlockPacket, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(data)%blockSize != 0 {
		return nil, fmt.Errorf("%s: length %d is not a multiple of the block size %d", path, len(data), blockSize)
	}
	le := binary.LittleEndian
	var out []BlockPacket
	for start := 0; start < len(data); start += blockSize {
		b := data[start : start+blockSize]
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%s: block at %d: %s", path, start, fmt.Sprintf(format, args...))
		}
		if v := le.Uint32(b[0:]); v != 2 {
			if le.Uint32(b[12:]) == 0 {
				break // never used (zeros)
			}
			return nil, bad("version %d, want 2 (TPACKET_V3)", v)
		}
		n := le.Uint32(b[12:])
		if n == 0 {
			break
		}
		off := int(le.Uint32(b[16:]))
		for i := uint32(0); i < n; i++ {
			if off < 48 || off+48 > blockSize {
				return nil, bad("packet %d header at %d out of bounds", i, off)
			}
			h := b[off:]
			snap, mac := int(le.Uint32(h[12:])), int(le.Uint16(h[24:]))
			if mac < 48 || off+mac+snap > blockSize {
				return nil, bad("packet %d data (tp_mac %d, tp_snaplen %d) out of bounds", i, mac, snap)
			}
			out = append(out, BlockPacket{
				Position: int64(start + off),
				Time:     time.Unix(int64(le.Uint32(h[4:])), int64(le.Uint32(h[8:]))).UTC(),
				WireLen:  le.Uint32(h[16:]),
				Data:     append([]byte(nil), h[mac:mac+snap]...),
			})
			next := int(le.Uint32(h[0:]))
			if (next == 0) != (i == n-1) {
				return nil, bad("packet %d of %d has tp_next_offset %d", i, n, next)
			}
			off += next
		}
	}
	return out, nil
}
