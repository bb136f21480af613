package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	pb "github.com/stenographer-ng/stenographer/protobuf"
)

// GRPCConn is a gRPC client connection to the daemon's RetrievePcap port,
// dialing inside the capture namespace with tlsConfig (nil: the client
// certificate of CertPath). Closed at test end.
func (d *Daemon) GRPCConn(tlsConfig *tls.Config) *grpc.ClientConn {
	d.t.Helper()
	return d.GRPCConnTo(d.NSPath(), GRPCAddr(), tlsConfig)
}

// GRPCConnTo is GRPCConn dialing addr from the namespace whose file is ns
// (e.g. the sender's, to reach the daemon as a remote client would).
func (d *Daemon) GRPCConnTo(ns, addr string, tlsConfig *tls.Config) *grpc.ClientConn {
	d.t.Helper()
	if tlsConfig == nil {
		tlsConfig = d.TLSConfig()
	}
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return DialInNS(ctx, ns, "tcp", addr)
		}))
	if err != nil {
		d.t.Fatalf("grpc client for %s: %v", addr, err)
	}
	d.t.Cleanup(func() { conn.Close() })
	return conn
}

// GRPCResult is a finished RetrievePcap stream.
type GRPCResult struct {
	PCAP    []byte      // the pcap fields concatenated
	Chunks  int         // number of responses
	UIDs    []string    // distinct uids seen
	Trailer metadata.MD // the stream's trailer
}

// Retrieve runs one RetrievePcap call to its end. A non-OK status is the
// error (with whatever arrived before it in the result).
func Retrieve(ctx context.Context, conn *grpc.ClientConn, req *pb.PcapRequest) (*GRPCResult, error) {
	stream, err := pb.NewStenographerClient(conn).RetrievePcap(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("RetrievePcap %q: %w", req.GetQuery(), err)
	}
	res := &GRPCResult{}
	seen := map[string]bool{}
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			res.Trailer = stream.Trailer()
			return res, fmt.Errorf("RetrievePcap %q after %d bytes: %w", req.GetQuery(), len(res.PCAP), err)
		}
		res.Chunks++
		res.PCAP = append(res.PCAP, m.GetPcap()...)
		if !seen[m.GetUid()] {
			seen[m.GetUid()] = true
			res.UIDs = append(res.UIDs, m.GetUid())
		}
	}
	res.Trailer = stream.Trailer()
	return res, nil
}
