package pcap

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// ngPacket is one packet to write and what reading it back must give.
type ngPacket struct {
	iface   int
	ts      time.Time
	wireLen int
	data    []byte
}

// Streams of every data length modulo 4 (the padding), over one and
// several interfaces, read back with gopacket's pcapng reader: the
// interfaces' names, link type and nanosecond resolution, and each
// packet's interface, timestamp to the nanosecond, lengths and bytes.
func TestNgWriterReadBack(t *testing.T) {
	at := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	for _, tc := range []struct {
		name   string
		ifaces []string
		pkts   []ngPacket
	}{
		{"no interfaces named", nil, []ngPacket{{0, at, 60, make([]byte, 60)}}},
		{"one interface, every padding", []string{"eth0"}, []ngPacket{
			{0, at, 61, bytes.Repeat([]byte{1}, 61)},
			{0, at.Add(1), 62, bytes.Repeat([]byte{2}, 62)},
			{0, at.Add(2), 63, bytes.Repeat([]byte{3}, 63)},
			{0, at.Add(3), 64, bytes.Repeat([]byte{4}, 64)},
		}},
		{"two interfaces, cut frame", []string{"eth0", "mon1.100"}, []ngPacket{
			{1, at, 1500, bytes.Repeat([]byte{5}, 100)},
			{0, at.Add(time.Second), 0, []byte{6, 7, 8}},
			{1, time.Unix(0, 1), 14, make([]byte, 14)},
		}},
		{"no packets", []string{"a", "b", "c"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			w, err := NewNgWriter(&buf, Limits{}, tc.ifaces)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range tc.pkts {
				if err := w.WriteFrom(p.iface, p.ts, p.wireLen, p.data); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if int64(buf.Len()) != w.Bytes() || w.Packets() != int64(len(tc.pkts)) {
				t.Errorf("Bytes %d Packets %d for a %d-byte stream of %d packets", w.Bytes(), w.Packets(), buf.Len(), len(tc.pkts))
			}
			r, err := pcapgo.NewNgReader(&buf, pcapgo.DefaultNgReaderOptions)
			if err != nil {
				t.Fatal(err)
			}
			for i, want := range tc.pkts {
				data, ci, err := r.ReadPacketData()
				if err != nil {
					t.Fatalf("packet %d: %v", i, err)
				}
				if ci.InterfaceIndex != want.iface || !ci.Timestamp.Equal(want.ts) || ci.Length != max(want.wireLen, len(want.data)) ||
					!bytes.Equal(data, want.data) {
					t.Errorf("packet %d = if %d at %v len %d %x; want if %d at %v len %d %x", i, ci.InterfaceIndex, ci.Timestamp, ci.Length, data,
						want.iface, want.ts, max(want.wireLen, len(want.data)), want.data)
				}
			}
			if _, _, err := r.ReadPacketData(); err == nil {
				t.Error("more packets than written")
			}
			names := tc.ifaces
			if len(names) == 0 {
				names = []string{""}
			}
			if r.NInterfaces() != len(names) {
				t.Fatalf("%d interfaces, want %d", r.NInterfaces(), len(names))
			}
			for i, name := range names {
				ifc, _ := r.Interface(i)
				if ifc.Name != name || ifc.LinkType != layers.LinkTypeEthernet || ifc.TimestampResolution != 9 || ifc.SnapLength != snaplen {
					t.Errorf("interface %d = %+v, want %q, Ethernet, resolution 9, snaplen %d", i, ifc, name, snaplen)
				}
			}
		})
	}
}

// The limits count the pcapng stream as they count PCAP: the packet
// that crosses MaxBytes is the last; an unknown interface is refused.
func TestNgWriterLimits(t *testing.T) {
	data := make([]byte, 60) // a 92-byte block
	head, _ := NewNgWriter(&bytes.Buffer{}, Limits{}, []string{"eth0"})
	h := head.Bytes()
	for _, tc := range []struct {
		name   string
		limits Limits
		want   int
	}{
		{"packets", Limits{MaxPackets: 2}, 2},
		{"bytes crossed by the first", Limits{MaxBytes: h + 1}, 1},
		{"bytes reached by the second", Limits{MaxBytes: h + 2*92}, 2},
		{"bytes crossed by the third", Limits{MaxBytes: h + 2*92 + 1}, 3},
		{"none", Limits{}, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			w, _ := NewNgWriter(&buf, tc.limits, []string{"eth0"})
			n := 0
			for i := 0; i < 5; i++ {
				err := w.WriteFrom(0, time.Unix(int64(i), 0), len(data), data)
				if errors.Is(err, ErrLimit) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				n++
			}
			if n != tc.want {
				t.Errorf("%d packets written, want %d", n, tc.want)
			}
		})
	}
	w, _ := NewNgWriter(&bytes.Buffer{}, Limits{}, []string{"eth0", "eth1"})
	for _, i := range []int{-1, 2} {
		if err := w.WriteFrom(i, time.Unix(0, 0), 1, []byte{1}); err == nil || w.Packets() != 0 {
			t.Errorf("WriteFrom(interface %d of 2) = %v", i, err)
		}
	}
}

// A pcapng result and a PCAP result of the same packets hold the same
// frames: the formats differ in framing only.
func TestNgWriterMatchesPCAP(t *testing.T) {
	var ng, classic bytes.Buffer
	nw, _ := NewNgWriter(&ng, Limits{}, []string{"x"})
	pw, _ := NewWriter(&classic, Limits{})
	var frames [][]byte
	for i := 0; i < 50; i++ {
		f := bytes.Repeat([]byte{byte(i)}, 14+i)
		frames = append(frames, f)
		for _, w := range []Output{nw, pw} {
			if err := w.WriteFrom(0, time.Unix(int64(i), int64(i)*1000), len(f), f); err != nil {
				t.Fatal(err)
			}
		}
	}
	nw.Flush()
	pw.Flush()
	nr, _ := pcapgo.NewNgReader(&ng, pcapgo.DefaultNgReaderOptions)
	cr, _ := pcapgo.NewReader(&classic)
	var a, b [][]byte
	for {
		d, _, err := nr.ReadPacketData()
		if err != nil {
			break
		}
		a = append(a, d)
	}
	for {
		d, _, err := cr.ReadPacketData()
		if err != nil {
			break
		}
		b = append(b, d)
	}
	if !slices.EqualFunc(a, frames, bytes.Equal) || !slices.EqualFunc(b, frames, bytes.Equal) {
		t.Errorf("pcapng gave %d frames, PCAP %d, of %d written", len(a), len(b), len(frames))
	}
}
