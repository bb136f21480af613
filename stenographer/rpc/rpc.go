// Package rpc is stenographer's gRPC API (SPEC §8): the Stenographer
// service of protobuf/steno.proto over mutual TLS.
//
// Stage: analyst ← PCAP. Input: PcapRequest (query, chunk and size
// limits). Output: the store's answer streamed straight from the query
// engine as PcapResponse chunks; no temporary files (the reference's
// ServerPcapPath is accepted by the configuration but not used).
//
// Truncation: when max_size (or the server's ServerPcapMaxSize) cuts the
// result short, the stream carries everything up to the limit, ends with
// status OK — so reference clients still get their data — and its trailer
// says "steno-truncated: true". Every successful stream's trailer also
// carries "steno-packets" and "steno-bytes" (the PCAP size), and, when
// files could not be read, "steno-file-errors" and
// "steno-file-error-detail". While capture is down the header metadata has
// "steno-capture: down since <time>".
//
// Streaming: the PCAP header leaves at once, the first packet as soon as
// it is found, then whatever came at most every 50 ms; chunk_size is the
// largest message, not the size of every one.
package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/keepalive"

	pb "github.com/stenographer-ng/stenographer/protobuf"
	"github.com/stenographer-ng/stenographer/stenographer/coalesce"
	"github.com/stenographer-ng/stenographer/stenographer/connlimit"
	"github.com/stenographer-ng/stenographer/stenographer/metrics"
	"github.com/stenographer-ng/stenographer/stenographer/serve"
	"github.com/stenographer-ng/stenographer/stenographer/store"
	"github.com/stenographer-ng/stenographer/stenographer/tlsconfig"
)

// Config configures a Server. The size fields are those of the
// configuration's Rpc section.
type Config struct {
	Addr                          string // host:port; port 0 picks a free port
	CaCert, ServerCert, ServerKey string // PEM files
	Store                         *store.Store
	ServerPcapMaxSize             int64 // caps every stream's bytes; 0: no cap
	ClientPcapChunkSize           int64 // chunk size when a request gives 0
	ClientPcapMaxSize             int64 // stream size when a request gives 0; 0: no limit
	// Runner runs the queries; share the HTTPS server's. Nil: one of the
	// server's own over Store, on a registry of its own.
	Runner  *serve.Runner
	Capture serve.CaptureState // nil: capture state not reported
	Logger  *slog.Logger
	// Conns bounds connections, the TLS handshake and idle connections.
	Conns connlimit.Limits
}

// Trailer keys of a RetrievePcap stream.
const (
	TrailerTruncated  = "steno-truncated"   // "true" or "false"
	TrailerPackets    = "steno-packets"     // packets in the stream
	TrailerBytes      = "steno-bytes"       // PCAP bytes in the stream
	TrailerFileErrors = "steno-file-errors" // files that could not be read (only when > 0)
	// TrailerFileErrorDetail describes them in one bounded line.
	TrailerFileErrorDetail = "steno-file-error-detail"
	// HeaderCapture is header metadata sent while capture is down.
	HeaderCapture = "steno-capture"
)

// Request bounds.
const (
	// DefaultChunkSize is used when neither the request nor the server
	// configuration sets a chunk size.
	DefaultChunkSize = 1000
	// MaxChunkSize caps chunk_size so that every response fits within the
	// 4 MiB a gRPC client accepts by default.
	MaxChunkSize = 2 << 20
	// MaxUIDBytes bounds the uid echoed in every response.
	MaxUIDBytes = 1024
	// maxRecvBytes bounds a request message. A longer one is refused by
	// gRPC itself (RESOURCE_EXHAUSTED) before it is decoded; one with a
	// query over serve.MaxQueryBytes is INVALID_ARGUMENT naming the limit.
	maxRecvBytes = 2 * serve.MaxQueryBytes
	// transportBuffer is the HTTP/2 transport's write buffer, and the
	// largest piece a result is handed to the chunker in.
	transportBuffer = 256 << 10
)

// Server serves the gRPC API. Serve it once.
type Server struct {
	cfg    Config
	log    *slog.Logger
	grpc   *grpc.Server
	conns  connlimit.Limits
	runner *serve.Runner
	ready  chan struct{}

	mu   sync.Mutex
	addr net.Addr
}

// New loads the certificates and builds the service. A certificate that
// cannot be loaded is an error naming its file.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("rpc: no store")
	}
	for _, v := range []struct {
		name string
		n    int64
	}{{"ServerPcapMaxSize", cfg.ServerPcapMaxSize}, {"ClientPcapChunkSize", cfg.ClientPcapChunkSize}, {"ClientPcapMaxSize", cfg.ClientPcapMaxSize}} {
		if v.n < 0 {
			return nil, fmt.Errorf("rpc: %s is %d; want 0 or more", v.name, v.n)
		}
	}
	tc, err := tlsconfig.Server(cfg.CaCert, cfg.ServerCert, cfg.ServerKey)
	if err != nil {
		return nil, fmt.Errorf("rpc: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:   cfg,
		log:   log.With("component", "grpc"),
		conns: cfg.Conns.WithDefaults(),
		ready: make(chan struct{}),
	}
	runner := cfg.Runner
	if runner == nil {
		runner, err = serve.New(serve.Config{Store: cfg.Store, Metrics: metrics.New(prometheus.NewRegistry()), Logger: log})
		if err != nil {
			return nil, fmt.Errorf("rpc: %w", err)
		}
	}
	s.grpc = grpc.NewServer(grpc.Creds(authenticatedCreds{credentials.NewTLS(tc)}),
		// WaitForHandlers makes Stop return only after every handler
		// did; Stop cancels their contexts, so that is quick.
		grpc.WaitForHandlers(true),
		// A connection that has not finished its TLS handshake and
		// HTTP/2 preface within this gives its descriptor back.
		grpc.ConnectionTimeout(s.conns.HandshakeTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: s.conns.IdleTimeout}),
		// Clients pinging more often than this are told to go away.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		// A connection may open a few more streams than can run (they
		// wait in the Runner, then are refused); more wait in the
		// client, so one connection cannot pile up hundreds.
		grpc.MaxConcurrentStreams(uint32(2*runner.MaxRunning())),
		grpc.MaxRecvMsgSize(maxRecvBytes),
		// The transport's buffer is what one write to the connection
		// carries: 32 KiB by default, two TLS records; a result chunk's
		// worth makes each write (gathered, one system call) large.
		grpc.WriteBufferSize(transportBuffer),
		experimental.BufferPool(BufferPool()), grpc.ForceServerCodecV2(Codec()))
	s.runner = runner
	pb.RegisterStenographerServer(s.grpc, &service{cfg: &s.cfg, runner: runner, log: s.log})
	return s, nil
}

// Serve listens on Config.Addr and serves until ctx is done. It returns an
// error if it cannot listen, and nil once ctx is done and every stream has
// ended: running queries are cancelled, not waited for.
func (s *Server) Serve(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("rpc: %w", err)
	}
	return s.ServeListener(ctx, ln)
}

// ServeListener is Serve on a listener the caller opened; it closes ln.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener) error {
	s.mu.Lock()
	s.addr = ln.Addr()
	s.mu.Unlock()
	close(s.ready)
	s.log.Info("serving gRPC", "addr", ln.Addr().String())
	// Under TLS, so each write of the HTTP/2 transport's buffer leaves
	// in one system call rather than one per TLS record.
	ln = coalesce.Listener(connlimit.Wrap(ln, s.conns, s.log))
	done := make(chan error, 1)
	go func() { done <- s.grpc.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("rpc: %w", err)
	case <-ctx.Done():
	}
	s.grpc.Stop()
	<-done
	s.log.Info("gRPC stopped")
	return nil
}

// Ready is closed once the server listens; Addr is valid from then on.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr returns the address the server listens on, or nil before Ready.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Metrics returns the metrics the server's queries are counted in.
func (s *Server) Metrics() *metrics.Metrics { return s.runner.Metrics() }

// authenticatedCreds tells the connection limiter which connections have
// completed their mutual-TLS handshake, so they keep their place when the
// connection bound is reached.
type authenticatedCreds struct {
	credentials.TransportCredentials
}

func (c authenticatedCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		return conn, info, err
	}
	connlimit.Authenticated(raw)
	if co := coalesce.Find(raw); co != nil {
		conn = gatheredConn{Conn: conn, co: co}
	}
	return conn, info, nil
}

// gatheredConn writes the TLS records of each Write (a flush of the
// HTTP/2 transport's buffer) to the connection together.
type gatheredConn struct {
	net.Conn
	co *coalesce.Conn
}

func (g gatheredConn) Write(p []byte) (n int, err error) {
	err = g.co.Do(func() error {
		n, err = g.Conn.Write(p)
		return err
	})
	return n, err
}

func (c authenticatedCreds) Clone() credentials.TransportCredentials {
	return authenticatedCreds{c.TransportCredentials.Clone()}
}
