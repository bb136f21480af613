// Package server is stenographer's HTTPS API (SPEC §7) with mutual TLS.
//
// Stage: analyst ← PCAP. Input: queries POSTed to /query. Output: the
// store's answer streamed as PCAP, plus /debug/* views of the store and
// the configuration and /metrics for Prometheus.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stenographer-ng/stenographer/stenographer/coalesce"
	"github.com/stenographer-ng/stenographer/stenographer/connlimit"
	"github.com/stenographer-ng/stenographer/stenographer/metrics"
	"github.com/stenographer-ng/stenographer/stenographer/serve"
	"github.com/stenographer-ng/stenographer/stenographer/store"
	"github.com/stenographer-ng/stenographer/stenographer/tlsconfig"
)

// Config configures a Server.
type Config struct {
	Addr string // host:port to listen on; port 0 picks a free port
	// CertPath is the directory holding ca_cert.pem (the CA client
	// certificates must chain to), server_cert.pem and server_key.pem.
	CertPath string
	Store    *store.Store
	// Runner runs the queries; share one with the gRPC server so they
	// are bounded together. Nil: the server makes its own over Store,
	// with a registry of its own holding its metrics and NewCollector's.
	Runner *serve.Runner
	// Capture, when set, tells analysts while capture is down (a
	// Steno-Capture header on /query, /debug/stats, /metrics).
	Capture       CaptureState
	RunningConfig any // served as JSON at /debug/config
	Logger        *slog.Logger
	// Conns bounds connections and the time a connection may take to
	// complete its TLS handshake and send its request headers.
	Conns connlimit.Limits
}

// Certificate file names inside Config.CertPath.
const (
	CACertFile     = "ca_cert.pem"
	ServerCertFile = "server_cert.pem"
	ServerKeyFile  = "server_key.pem"
)

// MaxQueryBytes bounds the body of a POST /query.
const MaxQueryBytes = serve.MaxQueryBytes

// shutdownGrace is how long Serve waits, after cancelling every running
// query, for connections to go idle before closing them. Short: handlers
// other than queries take milliseconds, and a client's spare connection
// that never sent a request would otherwise hold shutdown for 5 s.
const shutdownGrace = time.Second

// Server serves the HTTPS API. Serve it once.
type Server struct {
	cfg    Config
	runner *serve.Runner
	log    *slog.Logger
	tls    *tls.Config
	mux    *http.ServeMux
	ready  chan struct{}
	// running counts handlers: http.Server.Close does not wait for them,
	// and Serve must not return before they end. (Not a WaitGroup: a
	// request read just before Close may start its handler during the
	// wait, which a WaitGroup forbids.)
	running   int
	runningMu sync.Mutex
	idle      *sync.Cond // signalled when running drops to 0

	mu   sync.Mutex
	addr net.Addr
}

// New loads the certificates and builds the handlers. A certificate that
// cannot be loaded is an error naming its file.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("server: no store")
	}
	tc, err := tlsconfig.Server(
		filepath.Join(cfg.CertPath, CACertFile),
		filepath.Join(cfg.CertPath, ServerCertFile),
		filepath.Join(cfg.CertPath, ServerKeyFile))
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:    cfg,
		runner: cfg.Runner,
		log:    log.With("component", "https"),
		tls:    tc,
		mux:    http.NewServeMux(),
		ready:  make(chan struct{}),
	}
	if s.runner == nil {
		reg := prometheus.NewRegistry()
		reg.MustRegister(NewCollector(cfg.Store, cfg.Capture))
		s.runner, err = serve.New(serve.Config{Store: cfg.Store, Metrics: metrics.New(reg), Logger: log})
		if err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
	}
	s.idle = sync.NewCond(&s.runningMu)
	s.mux.HandleFunc("POST /query", s.handleQuery)
	s.mux.HandleFunc("POST /explain", s.handleExplain)
	s.mux.HandleFunc("GET /debug/stats", s.handleStats)
	s.mux.HandleFunc("GET /debug/config", s.handleConfig)
	s.mux.HandleFunc("GET /debug/{thread}/files", s.handleFiles)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.runner.Metrics().Registry(), promhttp.HandlerOpts{}))
	return s, nil
}

// Serve listens on Config.Addr and serves until ctx is done. It returns an
// error if it cannot listen, and nil once ctx is done and every request
// has ended: running queries are cancelled, not waited for.
func (s *Server) Serve(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	return s.ServeListener(ctx, ln)
}

// ServeListener is Serve on a listener the caller opened; it closes ln.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener) error {
	// Request contexts derive from base, so cancelling it at shutdown
	// stops every running query at once.
	base, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	limits := s.cfg.Conns.WithDefaults()
	// Under TLS, so a query's records leave in one write per piece.
	ln = coalesce.Listener(connlimit.Wrap(ln, limits, s.log))
	hs := &http.Server{
		Handler:     http.HandlerFunc(s.serveHTTP),
		TLSConfig:   s.tls,
		BaseContext: func(net.Listener) context.Context { return base },
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return coalesce.NewContext(ctx, coalesce.Find(c))
		},
		// net/http bounds the TLS handshake by this too: a connection
		// that does not present a certificate and a request within it
		// gives its descriptor back.
		ReadHeaderTimeout: limits.HandshakeTimeout,
		IdleTimeout:       limits.IdleTimeout,
		// A connection reading its first request is past the handshake:
		// it keeps its place when the connection bound is reached.
		ConnState: func(c net.Conn, st http.ConnState) {
			if st == http.StateActive {
				connlimit.Authenticated(c)
			}
		},
		// Refused handshakes (wrong CA, expired, plain HTTP) land here.
		ErrorLog:  slog.NewLogLogger(s.log.Handler(), slog.LevelInfo),
		Protocols: http1Only(),
	}
	s.mu.Lock()
	s.addr = ln.Addr()
	s.mu.Unlock()
	close(s.ready)
	s.log.Info("serving HTTPS", "addr", ln.Addr().String())

	done := make(chan error, 1)
	go func() { done <- hs.ServeTLS(ln, "", "") }()
	select {
	case err := <-done:
		return fmt.Errorf("server: %w", err)
	case <-ctx.Done():
	}
	cancel()
	grace, stop := context.WithTimeout(context.Background(), shutdownGrace)
	defer stop()
	if err := hs.Shutdown(grace); err != nil {
		s.log.Debug("connections still open at shutdown; closing them", "err", err)
		hs.Close()
	}
	<-done
	s.runningMu.Lock()
	for s.running > 0 {
		s.idle.Wait()
	}
	s.runningMu.Unlock()
	s.log.Info("HTTPS stopped")
	return nil
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.runningMu.Lock()
	s.running++
	s.runningMu.Unlock()
	defer func() {
		s.runningMu.Lock()
		if s.running--; s.running == 0 {
			s.idle.Broadcast()
		}
		s.runningMu.Unlock()
	}()
	s.mux.ServeHTTP(w, r)
}

// Ready is closed once the server listens; Addr is valid from then on.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr returns the address the server listens on, or nil before Ready.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// http1Only offers only HTTP/1.1 in the TLS handshake. A client sends one
// query per request and reads one long stream, so HTTP/2's multiplexing
// gains nothing, while its framing and flow control cost: measured on a
// 507 MB result, curl got 437 MB/s over HTTP/2 (server 1.25 CPU s) and
// 805 MB/s over HTTP/1.1 (0.63 CPU s). Trailers work in both.
func http1Only() *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	return p
}

// Metrics returns the metrics the server's queries are counted in.
func (s *Server) Metrics() *metrics.Metrics { return s.runner.Metrics() }
