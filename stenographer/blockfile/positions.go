package blockfile

import (
	"context"
	"fmt"
)

// ReadPositions calls fn for the packet at each position, in order.
// positions must be ascending. Where a block holds several of them the
// whole block is read once, so a broad result costs one read per block
// rather than two per packet. fn's Packet.Data is only valid during the
// call. Reading stops at the first error, at a cancelled ctx, or when fn
// returns false.
func (f *File) ReadPositions(ctx context.Context, positions []uint32, fn func(Packet) bool) error {
	var block []byte
	var one []byte
	for i := 0; i < len(positions); {
		if err := ctx.Err(); err != nil {
			return err
		}
		pos := int64(positions[i])
		start := pos - pos%f.blockSize
		j := i + 1
		for j < len(positions) && int64(positions[j]) < start+f.blockSize {
			j++
		}
		// A lone position, or a block cut short by truncation (whose intact
		// packets are still worth returning), is read packet by packet.
		if j-i == 1 || start+f.blockSize > f.size {
			for ; i < j; i++ {
				p, err := f.ReadPacket(int64(positions[i]), one)
				if err != nil {
					return err
				}
				one = p.Data[:0]
				if !fn(p) {
					return nil
				}
			}
			continue
		}
		if block == nil {
			block = make([]byte, f.blockSize)
		}
		// Read from the first wanted packet to the end of the block; the
		// bytes before it are left stale and never looked at.
		from := int64(positions[i]) - start
		if _, err := f.f.ReadAt(block[from:], start+from); err != nil {
			return fmt.Errorf("blockfile: read %s at %d: %w", f.name, start+from, err)
		}
		var buf []byte
		for ; i < j; i++ {
			p, err := f.packetInBlock(block, start, int64(positions[i]), buf)
			if err != nil {
				return err
			}
			buf = p.Data[:0]
			if !fn(p) {
				return nil
			}
		}
	}
	return nil
}

// packetInBlock decodes the packet at file position pos from block, the
// in-memory copy of the block starting at file offset start.
func (f *File) packetInBlock(block []byte, start, pos int64, buf []byte) (Packet, error) {
	off := pos - start
	if off < blockHeaderSize || off > int64(len(block))-packetHeaderSize {
		return Packet{}, f.corrupt(pos, "position inside a block header or past the block")
	}
	h := parseHeader(block[off:])
	dataStart, err := f.frameStart(h, off, pos, int64(len(block)))
	if err != nil {
		return Packet{}, err
	}
	buf, extra := h.frameBuffer(buf)
	copy(buf[extra:], block[dataStart:dataStart+int64(h.snaplen)])
	return h.packet(pos, buf, extra), nil
}
