package rpc

import (
	"fmt"
	"math/bits"
	"sync"
	"unicode/utf8"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/stenographer-ng/stenographer/protobuf"
)

// BufferPool returns the gRPC buffer pool of the server and of stenogrpc
// (their transports' frames, and Codec's messages). gRPC's default pool
// clears every buffer it hands out: for a result of 256 KiB chunks that
// cleared each chunk's marshalled message on the server and each
// received frame and message on the client, a tenth of either side's CPU
// (perf, 1.5 GB over gRPC). This one does not clear: every buffer taken
// from it is filled before it is read (a message is marshalled into it,
// a frame read into it whole, a message's frames copied into it), so no
// byte of an earlier use, another query's packets included, can leave.
func BufferPool() mem.BufferPool { return sharedPool }

// Codec returns the protobuf codec of the server and of stenogrpc: gRPC's
// own ("proto", the same bytes on the wire) with its buffers from
// BufferPool rather than gRPC's global default pool.
func Codec() encoding.CodecV2 { return codec{} }

type codec struct{}

func (codec) Name() string { return "proto" }

func (codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("rpc: cannot marshal %T, not a protobuf message", v)
	}
	size := proto.Size(m)
	if mem.IsBelowBufferPoolingThreshold(size) {
		b, err := proto.Marshal(m)
		return mem.BufferSlice{mem.SliceBuffer(b)}, err
	}
	buf := sharedPool.Get(size)
	// UseCachedSize: proto.Size just computed it, and m is not changed
	// meanwhile.
	b, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend((*buf)[:0], m)
	if err != nil {
		sharedPool.Put(buf)
		return nil, err
	}
	*buf = b
	return mem.BufferSlice{mem.NewBuffer(buf, sharedPool)}, nil
}

func (codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("rpc: cannot unmarshal into %T, not a protobuf message", v)
	}
	buf := data.MaterializeToBuffer(sharedPool)
	defer buf.Free()
	if r, ok := m.(*pb.PcapResponse); ok && decodeResponse(buf.ReadOnlyData(), r) {
		return nil
	}
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}

// decodeResponse decodes b into r reusing r.Pcap's array: a client that
// receives every chunk into one PcapResponse then allocates nothing per
// chunk (a new array per 256 KiB chunk was most of stenogrpc's garbage,
// and collecting it a fifth of its CPU). It returns false, leaving r
// for proto.Unmarshal to fill or refuse, on anything but well-formed
// fields uid and pcap.
func decodeResponse(b []byte, r *pb.PcapResponse) bool {
	keep := r.Pcap[:0]
	var uid, pcap []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType || num != 1 && num != 2 {
			return false
		}
		b = b[n:]
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		// A field given twice: the last one counts, as in proto.
		if num == 1 {
			uid = v
		} else {
			pcap = v
		}
	}
	if !utf8.Valid(uid) {
		return false
	}
	proto.Reset(r)
	r.Uid = string(uid)
	r.Pcap = append(keep, pcap...)
	return true
}

var sharedPool = &dirtyPool{}

// Buffers are kept in power-of-two tiers from 1<<minShift to
// 1<<maxShift bytes (the largest a MaxChunkSize message needs); larger
// ones are allocated and left to the collector.
const (
	minShift = 8
	maxShift = 22
)

type dirtyPool struct {
	tiers [maxShift - minShift + 1]sync.Pool // tier i: capacity at least 1<<(i+minShift)
}

func (p *dirtyPool) Get(n int) *[]byte {
	shift := max(bits.Len(uint(max(n, 1)-1)), minShift) // smallest with 1<<shift >= n
	if shift > maxShift {
		b := make([]byte, n)
		return &b
	}
	if b, ok := p.tiers[shift-minShift].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<shift)
	return &b
}

func (p *dirtyPool) Put(b *[]byte) {
	shift := bits.Len(uint(cap(*b))) - 1 // largest with 1<<shift <= cap
	if shift < minShift || shift > maxShift {
		return
	}
	p.tiers[shift-minShift].Put(b)
}
