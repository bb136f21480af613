package rpc_test

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/mem"
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
