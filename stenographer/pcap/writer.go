// Package pcap writes query results as one classic PCAP stream (SPEC §6),
// or as pcapng when a client asks (ng.go), and merges per-thread packet
// streams into timestamp order.
//
// Stage: packets → analyst. Input: packets in timestamp order per source.
// Output: a PCAP byte stream (magic a1b2c3d4, version 2.4, microsecond
// timestamps, snaplen 65536, Ethernet) or a pcapng one (an interface
// block per capture interface, nanosecond timestamps), cut short by
// packet or byte limits.
package pcap

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"time"
)

const (
	magicMicros  = 0xa1b2c3d4
	snaplen      = 65536
	linkEthernet = 1
	// FileHeaderSize and RecordHeaderSize are the sizes of the PCAP headers.
	FileHeaderSize   = 24
	RecordHeaderSize = 16
)

// ErrLimit is returned by WritePacket once a limit is reached: the stream
// is complete and further packets are refused.
var ErrLimit = errors.New("pcap: result limit reached")

// Limits bound a result. Zero means no limit. MaxBytes counts the whole
// stream, headers included. As in the reference ("stop once we've
// exceeded X bytes"), the packet that crosses MaxBytes is still written
// and the stream stops after it, so a result is never empty because its
// first packet is larger than the limit.
type Limits struct {
	MaxPackets int64
	MaxBytes   int64
}

// StreamFlushInterval is how long the servers and stenoquery let packets
// wait in the writer's buffer while more are coming.
const StreamFlushInterval = 50 * time.Millisecond

// Output is what a result is written to: a PCAP Writer or a pcapng
// NgWriter. iface is the packet's capture interface, an index into the
// interfaces the NgWriter was made with; PCAP has no place for it.
type Output interface {
	WriteFrom(iface int, ts time.Time, wireLen int, data []byte) error
	SetFlushInterval(d time.Duration)
	Flush() error
	Packets() int64
	Bytes() int64
}

// stream is what both formats share: the buffer, the limits, the counts
// and the flush policy.
type stream struct {
	w       *bufio.Writer
	under   flusher // the underlying writer, when it buffers too
	limits  Limits
	packets int64
	bytes   int64

	// flushEvery, when set, bounds how long a written packet may wait in
	// the buffer while more packets keep coming (see SetFlushInterval).
	flushEvery time.Duration
	lastFlush  time.Time
}

func newStream(w io.Writer, limits Limits, size int) stream {
	s := stream{w: bufio.NewWriterSize(w, size), limits: limits}
	s.under, _ = w.(flusher)
	return s
}

// header writes the stream's header: counted, never limited.
func (s *stream) header(h []byte) error {
	if _, err := s.w.Write(h); err != nil {
		return err
	}
	s.bytes += int64(len(h))
	return nil
}

// full reports whether a limit has been reached: the next packet is
// refused.
func (s *stream) full() bool {
	return s.limits.MaxPackets > 0 && s.packets >= s.limits.MaxPackets ||
		s.limits.MaxBytes > 0 && s.bytes >= s.limits.MaxBytes
}

// record writes one packet's header, data and trailer and counts them.
func (s *stream) record(hdr, data, trailer []byte) error {
	// Three plain writes: a range over a slice of the three costs a few
	// nanoseconds per packet, and a broad result has millions.
	if _, err := s.w.Write(hdr); err != nil {
		return err
	}
	if _, err := s.w.Write(data); err != nil {
		return err
	}
	if len(trailer) > 0 {
		if _, err := s.w.Write(trailer); err != nil {
			return err
		}
	}
	s.packets++
	s.bytes += int64(len(hdr) + len(data) + len(trailer))
	if s.flushEvery > 0 && s.flushDue() {
		return s.Flush()
	}
	return nil
}

// Writer writes a PCAP stream. Not safe for concurrent use.
type Writer struct {
	stream
	hdr [RecordHeaderSize]byte
}

// NewWriter writes the file header to w and returns a Writer.
func NewWriter(w io.Writer, limits Limits) (*Writer, error) {
	return NewWriterSize(w, limits, 64<<10)
}

// NewWriterSize is NewWriter with a write buffer of size bytes, for a
// writer whose every Write costs (stenofleet's HTTP/2 response hands each
// one to another goroutine; the servers' TLS connections write each piece
// with one system call).
func NewWriterSize(w io.Writer, limits Limits, size int) (*Writer, error) {
	pw := &Writer{stream: newStream(w, limits, size)}
	var h [FileHeaderSize]byte
	le := binary.LittleEndian
	le.PutUint32(h[0:], magicMicros)
	le.PutUint16(h[4:], 2)
	le.PutUint16(h[6:], 4)
	le.PutUint32(h[16:], snaplen)
	le.PutUint32(h[20:], linkEthernet)
	if err := pw.header(h[:]); err != nil {
		return nil, err
	}
	return pw, nil
}

// WriteFrom is WritePacket: PCAP records carry no interface.
func (pw *Writer) WriteFrom(_ int, ts time.Time, wireLen int, data []byte) error {
	return pw.WritePacket(ts, wireLen, data)
}

// WritePacket appends one packet. data longer than the snaplen is cut to
// it (the original length is kept in the record). It returns ErrLimit,
// without writing, once a limit has been reached.
func (pw *Writer) WritePacket(ts time.Time, wireLen int, data []byte) error {
	if len(data) > snaplen {
		data = data[:snaplen]
	}
	if pw.full() {
		return ErrLimit
	}
	le := binary.LittleEndian
	le.PutUint32(pw.hdr[0:], uint32(ts.Unix()))
	le.PutUint32(pw.hdr[4:], uint32(ts.Nanosecond()/1000))
	le.PutUint32(pw.hdr[8:], uint32(len(data)))
	le.PutUint32(pw.hdr[12:], uint32(max(wireLen, len(data))))
	return pw.record(pw.hdr[:], data, nil)
}

// SetFlushInterval makes the writer flush after the first packet and then
// whenever d has passed since the last flush, so an analyst watching a
// network stream sees the first packet at once and the rest in steady
// pieces instead of 64 KiB at a time. A packet found after a long search
// leaves with the next one or at the end.
func (pw *stream) SetFlushInterval(d time.Duration) {
	pw.flushEvery = d
	pw.lastFlush = time.Time{}
}

// flushDue reads the clock for every one of the first packets and then
// for every 64th, which keeps a million-packet result from paying for a
// clock read per packet.
func (pw *stream) flushDue() bool {
	if pw.packets > 1024 && pw.packets%64 != 0 {
		return false
	}
	now := time.Now()
	if now.Sub(pw.lastFlush) < pw.flushEvery {
		return false
	}
	pw.lastFlush = now
	return true
}

type flusher interface{ Flush() error }

// Flush writes buffered data to the underlying writer and, when that has a
// Flush method (an HTTP response, a gRPC chunker), flushes it too: a flush
// is meant to reach the client, not the next buffer.
func (pw *stream) Flush() error {
	if err := pw.w.Flush(); err != nil {
		return err
	}
	if pw.under != nil {
		return pw.under.Flush()
	}
	return nil
}

// Packets returns the number of packets written.
func (pw *stream) Packets() int64 { return pw.packets }

// Bytes returns the number of bytes written, headers included.
func (pw *stream) Bytes() int64 { return pw.bytes }
