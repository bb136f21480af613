// Package pcapfile reads and writes classic pcap files for the tests, with
// gopacket's pcapgo (microsecond and nanosecond, both byte orders, empty
// files) and keeps every record's header fields exactly.
package pcapfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// Packet is one pcap record.
type Packet struct {
	Time    time.Time // full precision of the file (µs or ns)
	WireLen int       // original length
	Data    []byte    // captured bytes (len = captured length)
}

// File is a whole pcap file in memory.
type File struct {
	LinkType   layers.LinkType
	Nanosecond bool
	Snaplen    uint32 // from the file header
	Packets    []Packet
}

// maxSnaplen is libpcap's largest snapshot length for Ethernet
// (MAXIMUM_SNAPLEN); a header snaplen of 0 or above it means this.
const maxSnaplen = 262144

// LibpcapView returns the packets as libpcap (and so tcpdump and
// `stenotype --pcap_in`) reads them: a record longer than the header's
// snaplen is cut to the snaplen, its wire length kept.
func (f *File) LibpcapView() *File {
	snap := int(f.Snaplen)
	if snap == 0 || snap > maxSnaplen {
		snap = maxSnaplen
	}
	out := *f
	out.Packets = make([]Packet, len(f.Packets))
	for i, p := range f.Packets {
		if len(p.Data) > snap {
			p.Data = p.Data[:snap]
		}
		out.Packets[i] = p
	}
	return &out
}

// Bytes is the sum of the captured lengths.
func (f *File) Bytes() int64 {
	var n int64
	for _, p := range f.Packets {
		n += int64(len(p.Data))
	}
	return n
}

// Read reads a whole pcap file.
func Read(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Parse reads a pcap held in memory.
func Parse(data []byte) (*File, error) {
	if len(data) < 4 {
		return nil, errors.New("pcapfile: too short for a pcap header")
	}
	r, err := pcapgo.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("pcapfile: %w", err)
	}
	magic := data[0:4]
	f := &File{
		Snaplen:    r.Snaplen(),
		LinkType:   r.LinkType(),
		Nanosecond: bytes.Equal(magic, []byte{0x4d, 0x3c, 0xb2, 0xa1}) || bytes.Equal(magic, []byte{0xa1, 0xb2, 0x3c, 0x4d}),
	}
	// pcapgo refuses records longer than the header's snaplen; some corpus
	// files have such records and Packets keeps them whole.
	r.SetSnaplen(1 << 30)
	for i := 0; ; i++ {
		d, ci, err := r.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("pcapfile: record %d: %w", i, err)
		}
		f.Packets = append(f.Packets, Packet{Time: ci.Timestamp, WireLen: ci.Length, Data: d})
	}
	return f, nil
}

// Write writes packets as a nanosecond pcap with link type Ethernet.
func Write(path string, pkts []Packet) error {
	var buf bytes.Buffer
	w := pcapgo.NewWriterNanos(&buf)
	if err := w.WriteFileHeader(262144, layers.LinkTypeEthernet); err != nil {
		return err
	}
	for i, p := range pkts {
		ci := gopacket.CaptureInfo{Timestamp: p.Time, CaptureLength: len(p.Data), Length: p.WireLen}
		if err := w.WritePacket(ci, p.Data); err != nil {
			return fmt.Errorf("pcapfile: packet %d: %w", i, err)
		}
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}
