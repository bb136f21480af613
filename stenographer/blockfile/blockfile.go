// Package blockfile reads stenotype packet files: sequences of fixed-size
// TPACKET_V3 ring blocks exactly as the kernel filled them (SPEC §3).
//
// Stage: disk → packets. Input: a packet file and its block size. Output:
// packets at given positions, or all packets in file order, with any VLAN
// tag the kernel stripped put back into the frame.
//
// Nothing read from the file is trusted: every offset and length is checked
// against the block and the file, and a bad one is an error naming the file
// and offset, never a panic.
package blockfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/stenographer-ng/stenographer/stenographer/internal/datafile"
)

// Layout of a block header (struct tpacket_block_desc) and a packet header
// (struct tpacket3_hdr), little-endian as written on x86.
const (
	blockHeaderSize  = 48
	packetHeaderSize = 48

	offNumPkts    = 12
	offFirstPkt   = 16
	offNextOffset = 0
	offSec        = 4
	offNsec       = 8
	offSnaplen    = 12
	offLen        = 16
	offStatus     = 20
	offMac        = 24
	offVlanTCI    = 32
	offVlanTPID   = 36

	statusVlanValid     = 0x10
	statusVlanTPIDValid = 0x40

	// DefaultBlockSize is stenotype's default --blocksize_kb (1024 KiB).
	DefaultBlockSize = 1 << 20
	// maxSnaplen bounds a single frame; a block can never hold more.
	maxSnaplen = 1 << 28
)

// ErrCorrupt is wrapped by every error about inconsistent file contents.
var ErrCorrupt = errors.New("blockfile: corrupt packet file")

// Packet is one captured frame.
type Packet struct {
	Position  int64     // offset of its tpacket3_hdr in the file
	Timestamp time.Time // capture time (nanosecond precision)
	WireLen   int       // length on the wire, including a restored VLAN tag
	Data      []byte    // captured bytes, VLAN tag restored
}

// File is an open packet file. Methods are safe for concurrent use: reads
// go through ReadAt only.
type File struct {
	name      string
	f         io.ReaderAt
	closer    io.Closer
	size      int64
	blockSize int64
	// checkChains makes ReadPositions accept only positions on their
	// block's chain of packets (CheckChains).
	checkChains bool
	chainBufs   sync.Pool // of *[]byte, one block each
}

// Open opens the packet file at name whose blocks are blockSize bytes.
func Open(name string, blockSize int) (*File, error) {
	if err := checkBlockSize(blockSize); err != nil {
		return nil, fmt.Errorf("blockfile: open %s: %w", name, err)
	}
	f, size, err := datafile.Open(name)
	if err != nil {
		return nil, fmt.Errorf("blockfile: %w", err)
	}
	return &File{name: name, f: f, closer: f, size: size, blockSize: int64(blockSize)}, nil
}

// New reads a packet file of size bytes from r; name is used in errors.
// Close does nothing for such a File.
func New(r io.ReaderAt, size int64, name string, blockSize int) (*File, error) {
	if err := checkBlockSize(blockSize); err != nil {
		return nil, fmt.Errorf("blockfile: %s: %w", name, err)
	}
	return &File{name: name, f: r, size: size, blockSize: int64(blockSize)}, nil
}

func checkBlockSize(n int) error {
	if n < 4096 || n%4096 != 0 {
		return fmt.Errorf("invalid block size %d (a multiple of 4096 is required)", n)
	}
	return nil
}

// Name returns the file's path.
func (f *File) Name() string { return f.name }

// FirstBlockHeader returns the header of the file's first block, which
// identifies the file (stenotype records it in the index as the pair's
// identity).
func (f *File) FirstBlockHeader() ([]byte, error) {
	h := make([]byte, blockHeaderSize)
	if _, err := f.f.ReadAt(h, 0); err != nil {
		return nil, fmt.Errorf("blockfile: read %s at 0: %w", f.name, err)
	}
	return h, nil
}

// CheckChains makes ReadPositions and ReadPositionsInto serve a position
// only if it is a packet of its block's chain, for positions from an index
// that may not belong to this file (one without a pair-identity record):
// a position inside another packet's bytes can pass every header check.
// It costs a read of each block the positions touch. Call it before the
// file is used.
func (f *File) CheckChains() { f.checkChains = true }

// Limit makes the file end at size bytes: the part of a file still being
// written that its live index covers. Blocks after it may be half written.
// Bytes before size but past the end on disk read as zeros: stenotype
// writes a nearly empty block only up to its used part and extends the
// file to the whole block when it finishes it, so until then the last
// block is short on disk: only that block is padded. Call it before any
// read.
func (f *File) Limit(size int64) {
	size = max(0, min(size, (f.size+f.blockSize-1)/f.blockSize*f.blockSize))
	if size > f.size {
		f.f = zeroTail{r: f.f, end: f.size}
	}
	f.size = size
}

// zeroTail reads r, and zeros from end on.
type zeroTail struct {
	r   io.ReaderAt
	end int64
}

func (z zeroTail) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	if off < z.end {
		var err error
		n, err = z.r.ReadAt(p[:min(int64(len(p)), z.end-off)], off)
		if err != nil && err != io.EOF {
			return n, err
		}
	}
	clear(p[n:])
	return len(p), nil
}

// Size returns the file's size in bytes when it was opened (or its Limit).
func (f *File) Size() int64 { return f.size }

// Close closes the file.
func (f *File) Close() error {
	if f.closer == nil {
		return nil
	}
	return f.closer.Close()
}

func (f *File) corrupt(pos int64, format string, args ...any) error {
	return fmt.Errorf("%w %s at offset %d: %s", ErrCorrupt, f.name, pos, fmt.Sprintf(format, args...))
}

// ReadPacket reads the packet whose header is at pos. buf is reused for the
// frame when large enough; the returned Packet's Data may alias it.
func (f *File) ReadPacket(pos int64, buf []byte) (Packet, error) {
	if pos < 0 || pos >= f.size {
		return Packet{}, f.corrupt(pos, "position outside file of %d bytes", f.size)
	}
	blockStart := pos - pos%f.blockSize
	blockEnd := min(blockStart+f.blockSize, f.size)
	if pos-blockStart < blockHeaderSize || blockEnd-pos < packetHeaderSize {
		return Packet{}, f.corrupt(pos, "position inside a block header or past the block")
	}
	var hdr [packetHeaderSize]byte
	if _, err := f.f.ReadAt(hdr[:], pos); err != nil {
		return Packet{}, fmt.Errorf("blockfile: read %s at %d: %w", f.name, pos, err)
	}
	h := parseHeader(hdr[:])
	dataStart, err := f.frameStart(&h, pos, pos, blockEnd)
	if err != nil {
		return Packet{}, err
	}
	buf, extra := h.frameBuffer(buf)
	if _, err := f.f.ReadAt(buf[extra:], dataStart); err != nil {
		return Packet{}, fmt.Errorf("blockfile: read %s at %d: %w", f.name, dataStart, err)
	}
	return h.packet(pos, buf, extra), nil
}

type header struct {
	next, sec, nsec, snaplen, wireLen, status uint32
	mac                                       uint16
	vlanTCI                                   uint16
	vlanTPID                                  uint16
}

func parseHeader(b []byte) header {
	le := binary.LittleEndian
	return header{
		next:     le.Uint32(b[offNextOffset:]),
		sec:      le.Uint32(b[offSec:]),
		nsec:     le.Uint32(b[offNsec:]),
		snaplen:  le.Uint32(b[offSnaplen:]),
		wireLen:  le.Uint32(b[offLen:]),
		status:   le.Uint32(b[offStatus:]),
		mac:      le.Uint16(b[offMac:]),
		vlanTCI:  uint16(le.Uint32(b[offVlanTCI:])),
		vlanTPID: le.Uint16(b[offVlanTPID:]),
	}
}

func (h header) vlanStripped() bool { return h.status&statusVlanValid != 0 }

// frameStart checks that the frame of the packet whose header h sits at
// offset off (file position pos) ends by limit, and returns where it starts.
func (f *File) frameStart(h *header, off, pos, limit int64) (int64, error) {
	start := off + int64(h.mac)
	if h.mac < packetHeaderSize || h.snaplen > maxSnaplen || start+int64(h.snaplen) > limit {
		return 0, f.corrupt(pos, "frame (mac offset %d, snaplen %d) outside its block", h.mac, h.snaplen)
	}
	return start, nil
}

// frameBuffer sizes buf for the frame plus room for a VLAN tag to restore;
// the frame goes at buf[extra:].
func (h header) frameBuffer(buf []byte) (_ []byte, extra int) {
	if h.vlanStripped() {
		extra = 4
	}
	need := int(h.snaplen) + extra
	if cap(buf) < need {
		buf = make([]byte, need)
	}
	return buf[:need], extra
}

// packet builds the Packet from a header and a buffer whose first extra
// bytes are free and whose remainder holds the captured frame. When the
// kernel stripped a VLAN tag (extra == 4) the tag is put back after the two
// MAC addresses, as libpcap does.
func (h header) packet(pos int64, buf []byte, extra int) Packet {
	wire := int(h.wireLen)
	if extra > 0 {
		if len(buf) >= 12+extra {
			copy(buf, buf[extra:extra+12]) // move the MAC addresses forward
			tpid := uint16(0x8100)
			if h.status&statusVlanTPIDValid != 0 && h.vlanTPID != 0 {
				tpid = h.vlanTPID
			}
			binary.BigEndian.PutUint16(buf[12:], tpid)
			binary.BigEndian.PutUint16(buf[14:], h.vlanTCI)
			wire += extra
		} else {
			buf = buf[extra:] // too short to hold MAC addresses: leave as captured
		}
	}
	return Packet{
		Position:  pos,
		Timestamp: time.Unix(int64(h.sec), int64(h.nsec)),
		WireLen:   wire,
		Data:      buf,
	}
}

// Scanner iterates over every packet of a file in order, one block in
// memory at a time.
//
//	s := f.Scan()
//	for s.Next() { use(s.Packet()) }
//	if err := s.Err(); err != nil { ... }
//
// A damaged block does not end the scan: blocks sit at fixed offsets, so
// the scan reports the block (Err, once the scan is over) and goes on with
// the next one. Damage is anything that would hide packets without a word:
// a block without packets followed by blocks with packets (only trailing
// empty blocks are preallocation), a chain of packets shorter or longer
// than the block's packet count, a header or frame out of bounds, a partial
// block at the end (read as far as it goes). Only a read error stops it.
type Scanner struct {
	f        *File
	block    []byte
	blockPos int64 // file offset of the block in s.block
	blockLen int64 // bytes of it in the file: blockSize but for a partial last block
	off      int64 // offset of the next packet within the block, 0 = load next block
	count    uint32
	left     uint32
	pkt      Packet
	last     int64    // position of the last packet returned, -1 before
	err      error    // what stopped the scan
	damage   []string // the first maxDamage damaged blocks passed over
	damaged  int      // how many
	done     bool
	inPlace  bool // packets alias block
}

// maxDamage bounds the damaged blocks an error lists one by one.
const maxDamage = 8

// Scan returns a Scanner positioned before the first packet.
func (f *File) Scan() *Scanner {
	return &Scanner{f: f, blockPos: -f.blockSize, last: -1}
}

// ScanInPlace is Scan for readers that copy what they keep: each
// Packet's Data aliases the scanner's block buffer and is valid only until
// the next call to Next, which saves an allocation per packet.
func (f *File) ScanInPlace() *Scanner {
	return &Scanner{f: f, blockPos: -f.blockSize, last: -1, inPlace: true}
}

// Next advances to the next packet. It returns false at the end of the
// file, at an unused (zero) block that only unused blocks follow, or on a
// read error (see Err).
func (s *Scanner) Next() bool {
	for !s.done {
		if s.off == 0 {
			s.loadBlock()
			continue
		}
		if s.readFromBlock() {
			return true
		}
	}
	return false
}

// skipBlock records that the block being read is damaged at file offset pos
// and moves on to the next block.
func (s *Scanner) skipBlock(pos int64, format string, args ...any) {
	if len(s.damage) < maxDamage {
		s.damage = append(s.damage, fmt.Sprintf("at offset %d: %s", pos, fmt.Sprintf(format, args...)))
	}
	s.damaged++
	s.off = 0
}

func (s *Scanner) loadBlock() {
	s.blockPos += s.f.blockSize
	if s.blockPos >= s.f.size {
		s.done = true
		return
	}
	if s.block == nil {
		s.block = make([]byte, s.f.blockSize)
	}
	// A partial last block (a copy cut short, or a crash before stenotype
	// cut a sparse file to its block multiple) is read as far as it goes:
	// its packets inside the file are returned, and it is reported.
	s.blockLen = min(s.f.blockSize, s.f.size-s.blockPos)
	if s.blockLen < s.f.blockSize {
		s.damaged++
		if len(s.damage) < maxDamage {
			s.damage = append(s.damage, fmt.Sprintf("at offset %d: partial block of %d bytes at the end of the file", s.blockPos, s.blockLen))
		}
		if s.blockLen < blockHeaderSize {
			s.done = true
			return
		}
	}
	if _, err := s.f.f.ReadAt(s.block[:s.blockLen], s.blockPos); err != nil && err != io.EOF {
		s.done = true
		s.err = fmt.Errorf("blockfile: read %s at %d: %w", s.f.name, s.blockPos, err)
		return
	}
	le := binary.LittleEndian
	s.count = le.Uint32(s.block[offNumPkts:])
	s.left = s.count
	if s.count == 0 {
		next, err := s.nextUsedBlock()
		switch {
		case err != nil:
			s.done, s.err = true, err
		case next < 0: // preallocated, never used: the data ends here
			s.done = true
		default:
			s.skipBlock(s.blockPos, "block without packets (num_pkts 0) before the block at %d, which has some", next)
			s.blockPos = next - s.f.blockSize
		}
		return
	}
	first := int64(le.Uint32(s.block[offFirstPkt:]))
	if first < blockHeaderSize || first > s.f.blockSize-packetHeaderSize {
		s.skipBlock(s.blockPos, "offset_to_first_pkt %d out of bounds", first)
		return
	}
	s.off = first
}

// nextUsedBlock returns the offset of the first block after the current
// one whose packet count is not 0, or -1 if there is none.
func (s *Scanner) nextUsedBlock() (int64, error) {
	var n [4]byte
	for pos := s.blockPos + s.f.blockSize; pos+s.f.blockSize <= s.f.size; pos += s.f.blockSize {
		if _, err := s.f.f.ReadAt(n[:], pos+offNumPkts); err != nil {
			return 0, fmt.Errorf("blockfile: read %s at %d: %w", s.f.name, pos+offNumPkts, err)
		}
		if binary.LittleEndian.Uint32(n[:]) != 0 {
			return pos, nil
		}
	}
	return -1, nil
}

// readFromBlock decodes the packet at s.off; false when the block turned
// out damaged there.
func (s *Scanner) readFromBlock() bool {
	b := s.block[:s.blockLen]
	pos := s.blockPos + s.off
	var p Packet
	var err error
	if s.inPlace {
		p, err = s.f.packetInBlockInPlace(b, s.blockPos, pos)
	} else {
		p, err = s.f.packetInBlock(b, s.blockPos, pos, nil)
	}
	if err != nil {
		s.skipBlock(pos, "packet %d of %d: %v", s.count-s.left+1, s.count, errors.Unwrap(err))
		return false
	}
	s.pkt, s.last = p, pos
	h := parseHeader(b[s.off:])
	s.left--
	// The kernel ends each block's chain with a tp_next_offset of 0 on its
	// num_pkts-th packet; a chain and a count that disagree lose packets.
	switch next := int64(h.next); {
	case next == 0 && s.left > 0:
		s.skipBlock(pos, "the chain of packets ends after %d of the block's %d", s.count-s.left, s.count)
	case next == 0:
		s.off = 0
	case s.left == 0:
		s.skipBlock(pos, "the block's %d packets end here but tp_next_offset is %d", s.count, next)
	case next < packetHeaderSize || s.off+next > int64(len(b))-packetHeaderSize:
		s.skipBlock(pos, "tp_next_offset %d out of bounds", next)
	default:
		s.off += next
	}
	return true
}

// Packet returns the packet Next moved to. Its Data is not reused, except
// by a ScanInPlace scanner.
func (s *Scanner) Packet() Packet { return s.pkt }

// LastPosition returns the position of the last packet Next moved to, or
// -1 if none.
func (s *Scanner) LastPosition() int64 { return s.last }

// Err returns, once Next has returned false, the damaged blocks the scan
// passed over and the error that stopped it, if any, in one error naming
// the file.
func (s *Scanner) Err() error {
	if s.damaged == 0 {
		return s.err
	}
	list := strings.Join(s.damage, "; ")
	if s.damaged > len(s.damage) {
		list += fmt.Sprintf("; and %d more", s.damaged-len(s.damage))
	}
	derr := fmt.Errorf("%w %s: %d damaged blocks skipped: %s", ErrCorrupt, s.f.name, s.damaged, list)
	if s.err != nil {
		return fmt.Errorf("%w; then %w", derr, s.err)
	}
	return derr
}
