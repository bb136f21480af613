package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stenographer-ng/stenographer/stenographer/metrics"
	"github.com/stenographer-ng/stenographer/stenographer/pcap"
	"github.com/stenographer-ng/stenographer/stenographer/query"
)

// Request headers that limit a result, and the trailers that report on it.
const (
	HeaderLimitPackets = "Steno-Limit-Packets"
	HeaderLimitBytes   = "Steno-Limit-Bytes"
	// TrailerTruncated is "true" when a limit cut the result short.
	TrailerTruncated = "Steno-Truncated"
	TrailerPackets   = "Steno-Packets"
	TrailerBytes     = "Steno-Bytes"
)

// handleQuery answers POST /query. The PCAP header is sent before the
// query runs, so a failure after that cannot become an error status: the
// connection is aborted instead, and the client sees a broken transfer
// rather than a short PCAP that looks complete.
func (s *Server) handleQuery(w http.ResponseWriter, r *http.Request) {
	limits, err := parseLimits(r.Header)
	if err != nil {
		s.badQuery(w, r, "", err)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxQueryBytes))
	if err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			s.refuse(w, r, http.StatusRequestEntityTooLarge, "", fmt.Errorf("query longer than %d bytes", MaxQueryBytes))
			return
		}
		s.badQuery(w, r, "", fmt.Errorf("reading query: %w", err))
		return
	}
	text := string(body)
	q, err := query.Parse(text, time.Now())
	if err != nil {
		s.badQuery(w, r, text, err)
		return
	}

	ctx := r.Context()
	m := metrics.StartQuery(metrics.TransportHTTP)
	start := time.Now()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Trailer", TrailerTruncated+", "+TrailerPackets+", "+TrailerBytes)
	rc := http.NewResponseController(w)
	out := &flushWriter{w: w, rc: rc}
	defer interruptWrites(ctx, rc)()
	pw, err := pcap.NewWriter(out, limits)
	if err == nil {
		pw.SetFlushInterval(pcap.StreamFlushInterval)
		err = pw.Flush() // status and PCAP header leave now
	}
	if err != nil {
		m.End(metrics.OutcomeCanceled, 0, 0, 0)
		s.log.Info("query: client gone before the result started", "query", text, "remote", r.RemoteAddr, "err", err)
		return
	}
	res, err := s.cfg.Store.Query(ctx, q, pw)
	outcome := metrics.Outcome(ctx, res, err)
	if err != nil && out.failed {
		outcome = metrics.OutcomeCanceled // the client is gone
	}
	m.End(outcome, pw.Packets(), pw.Bytes(), metrics.FileErrors(res))
	attrs := []any{"query", text, "remote", r.RemoteAddr, "outcome", outcome,
		"packets", pw.Packets(), "bytes", pw.Bytes(), "duration", time.Since(start)}
	if res != nil {
		for _, ferr := range res.Errors {
			s.log.Warn("query: file could not be read; result lacks its packets", "query", text, "err", ferr)
		}
	}
	if err != nil {
		if outcome == metrics.OutcomeCanceled {
			s.log.Info("query canceled", append(attrs, "err", err)...)
		} else {
			s.log.Warn("query failed", append(attrs, "err", err)...)
		}
		panic(http.ErrAbortHandler)
	}
	s.log.Info("query", attrs...)
	h.Set(TrailerTruncated, strconv.FormatBool(res.Truncated))
	h.Set(TrailerPackets, strconv.FormatInt(res.Packets, 10))
	h.Set(TrailerBytes, strconv.FormatInt(res.Bytes, 10))
}

// interruptWrites makes a write blocked on a client that stopped reading
// fail once ctx is done: cancelling a context alone does not interrupt
// it, an expired write deadline does. Call the returned func before the
// handler returns; after it, the response is never touched.
func interruptWrites(ctx context.Context, rc *http.ResponseController) (stop func()) {
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

// flushWriter pushes every write to the client at once. pcap.Writer
// buffers 64 KiB itself, so each write here is already a large piece.
type flushWriter struct {
	w      io.Writer
	rc     *http.ResponseController
	failed bool // a write failed: the client is gone
}

func (f *flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = f.rc.Flush()
	}
	if err != nil {
		f.failed = true
	}
	return n, err
}

// parseLimits reads the limit headers: absent means no limit; present,
// each must be one non-negative decimal integer (0 is no limit).
func parseLimits(h http.Header) (pcap.Limits, error) {
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

func (s *Server) badQuery(w http.ResponseWriter, r *http.Request, text string, err error) {
	s.refuse(w, r, http.StatusBadRequest, text, err)
}

// refuse answers a query that will not run with a one-line reason.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, code int, text string, err error) {
	metrics.StartQuery(metrics.TransportHTTP).End(metrics.OutcomeBadQuery, 0, 0, 0)
	s.log.Info("query refused", "query", text, "remote", r.RemoteAddr, "err", err)
	http.Error(w, oneLine(err.Error()), code)
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func (s *Server) handleStats(w http.ResponseWriter, _ *http.Request) {
	now := time.Now()
	writeJSON(w, struct {
		Time    time.Time                      `json:"time"`
		Threads []metrics.ThreadStat           `json:"threads"`
		Queries map[string]metrics.QueryCounts `json:"queries"`
	}{now, metrics.ThreadStats(s.cfg.Store, now), metrics.Queries()})
}

func (s *Server) handleConfig(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, s.cfg.RunningConfig)
}

// handleFiles answers GET /debug/t<i>/files with thread i's file pairs.
func (s *Server) handleFiles(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("thread")
	i, err := strconv.Atoi(strings.TrimPrefix(name, "t"))
	if !strings.HasPrefix(name, "t") || err != nil || i < 0 || i >= s.cfg.Store.Threads() || name != "t"+strconv.Itoa(i) {
		http.NotFound(w, r)
		return
	}
	writeJSON(w, s.cfg.Store.Files(i))
}

func writeJSON(w http.ResponseWriter, v any) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, oneLine(err.Error()), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(data, '\n'))
}
