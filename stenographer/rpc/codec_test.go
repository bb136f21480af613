package rpc_test

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/stenographer-ng/stenographer/protobuf"
	"github.com/stenographer-ng/stenographer/stenographer/rpc"
)

func TestBufferPool(t *testing.T) {
	p := rpc.BufferPool()
	for _, n := range []int{0, 1, 255, 256, 257, 16 << 10, 256<<10 + 40, 4 << 20, 4<<20 + 1, 9 << 20} {
		b := p.Get(n)
		if len(*b) != n || cap(*b) < n {
			t.Fatalf("Get(%d): len %d cap %d", n, len(*b), cap(*b))
		}
		for i := range *b {
			(*b)[i] = 0xa5
		}
		p.Put(b)
		// Whatever comes back, reused or new, has the length asked for
		// and room for it.
		c := p.Get(n)
		if len(*c) != n || cap(*c) < n {
			t.Fatalf("Get(%d) after Put: len %d cap %d", n, len(*c), cap(*c))
		}
		p.Put(c)
	}
	// A buffer put back serves a smaller request of its tier or below.
	b := p.Get(1000)
	p.Put(b)
	if c := p.Get(600); cap(*c) < 600 {
		t.Fatalf("cap %d", cap(*c))
	}
}

// The codec's bytes are proto's, and a message split over many frames'
// buffers decodes whole.
func TestCodecRoundTrip(t *testing.T) {
	c := rpc.Codec()
	for _, n := range []int{0, 10, 300 << 10} {
		msg := &pb.PcapResponse{Uid: "u-1", Pcap: bytes.Repeat([]byte{0xd4, 0xc3, 0xb2, 0xa1}, n/4)}
		data, err := c.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		wire := data.Materialize()
		want, err := proto.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(wire, want) {
			t.Fatalf("%d bytes: the codec's encoding differs from proto's", n)
		}
		data.Free()
		var frames mem.BufferSlice
		for len(wire) > 0 {
			k := min(len(wire), 16<<10)
			frames = append(frames, mem.SliceBuffer(wire[:k]))
			wire = wire[k:]
		}
		got := &pb.PcapResponse{}
		if err := c.Unmarshal(frames, got); err != nil {
			t.Fatal(err)
		}
		if got.Uid != msg.Uid || !bytes.Equal(got.Pcap, msg.Pcap) {
			t.Fatalf("%d bytes: decoded uid %q and %d bytes", n, got.Uid, len(got.Pcap))
		}
	}
}

// Decoding a response: what proto.Unmarshal makes of the same bytes,
// or its error, and a second chunk lands in the first one's array.
func TestCodecResponses(t *testing.T) {
	tag := func(num protowire.Number, v string) []byte {
		b := protowire.AppendTag(nil, num, protowire.BytesType)
		return protowire.AppendBytes(b, []byte(v))
	}
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tc := range []struct {
		name    string
		wire    []byte
		wantErr bool
	}{
		{"uid and pcap", join(tag(1, "id"), tag(2, "packets")), false},
		{"pcap first", join(tag(2, "packets"), tag(1, "id")), false},
		{"empty", nil, false},
		{"a field twice: the last counts", join(tag(2, "old"), tag(1, "a"), tag(2, "new"), tag(1, "b")), false},
		{"an unknown field", join(tag(1, "id"), tag(7, "x"), tag(2, "p")), false},
		{"uid not UTF-8", tag(1, "\xff\xfe"), true},
		{"cut inside pcap", tag(2, "packets")[:5], true},
		{"a varint where bytes belong: unknown, as to proto", protowire.AppendVarint(protowire.AppendTag(nil, 2, protowire.VarintType), 5), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := &pb.PcapResponse{}
			werr := proto.Unmarshal(tc.wire, want)
			got := &pb.PcapResponse{Uid: "stale", Pcap: make([]byte, 3, 64)}
			arr := &got.Pcap[:1][0]
			err := rpc.Codec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(tc.wire)}, got)
			if (err != nil) != tc.wantErr || (werr != nil) != tc.wantErr {
				t.Fatalf("codec error %v, proto error %v; want an error: %v", err, werr, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if got.Uid != want.Uid || !bytes.Equal(got.Pcap, want.Pcap) {
				t.Fatalf("decoded uid %q pcap %q, proto: %q %q", got.Uid, got.Pcap, want.Uid, want.Pcap)
			}
			if tc.name == "uid and pcap" && &got.Pcap[0] != arr {
				t.Error("the pcap bytes did not reuse the message's array")
			}
		})
	}
}
