package rpc

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	pb "github.com/stenographer-ng/stenographer/protobuf"
	"github.com/stenographer-ng/stenographer/stenographer/metrics"
	"github.com/stenographer-ng/stenographer/stenographer/pcap"
	"github.com/stenographer-ng/stenographer/stenographer/serve"
)

type service struct {
	pb.UnimplementedStenographerServer
	cfg    *Config
	runner *serve.Runner
	log    *slog.Logger
}

// limits resolves a request's chunk and stream sizes against the
// configuration: 0 takes the configured default, the server cap always
// applies.
func (s *service) limits(req *pb.PcapRequest) (chunk, maxBytes int64, err error) {
	if req.ChunkSize < 0 {
		return 0, 0, fmt.Errorf("chunk_size %d is negative", req.ChunkSize)
	}
	if req.MaxSize < 0 {
		return 0, 0, fmt.Errorf("max_size %d is negative", req.MaxSize)
	}
	if len(req.Uid) > MaxUIDBytes {
		return 0, 0, fmt.Errorf("uid is %d bytes; at most %d allowed", len(req.Uid), MaxUIDBytes)
	}
	chunk = req.ChunkSize
	if chunk == 0 {
		chunk = s.cfg.ClientPcapChunkSize
	}
	if chunk == 0 {
		chunk = DefaultChunkSize
	}
	chunk = min(chunk, MaxChunkSize)
	maxBytes = req.MaxSize
	if maxBytes == 0 {
		maxBytes = s.cfg.ClientPcapMaxSize
	}
	if c := s.cfg.ServerPcapMaxSize; c > 0 && (maxBytes == 0 || maxBytes > c) {
		maxBytes = c
	}
	return chunk, maxBytes, nil
}

// RetrievePcap streams the PCAP answer to req.Query in chunks.
func (s *service) RetrievePcap(req *pb.PcapRequest, stream grpc.ServerStreamingServer[pb.PcapResponse]) error {
	ctx := stream.Context()
	remote := ""
	if p, ok := peer.FromContext(ctx); ok {
		remote = p.Addr.String()
	}
	sreq := serve.Request{Transport: metrics.TransportGRPC, Text: req.Query, Pcapng: req.Pcapng, Filter: strings.TrimSpace(req.Filter),
		Log: s.log.With("uid", req.Uid, "remote", remote)}
	chunk, maxBytes, err := s.limits(req)
	if err != nil {
		return status.Error(codes.InvalidArgument, s.runner.Refuse(sreq, err).Err.Error())
	}
	sreq.Limits = pcap.Limits{MaxBytes: maxBytes}
	// The result writer's pieces are the chunks (up to a transport
	// buffer's worth), so the chunker sends them without copying.
	sreq.BufferSize = int(min(chunk, transportBuffer))
	sreq.Log = sreq.Log.With("chunk_size", chunk, "max_size", maxBytes)
	if down := serve.CaptureDown(s.cfg.Capture); down != "" {
		// Headers go out with the first message, or alone now when the
		// query is refused or finds nothing.
		stream.SetHeader(metadata.Pairs(HeaderCapture, down))
	}
	out := &chunkWriter{stream: stream, uid: req.Uid, size: int(chunk)}
	o := s.runner.Run(ctx, sreq, out)
	switch o.Outcome {
	case metrics.OutcomeBadQuery:
		return status.Error(codes.InvalidArgument, o.Err.Error())
	case metrics.OutcomeBusy:
		return status.Error(codes.ResourceExhausted, o.Err.Error())
	case metrics.OutcomeCanceled:
		if ctx.Err() != nil {
			return status.FromContextError(ctx.Err()).Err()
		}
		return status.Errorf(codes.Canceled, "sending the result: %v", o.Err)
	case metrics.OutcomeError:
		return status.Errorf(codes.Internal, "query %q: %v", req.Query, o.Err)
	}
	res := o.Result
	md := metadata.Pairs(
		TrailerTruncated, strconv.FormatBool(res.Truncated),
		TrailerPackets, strconv.FormatInt(res.Packets, 10),
		TrailerBytes, strconv.FormatInt(res.Bytes, 10))
	if len(res.Errors) > 0 {
		md.Append(TrailerFileErrors, strconv.Itoa(len(res.Errors)))
		md.Append(TrailerFileErrorDetail, serve.FileErrorDetail(res.Errors))
	}
	stream.SetTrailer(md)
	return nil
}

// chunkWriter cuts the PCAP stream into responses of at most size bytes.
// The result writer buffers (Request.BufferSize, at most a chunk) and
// hands over a full buffer, or a partial one when it flushes: the first
// packet and then, at pcap.StreamFlushInterval, whatever has come since.
// Each piece is sent at once, from the writer's buffer (Send encodes the
// message before it returns, so the buffer may be reused). Send blocks
// under gRPC flow control, so a slow client slows the query's disk reads
// rather than filling memory.
type chunkWriter struct {
	stream grpc.ServerStreamingServer[pb.PcapResponse]
	uid    string
	size   int
	chunks int
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(c.size, len(p))
		c.chunks++
		if err := c.stream.Send(&pb.PcapResponse{Uid: c.uid, Pcap: p[:k]}); err != nil {
			return n - len(p), fmt.Errorf("rpc: sending chunk %d: %w", c.chunks, err)
		}
		p = p[k:]
	}
	return n, nil
}

// Flush does nothing: every Write was sent.
func (c *chunkWriter) Flush() error { return nil }
