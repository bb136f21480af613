package fleet

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stenographer-ng/stenographer/stenographer/bpffilter"
	"github.com/stenographer-ng/stenographer/stenographer/fleet/auth"
	"github.com/stenographer-ng/stenographer/stenographer/fleet/config"
	"github.com/stenographer-ng/stenographer/stenographer/fleet/docket"
	"github.com/stenographer-ng/stenographer/stenographer/fleet/web"
	"github.com/stenographer-ng/stenographer/stenographer/server"
	"github.com/stenographer-ng/stenographer/stenographer/tlsconfig"
)

// Trailers of a merged result, besides the sensors' own Steno-Truncated,
// Steno-Packets and Steno-Bytes (here about the merged stream).
const (
	// TrailerMissing lists the sensors whose packets are missing, in
	// full or in part: "name=reason, name=reason".
	TrailerMissing = "Steno-Missing-Sensors"
	// TrailerSensorFileErrors relays each sensor's Steno-File-Errors:
	// "name=N, ...", for the sensors that sent one.
	TrailerSensorFileErrors = "Steno-Sensor-File-Errors"
	// TrailerSensorTruncated relays each sensor's Steno-Truncated.
	TrailerSensorTruncated = "Steno-Sensor-Truncated"
)

// MaxQueryBytes bounds a request body (query text, form or JSON).
const MaxQueryBytes = 64 << 10

// Authenticator says who sent a request; ok false refuses it (401). The
// default reads the verified client certificate's CN; a password and
// session scheme for browsers plugs in here.
type Authenticator func(r *http.Request) (user string, ok bool)

// CertUser is the default Authenticator: the TLS layer already verified
// the client certificate against CLIENT_CA, so its CN is the user.
func CertUser(r *http.Request) (string, bool) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return "", false
	}
	return r.TLS.PeerCertificates[0].Subject.CommonName, true
}

type userKey struct{}

// User returns the authenticated user of a request's context.
func User(ctx context.Context) string {
	u, _ := ctx.Value(userKey{}).(string)
	return u
}

// Server is stenofleet's HTTPS API.
type Server struct {
	fleet *Fleet
	cfg   *config.Config
	log   *slog.Logger
	auth  Authenticator
	// login, when PASSWORD_FILE is set, takes over authentication from
	// auth: certificates or password sessions.
	login *auth.Auth
	mux   *http.ServeMux

	mu    sync.Mutex
	addr  net.Addr
	ready chan struct{}
}

// NewServer sets up the API; with PASSWORD_FILE it loads the passwords
// and serves the login page at /login and /logout.
func NewServer(cfg *config.Config, f *Fleet, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{fleet: f, cfg: cfg, log: log, auth: CertUser, mux: http.NewServeMux(), ready: make(chan struct{})}
	if cfg.PasswordFile != "" {
		a, err := auth.New(auth.Config{PasswordFile: cfg.PasswordFile, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("fleet: PASSWORD_FILE %s: %w", cfg.PasswordFile, err)
		}
		s.login = a
		// With methods, as the job API's catch-all "GET /" has them.
		s.mux.Handle("GET "+auth.LoginPath, a.LoginHandler())
		s.mux.Handle("POST "+auth.LoginPath, a.LoginHandler())
		s.mux.Handle("POST "+auth.LogoutPath, a.LogoutHandler())
	}
	s.Handle("GET /session", http.HandlerFunc(s.handleSession))
	s.Handle("GET /sensors", http.HandlerFunc(s.handleSensors))
	s.Handle("GET /sensors/history", http.HandlerFunc(s.handleHistory))
	s.Handle("POST /preview", http.HandlerFunc(s.handlePreview))
	page := web.Handler()
	s.Handle("GET /{$}", page)
	s.Handle("GET /ui/", page)
	s.Handle("POST /query", http.HandlerFunc(s.handleQuery))
	s.Handle("GET /pcap/{terms...}", http.HandlerFunc(s.handlePcap))
	s.Handle("POST /api/", http.HandlerFunc(s.handleAPI))
	s.Handle("GET /stats", http.HandlerFunc(s.handleStats))
	s.Handle("GET /metrics", promhttp.HandlerFor(f.Metrics().Registry(), promhttp.HandlerOpts{}))
	return s, nil
}

// ErrNoPasswordFile is returned by ReloadPasswords when the config has no
// PASSWORD_FILE.
var ErrNoPasswordFile = errors.New("fleet: no PASSWORD_FILE configured")

// ReloadPasswords re-reads PASSWORD_FILE (stenofleet does at SIGHUP). On
// error the users loaded before stay in force.
func (s *Server) ReloadPasswords() error {
	if s.login == nil {
		return ErrNoPasswordFile
	}
	if err := s.login.Reload(); err != nil {
		return fmt.Errorf("fleet: PASSWORD_FILE %s: %w", s.cfg.PasswordFile, err)
	}
	return nil
}

// SetAuthenticator replaces the certificate CN check (before Serve); it
// has no effect when PASSWORD_FILE is set.
func (s *Server) SetAuthenticator(a Authenticator) { s.auth = a }

// Handle mounts h at pattern (http.ServeMux syntax) behind the same
// authentication as every other handler; the user is in User(ctx).
func (s *Server) Handle(pattern string, h http.Handler) {
	if s.login != nil {
		s.mux.Handle(pattern, s.login.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, auth.User(r))))
		})))
		return
	}
	s.mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, ok := s.auth(r)
		if !ok {
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, user)))
	}))
}

// Fleet returns the fleet the server queries (for handlers mounted later).
func (s *Server) Fleet() *Fleet { return s.fleet }

// Serve listens on the config's LISTEN and serves until ctx is done.
func (s *Server) Serve(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("fleet: LISTEN %s: %w", s.cfg.Listen, err)
	}
	return s.ServeListener(ctx, ln)
}

// ServeListener serves on ln (closed at return) until ctx is done; running
// queries are cancelled.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener) error {
	tc, err := tlsconfig.Server(s.cfg.ClientCA, s.cfg.TLSCert, s.cfg.TLSKey)
	if err != nil {
		ln.Close()
		return fmt.Errorf("fleet: CLIENT_CA/TLS_CERT/TLS_KEY: %w", err)
	}
	if s.login != nil {
		// Browsers come without a certificate; one that is shown must
		// still verify against CLIENT_CA.
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	}
	base, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	hs := &http.Server{
		Handler:           s.mux,
		TLSConfig:         tc,
		BaseContext:       func(net.Listener) context.Context { return base },
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelInfo),
	}
	s.mu.Lock()
	s.addr = ln.Addr()
	s.mu.Unlock()
	close(s.ready)
	s.log.Info("serving HTTPS", "addr", ln.Addr().String(), "sensors", len(s.fleet.sensors))
	done := make(chan error, 1)
	go func() { done <- hs.ServeTLS(ln, "", "") }()
	select {
	case err := <-done:
		return fmt.Errorf("fleet: %w", err)
	case <-ctx.Done():
	}
	cancel()
	grace, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	if err := hs.Shutdown(grace); err != nil {
		hs.Close()
	}
	<-done
	return nil
}

// Ready is closed once the server listens.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr is the listening address (nil before Ready).
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

func (s *Server) handleQuery(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxQueryBytes))
	if err != nil {
		http.Error(w, fmt.Sprintf("reading the query: %v", err), http.StatusBadRequest)
		return
	}
	s.run(w, r, string(body), nil)
}

func (s *Server) handlePcap(w http.ResponseWriter, r *http.Request) {
	q, err := docket.FromPath(r.PathValue("terms"))
	if err != nil {
		s.badRequest(w, r, err)
		return
	}
	s.run(w, r, q.Text, q.Clauses)
}

func (s *Server) handleAPI(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, MaxQueryBytes)
	var q docket.Query
	var err error
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "application/json" {
		q, err = docket.FromJSON(r.Body)
	} else if err = r.ParseForm(); err == nil {
		q, err = docket.FromForm(r.PostForm)
	}
	if err != nil {
		s.badRequest(w, r, err)
		return
	}
	s.run(w, r, q.Text, q.Clauses)
}

func (s *Server) badRequest(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Info("query refused", "user", User(r.Context()), "err", err)
	s.fleet.metrics.QueryDone(OutcomeBadQuery, 0)
	http.Error(w, oneLine(err.Error()), http.StatusBadRequest)
}

// selection reads ?sensors=a,b (names or tags).
func selection(r *http.Request) []string {
	var sel []string
	for _, v := range r.URL.Query()["sensors"] {
		for _, x := range strings.Split(v, ",") {
			if x = strings.TrimSpace(x); x != "" {
				sel = append(sel, x)
			}
		}
	}
	return sel
}

// run answers one query with the merged PCAP. Trailers are declared
// before the first byte (HTTP needs that) and dropped when the query is
// refused before any.
func (s *Server) run(w http.ResponseWriter, r *http.Request, text string, _ []string) {
	limits, err := server.ParseLimits(r.Header)
	if err != nil {
		s.badRequest(w, r, err)
		return
	}
	req := Request{Query: text, Sensors: selection(r), Limits: limits, User: User(r.Context()),
		Filter: strings.TrimSpace(r.Header.Get(server.HeaderFilter))}
	if req.Filter != "" {
		// Refused here, once, rather than by every sensor; without a
		// libpcap here, the sensors judge it.
		if _, err := bpffilter.Compile(req.Filter); err != nil && !errors.Is(err, bpffilter.ErrUnavailable) {
			s.badRequest(w, r, err)
			return
		}
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Trailer", strings.Join([]string{server.TrailerTruncated, server.TrailerPackets, server.TrailerBytes,
		TrailerMissing, TrailerSensorFileErrors, TrailerSensorTruncated}, ", "))
	rc := http.NewResponseController(w)
	// A client that stops reading must not hold the sensors' streams open.
	defer server.InterruptWrites(r.Context(), rc)()
	start := time.Now()
	rep, err := s.fleet.Query(r.Context(), req, &flushWriter{w: w, rc: rc})
	log := s.log.With("user", req.User, "query", text, "sensors", req.Sensors,
		"packets", rep.Packets, "bytes", rep.Bytes, "duration", time.Since(start).Round(time.Millisecond))
	var re *RefusedError
	switch {
	case errors.As(err, &re):
		h.Del("Trailer")
		code, outcome := http.StatusBadGateway, OutcomeFailed
		if re.Refused {
			code, outcome = http.StatusBadRequest, OutcomeBadQuery
		}
		h.Set(TrailerMissing, strings.Join(rep.Missing(), ", "))
		log.Info("query not run", "err", err)
		s.fleet.metrics.QueryDone(outcome, 0)
		http.Error(w, oneLine(err.Error()), code)
		return
	case errors.Is(err, ErrNoSensors):
		h.Del("Trailer")
		s.badRequest(w, r, err)
		return
	case err != nil:
		log.Info("query aborted", "err", err)
		s.fleet.metrics.QueryDone(OutcomeFailed, rep.Bytes)
		panic(http.ErrAbortHandler)
	}
	missing := rep.Missing()
	outcome := OutcomeOK
	if len(missing) > 0 {
		outcome = OutcomePartial
	}
	var fileErrs, truncs []string
	for _, sr := range rep.Sensors {
		if sr.FileErrors != "" {
			fileErrs = append(fileErrs, sr.Name+"="+sr.FileErrors)
		}
		if sr.Truncated != "" {
			truncs = append(truncs, sr.Name+"="+sr.Truncated)
		}
	}
	h.Set(server.TrailerTruncated, strconv.FormatBool(rep.Truncated))
	h.Set(server.TrailerPackets, strconv.FormatInt(rep.Packets, 10))
	h.Set(server.TrailerBytes, strconv.FormatInt(rep.Bytes, 10))
	h.Set(TrailerMissing, strings.Join(missing, ", "))
	h.Set(TrailerSensorFileErrors, strings.Join(fileErrs, ", "))
	h.Set(TrailerSensorTruncated, strings.Join(truncs, ", "))
	log.Info("query", "outcome", outcome, "missing", missing)
	s.fleet.metrics.QueryDone(outcome, rep.Bytes)
}

// flushWriter sends every write on at once: pcap.Writer already batches
// into 64 KiB pieces and flushes by its own schedule.
type flushWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (f *flushWriter) Write(p []byte) (int, error) { return f.w.Write(p) }
func (f *flushWriter) Flush() error                { return f.rc.Flush() }

// handleStats answers GET /stats: every sensor's /debug/stats (text
// "name<TAB>value" lines) as one JSON object per sensor with a "sensor"
// field; a sensor that does not answer gets {"sensor", "error"}.
func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	out := make([]map[string]any, len(s.fleet.sensors))
	var wg sync.WaitGroup
	for i, sn := range s.fleet.sensors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := sn.stats(r.Context(), s.fleet.timeout)
			if err != nil {
				st = map[string]any{"error": err.Error()}
			}
			st["sensor"] = sn.cfg.Name
			out[i] = st
		}()
	}
	wg.Wait()
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(out)
}

func (sn *sensor) stats(ctx context.Context, timeout time.Duration) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(ctx, min(timeout, 30*time.Second))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sn.base+"/debug/stats", nil)
	if err != nil {
		return nil, err
	}
	resp, err := sn.client.Do(req)
	if err != nil {
		return nil, describe(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /debug/stats: HTTP %d", resp.StatusCode)
	}
	st := map[string]any{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 1<<20))
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(val, 10, 64); err == nil {
			st[name] = n
		} else {
			st[name] = val
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("GET /debug/stats: %w", err)
	}
	return st, nil
}

// handleSession answers GET /session with the user and the CSRF token the
// page must send on POSTs ("" for certificate users, who need none).
func (s *Server) handleSession(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(map[string]string{"user": User(r.Context()), "csrf": auth.CSRFToken(r)})
}
