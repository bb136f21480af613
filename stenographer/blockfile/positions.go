package blockfile

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"
)

const (
	// runGap is the largest gap between two wanted packets of one block
	// that is read through rather than skipped with a second read.
	runGap = 16 << 10
	// frameGuess is how much is read past the last wanted packet's header
	// of a run, for its frame (re-read when the frame is longer).
	frameGuess = 2048
)

// ReadPositions calls fn for the packet at each position, in order.
// positions should be ascending; a repeated position is read once. fn's
// Packet.Data is only valid during the call. Reading stops at the first
// error, at a cancelled ctx, or when fn returns false.
func (f *File) ReadPositions(ctx context.Context, positions []uint32, fn func(Packet) bool) error {
	var scratch []byte
	_, err := f.ReadPositionsInto(ctx, positions, func(n int) []byte {
		if cap(scratch) < n {
			scratch = make([]byte, n)
		}
		return scratch[:n]
	}, func(p *Packet) bool { return fn(*p) })
	return err
}

// ReadPositionsInto is ReadPositions reading into memory that alloc
// returns (n bytes, contents irrelevant): each Packet.Data aliases it, so
// packets stay valid as long as the caller keeps that memory, without a
// copy. Packets close together in a block are read with one read (a run),
// from the first one's header to the last one's frame. alloc may return
// nil to end the read before the next run. It returns how many positions
// were consumed: all of them, or fewer when alloc returned nil or fn
// returned false (the positions up to and including that packet's).
// fn's Packet is reused for the next one: a broad result has millions, and
// passing each by value was a fifth of the query's CPU.
//
// Frames are decoded in place: a VLAN tag the kernel stripped is put back
// by moving the MAC addresses into the 4 bytes before the frame, which
// belong to the packet's own header.
func (f *File) ReadPositionsInto(ctx context.Context, positions []uint32, alloc func(n int) []byte, fn func(*Packet) bool) (int, error) {
	pkt := new(Packet)
	var minTo int64 // when > 0: the next read must reach this far (a long frame)
	var ch *chain
	if f.checkChains {
		ch = f.newChain()
		defer f.chainBufs.Put(ch.buf)
	}
	for i := 0; i < len(positions); {
		if err := ctx.Err(); err != nil {
			return i, err
		}
		pos := int64(positions[i])
		start := pos - pos%f.blockSize
		blockEnd := min(start+f.blockSize, f.size)
		if pos < start+blockHeaderSize || pos+packetHeaderSize > blockEnd {
			return i, f.corrupt(pos, "position inside a block header or past the block")
		}
		// The run: the following positions in the same block, each within
		// runGap of the one before.
		j := i + 1
		for j < len(positions) && int64(positions[j]) < start+f.blockSize && positions[j]-positions[j-1] <= runGap {
			j++
		}
		to := min(blockEnd, max(int64(positions[j-1])+packetHeaderSize+frameGuess, minTo))
		minTo = 0
		buf := alloc(int(to - pos))
		if buf == nil {
			return i, nil
		}
		if _, err := f.f.ReadAt(buf, pos); err != nil {
			return i, fmt.Errorf("blockfile: read %s at %d: %w", f.name, pos, err)
		}
		k := i
		for ; k < j; k++ {
			p := int64(positions[k])
			if k > i && p == int64(positions[k-1]) {
				continue
			}
			if p+packetHeaderSize > blockEnd {
				return k, f.corrupt(p, "position inside a block header or past the block")
			}
			if ch != nil {
				if err := f.onChain(ch, p); err != nil {
					return k, err
				}
			}
			off := p - pos
			h := parseHeader(buf[off:])
			if _, err := f.frameStart(&h, p, p, blockEnd); err != nil {
				return k, err
			}
			if end := p + int64(h.mac) + int64(h.snaplen); end > to {
				minTo = end // read again from this packet, far enough
				break
			}
			h.packetInPlace(pkt, p, buf, off)
			if !fn(pkt) {
				k++
				for k < len(positions) && positions[k] == positions[k-1] {
					k++
				}
				return k, nil
			}
		}
		i = k
	}
	return len(positions), nil
}

// packetInPlace builds the Packet whose header is at buf[off:] (file
// position pos) from buf itself into pkt; the frame was checked to lie
// within buf.
func (h *header) packetInPlace(pkt *Packet, pos int64, buf []byte, off int64) {
	fs := off + int64(h.mac)
	n := int64(h.snaplen)
	data := buf[fs : fs+n : fs+n]
	wire := int(h.wireLen)
	if h.vlanStripped() && n >= 12 {
		// fs-4 >= off+44: the header's own trailing padding, already parsed.
		data = buf[fs-4 : fs+n : fs+n]
		copy(data, buf[fs:fs+12])
		tpid := uint16(0x8100)
		if h.status&statusVlanTPIDValid != 0 && h.vlanTPID != 0 {
			tpid = h.vlanTPID
		}
		binary.BigEndian.PutUint16(data[12:], tpid)
		binary.BigEndian.PutUint16(data[14:], h.vlanTCI)
		wire += 4
	}
	*pkt = Packet{Position: pos, Timestamp: time.Unix(int64(h.sec), int64(h.nsec)), WireLen: wire, Data: data}
}

// packetInBlock decodes the packet at file position pos from block, the
// in-memory copy of the block starting at file offset start.
func (f *File) packetInBlock(block []byte, start, pos int64, buf []byte) (Packet, error) {
	off := pos - start
	if off < blockHeaderSize || off > int64(len(block))-packetHeaderSize {
		return Packet{}, f.corrupt(pos, "position inside a block header or past the block")
	}
	h := parseHeader(block[off:])
	dataStart, err := f.frameStart(&h, off, pos, int64(len(block)))
	if err != nil {
		return Packet{}, err
	}
	buf, extra := h.frameBuffer(buf)
	copy(buf[extra:], block[dataStart:dataStart+int64(h.snaplen)])
	return h.packet(pos, buf, extra), nil
}

// packetInBlockInPlace is packetInBlock decoding in place (packetInPlace):
// the Packet aliases block.
func (f *File) packetInBlockInPlace(block []byte, start, pos int64) (Packet, error) {
	off := pos - start
	if off < blockHeaderSize || off > int64(len(block))-packetHeaderSize {
		return Packet{}, f.corrupt(pos, "position inside a block header or past the block")
	}
	h := parseHeader(block[off:])
	if _, err := f.frameStart(&h, off, pos, int64(len(block))); err != nil {
		return Packet{}, err
	}
	var pkt Packet
	h.packetInPlace(&pkt, pos, block, off)
	return pkt, nil
}

// ErrNotAPacket is wrapped when a position given to a CheckChains file is
// not on its block's chain: the index belongs to another packet file, or
// one of the two is damaged.
var ErrNotAPacket = errors.New("blockfile: position is not a packet")

// chain holds the packet offsets of one block, for CheckChains.
type chain struct {
	block int64    // file offset of the block whose offsets are known, -1: none
	offs  []uint32 // ascending offsets within the block
	buf   *[]byte
}

func (f *File) newChain() *chain {
	buf, _ := f.chainBufs.Get().(*[]byte)
	if buf == nil {
		b := make([]byte, f.blockSize)
		buf = &b
	}
	return &chain{block: -1, buf: buf}
}

// onChain checks that a packet starts at file position pos: that pos is on
// the chain of packets of its block, walked from offset_to_first_pkt.
func (f *File) onChain(c *chain, pos int64) error {
	start := pos - pos%f.blockSize
	if c.block != start {
		b := (*c.buf)[:min(f.blockSize, f.size-start)]
		if _, err := f.f.ReadAt(b, start); err != nil {
			return fmt.Errorf("blockfile: read %s at %d: %w", f.name, start, err)
		}
		c.block, c.offs = start, chainOffsets(b, c.offs[:0])
	}
	if _, found := slices.BinarySearch(c.offs, uint32(pos-start)); !found {
		return fmt.Errorf("%w: %w", ErrNotAPacket, f.corrupt(pos, "not the start of a packet of its block"))
	}
	return nil
}

// chainOffsets appends the offsets of the packets of block b, following
// tp_next_offset from offset_to_first_pkt for at most num_pkts packets
// while every header lies within the block.
func chainOffsets(b []byte, out []uint32) []uint32 {
	if len(b) < blockHeaderSize {
		return out
	}
	le := binary.LittleEndian
	n := le.Uint32(b[offNumPkts:])
	off := int64(le.Uint32(b[offFirstPkt:]))
	for ; n > 0 && off >= blockHeaderSize && off <= int64(len(b))-packetHeaderSize; n-- {
		out = append(out, uint32(off))
		next := int64(le.Uint32(b[off+offNextOffset:]))
		if next < packetHeaderSize {
			break
		}
		off += next
	}
	return out
}
