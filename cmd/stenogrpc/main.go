// Command stenogrpc retrieves PCAP from a stenographer's gRPC API
// (RetrievePcap, SPEC §8) over mutual TLS and saves the stream to a file.
//
//	stenogrpc --server HOST:PORT --ca FILE --cert FILE --key FILE \
//	    [--uid ID] [--chunk_size N] [--max_size N] [--out FILE|-] QUERY
//
// The query is the remaining arguments joined by spaces. When a size limit
// cut the result short, it says so on stderr (from the stream's trailer)
// and still exits 0: the file holds a valid PCAP up to the limit. Errors
// exit 1 with the gRPC status message.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/stenographer-ng/stenographer/protobuf"
	"github.com/stenographer-ng/stenographer/stenographer/rpc"
	"github.com/stenographer-ng/stenographer/stenographer/tlsconfig"
	"github.com/stenographer-ng/stenographer/stenographer/version"
)

func main() {
	fs := flag.NewFlagSet("stenogrpc", flag.ContinueOnError)
	server := fs.String("server", "", "stenographer gRPC address, HOST:PORT")
	ca := fs.String("ca", "", "CA certificate (PEM) the server certificate must chain to")
	cert := fs.String("cert", "", "client certificate (PEM)")
	key := fs.String("key", "", "client key (PEM)")
	serverName := fs.String("server_name", "", "name the server certificate must carry (default: the host of --server)")
	uid := fs.String("uid", "", "request id echoed in every response (default: random)")
	chunk := fs.Int64("chunk_size", 0, "bytes per response; 0: the server's default")
	maxSize := fs.Int64("max_size", 0, "most PCAP bytes to receive; 0: the server's default")
	out := fs.String("out", "-", "output file, - for stdout")
	ng := fs.Bool("pcapng", false, "ask for pcapng (an interface block per capture interface) instead of PCAP")
	filter := fs.String("filter", "", "tcpdump expression the server refines the result with (only the packets it accepts are sent)")
	showVersion := fs.Bool("version", false, "print the version and commit, then exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: stenogrpc --server HOST:PORT --ca FILE --cert FILE --key FILE [flags] QUERY\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if *showVersion {
		fmt.Println(version.String("stenogrpc"))
		return
	}
	q := strings.Join(fs.Args(), " ")
	if *server == "" || *ca == "" || *cert == "" || *key == "" || strings.TrimSpace(q) == "" {
		fs.Usage()
		os.Exit(2)
	}
	if *uid == "" {
		*uid = randomID()
	}
	if os.Getenv("GOMAXPROCS") == "" {
		// Receiving is one chain (TLS reads, HTTP/2 frames, the message,
		// the write) that gRPC spreads over goroutines; with a processor
		// for each core every hand-off wakes another thread. One processor
		// took a 1.56 GB result to 0.63x stenogrpc's CPU and 0.82x its
		// wall time (paired runs, 2 cores shared with the daemon).
		runtime.GOMAXPROCS(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	req := &pb.PcapRequest{Uid: *uid, ChunkSize: *chunk, MaxSize: *maxSize, Query: q, Pcapng: *ng, Filter: *filter}
	if err := run(ctx, *server, *ca, *cert, *key, *serverName, req, *out); err != nil {
		fmt.Fprintln(os.Stderr, "stenogrpc:", err)
		os.Exit(1)
	}
}

// Flow control and read sizes of the connection (see run).
const (
	streamWindow = 8 << 20
	readBuffer   = 256 << 10
)

func run(ctx context.Context, addr, ca, cert, key, serverName string, req *pb.PcapRequest, outPath string) error {
	tc, err := tlsconfig.Client(ca, cert, key, serverName)
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)),
		// A result is one long stream: windows of a few chunks let the
		// server send without waiting for window updates, and a large
		// read buffer takes many frames per system call.
		grpc.WithInitialWindowSize(streamWindow), grpc.WithInitialConnWindowSize(streamWindow),
		grpc.WithReadBufferSize(readBuffer), experimental.WithBufferPool(rpc.BufferPool()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rpc.Codec())))
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", addr, err)
	}
	defer conn.Close()

	out, err := openOutput(outPath)
	if err != nil {
		return err
	}
	defer out.abandon()
	w := out.w

	stream, err := pb.NewStenographerClient(conn).RetrievePcap(ctx, req)
	if err != nil {
		return describe(err)
	}
	var n int64
	// One message for every chunk: rpc.Codec decodes into its array.
	resp := new(pb.PcapResponse)
	for {
		err := stream.RecvMsg(resp)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return describe(err)
		}
		if resp.Uid != req.Uid {
			return fmt.Errorf("response for uid %q, asked %q", resp.Uid, req.Uid)
		}
		if _, err := w.Write(resp.Pcap); err != nil {
			return fmt.Errorf("writing %s: %w", outPath, err)
		}
		n += int64(len(resp.Pcap))
	}
	if err := out.commit(); err != nil {
		return fmt.Errorf("writing %s: %w", outPath, err)
	}
	if hdr, err := stream.Header(); err == nil {
		if v := hdr.Get(rpc.HeaderCapture); len(v) > 0 {
			fmt.Fprintf(os.Stderr, "stenogrpc: warning: capture is %s: recent packets are missing\n", v[0])
		}
	}
	tr := stream.Trailer()
	if truncated(tr) {
		fmt.Fprintf(os.Stderr, "stenogrpc: result truncated at the size limit (%d bytes received)\n", n)
	}
	if v := tr.Get(rpc.TrailerFileErrors); len(v) > 0 {
		detail := strings.Join(tr.Get(rpc.TrailerFileErrorDetail), " ")
		return fmt.Errorf("%s file(s) could not be read; the result lacks their packets: %s", v[0], detail)
	}
	return nil
}

// output is where the result goes: stdout, a file written beside its
// target and renamed over it at the end (so a failed transfer never
// leaves a file that looks like a whole result), or, when the target
// exists and is not a regular file (/dev/null, a FIFO), the target itself:
// renaming over /dev/null would replace the device with a file.
type output struct {
	w      io.Writer
	f      *os.File // nil for stdout
	tmp    string   // the temporary file to rename over target, if any
	target string
}

func openOutput(path string) (*output, error) {
	if path == "-" {
		return &output{w: os.Stdout}, nil
	}
	target := path
	if resolved, err := filepath.EvalSymlinks(path); err == nil {
		target = resolved // replace the file a link names, not the link
	}
	if fi, err := os.Stat(target); err == nil && !fi.Mode().IsRegular() {
		f, err := os.OpenFile(target, os.O_WRONLY, 0)
		if err != nil {
			return nil, err
		}
		return &output{w: f, f: f}, nil
	}
	f, err := os.CreateTemp(filepath.Dir(target), "."+filepath.Base(target)+".*")
	if err != nil {
		return nil, err
	}
	return &output{w: f, f: f, tmp: f.Name(), target: target}, nil
}

// commit completes the output: the temporary file takes the target's name.
func (o *output) commit() error {
	if o.f == nil {
		return nil
	}
	err := o.f.Close()
	o.f = nil
	if err == nil && o.tmp != "" {
		err = os.Rename(o.tmp, o.target)
	}
	return err
}

// abandon removes the temporary file of an output not committed.
func (o *output) abandon() {
	if o.f != nil {
		o.f.Close()
	}
	if o.tmp != "" {
		os.Remove(o.tmp) // after a rename, no file has this name
	}
}

func truncated(md metadata.MD) bool {
	v := md.Get(rpc.TrailerTruncated)
	return len(v) > 0 && v[0] == "true"
}

// describe turns a gRPC error into its code and message.
func describe(err error) error {
	if s, ok := status.FromError(err); ok {
		return fmt.Errorf("%s: %s", s.Code(), s.Message())
	}
	return err
}

func randomID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}
