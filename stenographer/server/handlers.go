package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stenographer-ng/stenographer/stenographer/coalesce"
	"github.com/stenographer-ng/stenographer/stenographer/metrics"
	"github.com/stenographer-ng/stenographer/stenographer/pcap"
	"github.com/stenographer-ng/stenographer/stenographer/query"
	"github.com/stenographer-ng/stenographer/stenographer/serve"
)

// Request headers that limit a result, and the headers and trailers that
// report on it.
const (
	HeaderLimitPackets = "Steno-Limit-Packets"
	HeaderLimitBytes   = "Steno-Limit-Bytes"
	// HeaderFilter is a tcpdump expression the result is refined with on
	// the server; one that libpcap does not compile is a 400 with its
	// message.
	HeaderFilter = "Steno-Filter"
	// HeaderCapture is sent while capture is down: "down since <RFC 3339
	// time>", so the analyst knows recent packets are missing.
	HeaderCapture = "Steno-Capture"
	// TrailerTruncated is "true" when a limit cut the result short.
	TrailerTruncated = "Steno-Truncated"
	TrailerPackets   = "Steno-Packets"
	TrailerBytes     = "Steno-Bytes"
	// TrailerFileErrors counts files that could not be read: the result
	// lacks their packets. TrailerFileErrorDetail describes the first
	// few when there are any.
	TrailerFileErrors      = "Steno-File-Errors"
	TrailerFileErrorDetail = "Steno-File-Error-Detail"
)

// handleQuery answers POST /query. The PCAP header is sent before the
// query runs, so a failure after that cannot become an error status: the
// connection is aborted instead, and the client sees a broken transfer
// rather than a short PCAP that looks complete.
func (s *Server) handleQuery(w http.ResponseWriter, r *http.Request) {
	req := serve.Request{Transport: metrics.TransportHTTP,
		Log: s.log.With("remote", r.RemoteAddr)}
	var err error
	req.Limits, err = ParseLimits(r.Header)
	if err != nil {
		s.refuse(w, s.runner.Refuse(req, err))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxQueryBytes))
	if err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			err = fmt.Errorf("query longer than %d bytes (serve.MaxQueryBytes)", MaxQueryBytes)
			o := s.runner.Refuse(req, err)
			http.Error(w, oneLine(o.Err.Error()), http.StatusBadRequest)
			return
		}
		s.refuse(w, s.runner.Refuse(req, fmt.Errorf("reading query: %w", err)))
		return
	}
	req.Text = string(body)
	req.Pcapng = WantsPcapng(r.Header)
	req.Filter = strings.TrimSpace(r.Header.Get(HeaderFilter))
	req.BufferSize = resultPiece

	ctx := r.Context()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	if req.Pcapng {
		h.Set("Content-Type", ContentTypePcapng)
	}
	h.Set("Trailer", strings.Join([]string{TrailerTruncated, TrailerPackets, TrailerBytes,
		TrailerFileErrors, TrailerFileErrorDetail}, ", "))
	if down := serve.CaptureDown(s.cfg.Capture); down != "" {
		h.Set(HeaderCapture, down)
	}
	rc := http.NewResponseController(w)
	defer InterruptWrites(ctx, rc)()
	o := s.runner.Run(ctx, req, &flushWriter{w: w, rc: rc, conn: coalesce.FromContext(ctx)})
	switch o.Outcome {
	case metrics.OutcomeBadQuery, metrics.OutcomeBusy:
		h.Del("Trailer")
		s.refuse(w, o)
		return
	case metrics.OutcomeOK, metrics.OutcomeTruncated:
	default:
		panic(http.ErrAbortHandler)
	}
	h.Set(TrailerTruncated, strconv.FormatBool(o.Result.Truncated))
	h.Set(TrailerPackets, strconv.FormatInt(o.Result.Packets, 10))
	h.Set(TrailerBytes, strconv.FormatInt(o.Result.Bytes, 10))
	h.Set(TrailerFileErrors, strconv.Itoa(o.FileErrors()))
	if d := serve.FileErrorDetail(o.Result.Errors); d != "" {
		h.Set(TrailerFileErrorDetail, d)
	}
}

// handleExplain answers POST /explain: what the query in the body would
// touch (files, index bytes, candidate packets), found by reading indexes
// only, as text lines "name: value".
func (s *Server) handleExplain(w http.ResponseWriter, r *http.Request) {
	req := serve.Request{Transport: metrics.TransportHTTP, Log: s.log.With("remote", r.RemoteAddr)}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxQueryBytes))
	if err != nil {
		s.refuse(w, s.runner.Refuse(req, fmt.Errorf("reading query: %w", err)))
		return
	}
	req.Text = string(body)
	q, c, o := s.runner.Cost(r.Context(), req)
	switch o.Outcome {
	case metrics.OutcomeBadQuery, metrics.OutcomeBusy:
		s.refuse(w, o)
		return
	case metrics.OutcomeOK:
	default:
		http.Error(w, oneLine(o.Err.Error()), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	check := ""
	if c.TimeChecked {
		check = " (before a per-packet check: time, src/dst or not)"
	}
	fmt.Fprintf(w, "query: %s\nfiles: %d\nfiles skipped by time or interface: %d\nfiles skipped by summary: %d\nsummary bytes read: %d\nindexes read: %d\nindex bytes read: %d\n"+
		"candidate packets: %d%s\nfiles read whole (no indexed term): %d (%d bytes)\nunreadable files: %d\n",
		q, c.Files, c.FilesSkipped, c.FilesSummarySkipped, c.SummaryBytes, c.FilesOpened, c.IndexBytes, c.Candidates, check, c.ScanFiles, c.ScanBytes, len(c.Errors))
	if d := serve.FileErrorDetail(c.Errors); d != "" {
		fmt.Fprintf(w, "unreadable: %s\n", d)
	}
	if query.UnboundedNegation(q) {
		fmt.Fprintf(w, "negation bounded by no indexed term: every packet of the time range is read\n")
	}
	if c.Refused != nil {
		fmt.Fprintf(w, "refused: %s\n", oneLine(c.Refused.Error()))
	}
}

// ContentTypePcapng is the media type a client sends in Accept to get a
// pcapng result, and the Content-Type of that result.
const ContentTypePcapng = "application/x-pcapng"

// WantsPcapng reports whether the request's Accept names pcapng. PCAP
// stays the answer to anything else (no Accept, */*, octet-stream).
func WantsPcapng(h http.Header) bool {
	for _, v := range h.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			mt, params, _ := strings.Cut(part, ";")
			if strings.EqualFold(strings.TrimSpace(mt), ContentTypePcapng) && !refused(params) {
				return true
			}
		}
	}
	return false
}

// refused reports a media range's "q=0": the client does not want it.
func refused(params string) bool {
	for _, p := range strings.Split(params, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(k, "q") {
			q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return err == nil && q == 0
		}
	}
	return false
}

// InterruptWrites (also used by stenofleet) makes a write blocked on a client that stopped reading
// fail once ctx is done: cancelling a context alone does not interrupt
// it, an expired write deadline does. Call the returned func before the
// handler returns; after it, the response is never touched.
func InterruptWrites(ctx context.Context, rc *http.ResponseController) (stop func()) {
	var mu sync.Mutex
	finished := false
	stopAfter := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !finished {
			rc.SetWriteDeadline(time.Now())
		}
	})
	return func() {
		if !stopAfter() {
			mu.Lock()
			finished = true
			mu.Unlock()
		}
	}
}

// resultPiece is the size of the pieces a result is written in between
// flushes: each costs an HTTP chunk header, a flush through net/http's
// buffers and one write system call (its TLS records gathered by the
// connection), so large pieces are cheap per byte; 256 KiB keeps a
// query's buffers small next to its batch arena.
const resultPiece = 256 << 10

// flushWriter pushes every write to the client at once. pcap.Writer
// buffers a resultPiece itself, so each write here is already a large
// piece; its TLS records are gathered on conn (when the connection
// gathers) and leave with one system call.
type flushWriter struct {
	w    io.Writer
	rc   *http.ResponseController
	conn *coalesce.Conn
}

func (f *flushWriter) Write(p []byte) (n int, err error) {
	err = f.conn.Do(func() error {
		if n, err = f.w.Write(p); err != nil {
			return err
		}
		return f.rc.Flush()
	})
	return n, err
}

func (f *flushWriter) Flush() error { return f.conn.Do(f.rc.Flush) }

// ParseLimits reads the limit headers (stenofleet relays them too): absent means no limit; present,
// each must be one non-negative decimal integer (0 is no limit).
func ParseLimits(h http.Header) (pcap.Limits, error) {
	var l pcap.Limits
	for _, f := range []struct {
		name string
		dst  *int64
	}{{HeaderLimitPackets, &l.MaxPackets}, {HeaderLimitBytes, &l.MaxBytes}} {
		vals, ok := h[f.name]
		if !ok {
			continue
		}
		if len(vals) != 1 {
			return l, fmt.Errorf("header %s given %d times", f.name, len(vals))
		}
		n, err := strconv.ParseInt(strings.TrimSpace(vals[0]), 10, 64)
		if err != nil || n < 0 {
			return l, fmt.Errorf("header %s: %q is not a non-negative integer", f.name, vals[0])
		}
		*f.dst = n
	}
	return l, nil
}

// refuse answers a query that did not run with a one-line reason: 503
// with Retry-After when the server is busy, 400 otherwise.
func (s *Server) refuse(w http.ResponseWriter, o serve.Outcome) {
	code := http.StatusBadRequest
	if o.Outcome == metrics.OutcomeBusy {
		code = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "10")
	}
	http.Error(w, oneLine(o.Err.Error()), code)
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
