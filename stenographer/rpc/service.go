package rpc

import (
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	pb "github.com/stenographer-ng/stenographer/protobuf"
	"github.com/stenographer-ng/stenographer/stenographer/metrics"
	"github.com/stenographer-ng/stenographer/stenographer/pcap"
	"github.com/stenographer-ng/stenographer/stenographer/query"
)

type service struct {
	pb.UnimplementedStenographerServer
	cfg *Config
	log *slog.Logger
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
	log := s.log.With("uid", req.Uid, "query", req.Query, "remote", remote)
	chunk, maxBytes, err := s.limits(req)
	if err == nil {
		var q query.Node
		q, err = query.Parse(req.Query, time.Now())
		if err == nil {
			return s.run(stream, req.Uid, q, chunk, maxBytes, log)
		}
	}
	metrics.StartQuery(metrics.TransportGRPC).End(metrics.OutcomeBadQuery, 0, 0, 0)
	log.Info("query refused", "err", err)
	return status.Error(codes.InvalidArgument, err.Error())
}

func (s *service) run(stream grpc.ServerStreamingServer[pb.PcapResponse], uid string, q query.Node, chunk, maxBytes int64, log *slog.Logger) error {
	ctx := stream.Context()
	m := metrics.StartQuery(metrics.TransportGRPC)
	start := time.Now()
	out := &chunkWriter{stream: stream, uid: uid, size: int(chunk)}
	pw, err := pcap.NewWriter(out, pcap.Limits{MaxBytes: maxBytes})
	if err != nil {
		m.End(metrics.Outcome(ctx, nil, err), 0, 0, 0)
		return status.Errorf(codes.Internal, "starting the result: %v", err)
	}
	pw.SetFlushInterval(pcap.StreamFlushInterval)
	res, err := s.cfg.Store.Query(ctx, q, pw)
	if err == nil {
		err = out.Close()
	}
	outcome := metrics.Outcome(ctx, res, err)
	if err != nil && out.failed {
		outcome = metrics.OutcomeCanceled // the stream is gone
	}
	m.End(outcome, pw.Packets(), pw.Bytes(), metrics.FileErrors(res))
	attrs := []any{"outcome", outcome, "chunk_size", chunk, "max_size", maxBytes,
		"packets", pw.Packets(), "bytes", pw.Bytes(), "chunks", out.chunks, "duration", time.Since(start)}
	if res != nil {
		for _, ferr := range res.Errors {
			log.Warn("query: file could not be read; result lacks its packets", "err", ferr)
		}
	}
	switch {
	case outcome == metrics.OutcomeCanceled:
		log.Info("query canceled", append(attrs, "err", err)...)
		if ctx.Err() != nil {
			return status.FromContextError(ctx.Err()).Err()
		}
		return status.Errorf(codes.Canceled, "sending the result: %v", err)
	case err != nil:
		log.Warn("query failed", append(attrs, "err", err)...)
		return status.Errorf(codes.Internal, "query %q: %v", q, err)
	}
	log.Info("query", attrs...)
	md := metadata.Pairs(
		TrailerTruncated, strconv.FormatBool(res.Truncated),
		TrailerPackets, strconv.FormatInt(res.Packets, 10),
		TrailerBytes, strconv.FormatInt(res.Bytes, 10))
	if len(res.Errors) > 0 {
		md.Append(TrailerFileErrors, strconv.Itoa(len(res.Errors)))
	}
	stream.SetTrailer(md)
	return nil
}

// chunkWriter cuts the PCAP stream into responses of size bytes (the last
// may be shorter). Send blocks under gRPC flow control, so a slow client
// slows the query's disk reads rather than filling memory.
type chunkWriter struct {
	stream grpc.ServerStreamingServer[pb.PcapResponse]
	uid    string
	size   int
	buf    []byte
	chunks int
	failed bool // a Send failed: the stream is over
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if c.buf == nil {
			// A fresh buffer per message: gRPC may still hold the last one.
			// Large chunks grow as data comes, so a small result of a
			// request for 2 MiB chunks does not cost 2 MiB.
			c.buf = make([]byte, 0, min(c.size, 64<<10))
		}
		k := min(c.size-len(c.buf), len(p))
		c.buf = append(c.buf, p[:k]...)
		p = p[k:]
		if len(c.buf) == c.size {
			if err := c.send(); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

func (c *chunkWriter) send() error {
	msg := &pb.PcapResponse{Uid: c.uid, Pcap: c.buf}
	c.buf = nil
	c.chunks++
	if err := c.stream.Send(msg); err != nil {
		c.failed = true
		return fmt.Errorf("rpc: sending chunk %d: %w", c.chunks, err)
	}
	return nil
}

// Close sends what is left of the stream.
func (c *chunkWriter) Close() error {
	if len(c.buf) == 0 {
		return nil
	}
	return c.send()
}
