package fleet

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/stenographer-ng/stenographer/stenographer/pcap"
)

// linkEthernet is the only link type stenofleet's output (pcap.Writer)
// carries; a sensor answering with another is that sensor's error.
const linkEthernet = 1

// maxRecord bounds one record's captured length: a corrupt length must not
// make the reader allocate gigabytes.
const maxRecord = 256 << 10

// readBufferSize holds the largest record with its header, so every
// record can be handed out in place (Peek) instead of being copied out.
const readBufferSize = maxRecord + pcap.RecordHeaderSize

// pcapReader reads one sensor's PCAP stream a record at a time. A record
// is returned as a slice of the read buffer, not a copy: the merge holds
// one packet per sensor and writes it before asking that sensor for the
// next, which is when the buffer may be refilled.
type pcapReader struct {
	r     *bufio.Reader
	order binary.ByteOrder
	nanos bool
	// done is the length of the record handed out last, discarded from
	// the buffer only at the next call so that its bytes stay put.
	done int
}

func newPCAPReader(r io.Reader) (*pcapReader, error) {
	br := bufio.NewReaderSize(r, readBufferSize)
	var h [pcap.FileHeaderSize]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return nil, fmt.Errorf("reading the PCAP file header: %w", err)
	}
	p := &pcapReader{r: br}
	switch binary.LittleEndian.Uint32(h[:4]) {
	case 0xa1b2c3d4:
		p.order = binary.LittleEndian
	case 0xa1b23c4d:
		p.order, p.nanos = binary.LittleEndian, true
	case 0xd4c3b2a1:
		p.order = binary.BigEndian
	case 0x4d3cb2a1:
		p.order, p.nanos = binary.BigEndian, true
	default:
		return nil, fmt.Errorf("not a PCAP stream (magic %x)", h[:4])
	}
	if lt := p.order.Uint32(h[20:]) & 0x0fffffff; lt != linkEthernet {
		return nil, fmt.Errorf("link type %d, not Ethernet (%d): cannot merge", lt, linkEthernet)
	}
	return p, nil
}

// next reads one record; io.EOF at a clean end. The returned data is
// valid until the next call.
func (p *pcapReader) next() (pcap.Packet, error) {
	if p.done > 0 {
		// Cannot fail: the bytes were peeked, so they are buffered.
		p.r.Discard(p.done)
		p.done = 0
	}
	hdr, err := p.r.Peek(pcap.RecordHeaderSize)
	if err != nil {
		if errors.Is(err, io.EOF) && len(hdr) == 0 {
			return pcap.Packet{}, io.EOF
		}
		return pcap.Packet{}, fmt.Errorf("reading a record header: %w", unexpected(err))
	}
	sec, frac := p.order.Uint32(hdr[0:]), p.order.Uint32(hdr[4:])
	incl, orig := p.order.Uint32(hdr[8:]), p.order.Uint32(hdr[12:])
	if incl > maxRecord {
		return pcap.Packet{}, fmt.Errorf("record of %d bytes (more than %d): corrupt stream", incl, maxRecord)
	}
	n := pcap.RecordHeaderSize + int(incl)
	rec, err := p.r.Peek(n)
	if err != nil {
		return pcap.Packet{}, fmt.Errorf("reading a %d-byte record: %w", incl, unexpected(err))
	}
	p.done = n
	ns := int64(frac)
	if !p.nanos {
		ns *= 1000
	}
	return pcap.Packet{Timestamp: time.Unix(int64(sec), ns), WireLen: int(orig), Data: rec[pcap.RecordHeaderSize:n:n]}, nil
}

// unexpected says that a stream ending inside a record was cut short, as
// io.ReadFull would.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
