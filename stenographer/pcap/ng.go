package pcap

import (
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

// The pcapng stream (draft-ietf-opsawg-pcapng), little-endian, as this
// package writes it:
//
//	Section Header Block  type 0x0A0D0D0A, length, magic 0x1A2B3C4D,
//	                      version 1.0, section length -1 (unknown),
//	                      option shb_userappl "stenographer", length
//	Interface Description type 1, length, link type (u16), reserved (u16),
//	  one per interface   snaplen (u32), options if_name (2) and
//	                      if_tsresol (9) = 9 (nanoseconds), length
//	Enhanced Packet Block type 6, length, interface id, timestamp high
//	  one per packet      and low 32 bits (ns since the epoch), captured
//	                      length, original length, data padded to 4
//	                      bytes, length
//
// Every block starts with its type and total length and ends with the
// length again; every option is code (u16), length (u16) and a value
// padded to 4 bytes, the list ended by code 0.
const (
	ngSectionHeader  = 0x0A0D0D0A
	ngByteOrderMagic = 0x1A2B3C4D
	ngInterfaceDesc  = 1
	ngEnhancedPacket = 6

	ngOptEnd      = 0
	ngOptUserAppl = 4 // in the section header
	ngOptIfName   = 2
	ngOptTsResol  = 9

	// NgPacketHeaderSize is the size of an Enhanced Packet Block without
	// its data: 28 bytes before it and the 4-byte length after.
	NgPacketHeaderSize = 32
)

// NgWriter writes a pcapng stream: one Interface Description Block per
// capture interface, then the packets, each naming its interface. Not
// safe for concurrent use.
type NgWriter struct {
	stream
	ifaces int
	hdr    [NgPacketHeaderSize - 4]byte
	tail   [4 + 3]byte // padding of the data, then the block length
}

// NewNgWriter writes the section header and one interface block per name
// of ifaces (Ethernet, nanosecond timestamps) to w and returns the
// writer. With no names it describes one unnamed interface, so every
// stream can hold packets.
func NewNgWriter(w io.Writer, limits Limits, ifaces []string) (*NgWriter, error) {
	return NewNgWriterSize(w, limits, ifaces, 64<<10)
}

// NewNgWriterSize is NewNgWriter with a write buffer of size bytes.
func NewNgWriterSize(w io.Writer, limits Limits, ifaces []string, size int) (*NgWriter, error) {
	if len(ifaces) == 0 {
		ifaces = []string{""}
	}
	nw := &NgWriter{stream: newStream(w, limits, size), ifaces: len(ifaces)}
	head := ngBlock(ngSectionHeader, func(b []byte) []byte {
		b = binary.LittleEndian.AppendUint32(b, ngByteOrderMagic)
		b = binary.LittleEndian.AppendUint16(b, 1)
		b = binary.LittleEndian.AppendUint16(b, 0)
		b = binary.LittleEndian.AppendUint64(b, ^uint64(0)) // -1: length not given
		b = ngOption(b, ngOptUserAppl, []byte("stenographer"))
		return ngOption(b, ngOptEnd, nil)
	})
	for _, name := range ifaces {
		head = append(head, ngBlock(ngInterfaceDesc, func(b []byte) []byte {
			b = binary.LittleEndian.AppendUint16(b, linkEthernet)
			b = binary.LittleEndian.AppendUint16(b, 0)
			b = binary.LittleEndian.AppendUint32(b, snaplen)
			if name != "" {
				b = ngOption(b, ngOptIfName, []byte(name))
			}
			b = ngOption(b, ngOptTsResol, []byte{9})
			return ngOption(b, ngOptEnd, nil)
		})...)
	}
	if err := nw.header(head); err != nil {
		return nil, err
	}
	return nw, nil
}

// ngBlock frames a block's body (appended by body) with its type and
// total length at both ends.
func ngBlock(typ uint32, body func([]byte) []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, typ)
	b = append(b, 0, 0, 0, 0) // length, filled in below
	b = body(b)
	n := uint32(len(b) + 4)
	binary.LittleEndian.PutUint32(b[4:], n)
	return binary.LittleEndian.AppendUint32(b, n)
}

func ngOption(b []byte, code uint16, v []byte) []byte {
	b = binary.LittleEndian.AppendUint16(b, code)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
	b = append(b, v...)
	return append(b, make([]byte, pad4(len(v)))...)
}

func pad4(n int) int { return (4 - n%4) % 4 }

// WriteFrom appends one packet captured on interface iface (an index
// into the names given to NewNgWriter). data longer than the snaplen is
// cut to it. It returns ErrLimit, without writing, once a limit has been
// reached.
func (nw *NgWriter) WriteFrom(iface int, ts time.Time, wireLen int, data []byte) error {
	if iface < 0 || iface >= nw.ifaces {
		return fmt.Errorf("pcap: packet of interface %d; the stream describes %d", iface, nw.ifaces)
	}
	if len(data) > snaplen {
		data = data[:snaplen]
	}
	if nw.full() {
		return ErrLimit
	}
	pad := pad4(len(data))
	n := uint32(NgPacketHeaderSize + len(data) + pad)
	ns := uint64(ts.UnixNano())
	le := binary.LittleEndian
	le.PutUint32(nw.hdr[0:], ngEnhancedPacket)
	le.PutUint32(nw.hdr[4:], n)
	le.PutUint32(nw.hdr[8:], uint32(iface))
	le.PutUint32(nw.hdr[12:], uint32(ns>>32))
	le.PutUint32(nw.hdr[16:], uint32(ns))
	le.PutUint32(nw.hdr[20:], uint32(len(data)))
	le.PutUint32(nw.hdr[24:], uint32(max(wireLen, len(data))))
	tail := nw.tail[:pad+4]
	clear(tail[:pad])
	le.PutUint32(tail[pad:], n)
	return nw.record(nw.hdr[:], data, tail)
}
