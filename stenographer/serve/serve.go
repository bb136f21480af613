// Package serve runs one query for a transport: the one path that HTTPS,
// gRPC and stenoquery share, so they agree on limits, admission, metrics,
// outcome, logging and flushing.
//
// Stage: parsed request → PCAP (or pcapng) on a transport's sink. Input: the query
// text, its limits and a Sink (an io.Writer with Flush). Output: an
// Outcome saying what was sent and how the query ended; the transport
// turns it into a status, trailers or an exit code.
package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/stenographer-ng/stenographer/stenographer/bpffilter"
	"github.com/stenographer-ng/stenographer/stenographer/metrics"
	"github.com/stenographer-ng/stenographer/stenographer/pcap"
	"github.com/stenographer-ng/stenographer/stenographer/query"
	"github.com/stenographer-ng/stenographer/stenographer/store"
)

// MaxQueryBytes bounds a query's text on every transport. Real queries
// are far shorter; the bound keeps a hostile query from costing the
// parser (and the stack) megabytes.
const MaxQueryBytes = 1 << 20

// DefaultMaxRunning is how many queries run at once unless configured:
// each holds batch arenas, read buffers and open files (a few MB), and a
// 2-core sensor gains nothing from more disk readers than this.
const DefaultMaxRunning = 16

// Sink is where a result's PCAP stream goes. Flush hands what was written
// to the client now (an HTTP flush, a gRPC message).
type Sink interface {
	io.Writer
	Flush() error
}

// Config configures a Runner.
type Config struct {
	Store   *store.Store
	Metrics *metrics.Metrics
	// MaxRunning bounds the queries running at once over every transport
	// sharing the Runner (0: DefaultMaxRunning). A query beyond it waits
	// for a slot for up to MaxWait, then is refused as busy.
	MaxRunning int
	MaxWait    time.Duration // 0: DefaultMaxWait
	Logger     *slog.Logger
}

// DefaultMaxWait is how long a query waits for a running slot: long
// enough to ride out a burst of short queries, short enough that a client
// is told soon that the sensor is busy.
const DefaultMaxWait = 10 * time.Second

// Runner runs queries. Safe for concurrent use; share one between the
// servers of a process so MaxRunning bounds them together.
type Runner struct {
	cfg   Config
	log   *slog.Logger
	slots chan struct{}
}

// New returns a Runner. Store and Metrics are required.
func New(cfg Config) (*Runner, error) {
	if cfg.Store == nil || cfg.Metrics == nil {
		return nil, errors.New("serve: a store and metrics are required")
	}
	if cfg.MaxRunning < 0 || cfg.MaxWait < 0 {
		return nil, fmt.Errorf("serve: MaxRunning %d and MaxWait %v must not be negative", cfg.MaxRunning, cfg.MaxWait)
	}
	if cfg.MaxRunning == 0 {
		cfg.MaxRunning = DefaultMaxRunning
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = DefaultMaxWait
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Runner{cfg: cfg, log: log, slots: make(chan struct{}, cfg.MaxRunning)}, nil
}

// Store returns the store queries run against.
func (r *Runner) Store() *store.Store { return r.cfg.Store }

// Metrics returns the metrics queries are counted in.
func (r *Runner) Metrics() *metrics.Metrics { return r.cfg.Metrics }

// MaxRunning returns the bound on queries running at once.
func (r *Runner) MaxRunning() int { return r.cfg.MaxRunning }

// Request is one query as a transport received it.
type Request struct {
	Transport string // metrics.TransportHTTP, metrics.TransportGRPC, ...
	Text      string
	Limits    pcap.Limits
	// Pcapng asks for a pcapng result (an interface block per capture
	// interface, each packet naming its own) instead of PCAP.
	Pcapng bool
	// Filter, when set, is a tcpdump expression the result is refined
	// with on the server (bpffilter): only the packets it accepts are sent.
	Filter string
	// BufferSize is the size of the pieces the result is handed to the
	// sink in, between flushes (0: DefaultBufferSize).
	BufferSize int
	Log        *slog.Logger // carries the transport's attributes (remote, uid); nil: the Runner's
}

// DefaultBufferSize is the result writer's buffer when a Request names
// none.
const DefaultBufferSize = 64 << 10

// ErrBusy is wrapped by the error of a query refused because MaxRunning
// queries ran for all of MaxWait.
var ErrBusy = errors.New("too many queries running")

// Outcome is how a query ended.
type Outcome struct {
	// Outcome is a metrics.Outcome* value. OutcomeBadQuery and
	// OutcomeBusy mean nothing was written to the sink.
	Outcome string
	// Result is the store's summary (nil when the query did not run).
	Result *store.Result
	// Packets and Bytes are what reached the sink (also on failure).
	Packets, Bytes int64
	// Err is why the query was refused, failed or was cancelled.
	Err error
}

// FileErrors returns how many files the query could not read.
func (o Outcome) FileErrors() int {
	if o.Result == nil {
		return 0
	}
	return len(o.Result.Errors)
}

// Refuse counts and logs a request a transport rejected before Run (a bad
// header, an unreadable body) and returns its Outcome.
func (r *Runner) Refuse(req Request, err error) Outcome {
	r.cfg.Metrics.Refused(req.Transport, metrics.OutcomeBadQuery)
	r.logger(req).Info("query refused", "query", req.Text, "err", err)
	return Outcome{Outcome: metrics.OutcomeBadQuery, Err: err}
}

func (r *Runner) logger(req Request) *slog.Logger {
	if req.Log != nil {
		return req.Log
	}
	return r.log
}

// Parse checks a query's size and parses it, as every transport must
// before running it.
func Parse(text string, now time.Time) (query.Node, error) {
	if len(text) > MaxQueryBytes {
		return nil, fmt.Errorf("query is %d bytes; at most %d (serve.MaxQueryBytes) allowed", len(text), MaxQueryBytes)
	}
	return query.Parse(text, now)
}

// Run parses req, waits for a running slot, then streams the result to
// sink: the PCAP file header at once (so a transport's status leaves
// before the query runs), the first packet as soon as it is found, and
// then whatever is buffered at least every pcap.StreamFlushInterval.
// A bad query or a busy server returns before sink is touched.
func (r *Runner) Run(ctx context.Context, req Request, sink Sink) Outcome {
	log := r.logger(req)
	q, err := Parse(req.Text, time.Now())
	if err != nil {
		return r.Refuse(req, err)
	}
	var filter *bpffilter.Filter
	if req.Filter != "" {
		if filter, err = bpffilter.Compile(req.Filter); err != nil {
			return r.Refuse(req, err)
		}
	}
	if err := r.cfg.Store.CheckScan(q); err != nil {
		return r.Refuse(req, err)
	}
	release, refused := r.enter(ctx, req)
	if refused != nil {
		return *refused
	}
	defer release()

	m := r.cfg.Metrics.StartQuery(req.Transport)
	start := time.Now()
	out := &trackedSink{Sink: sink}
	var o Outcome
	pw, err := r.newOutput(out, req)
	if err == nil {
		pw.SetFlushInterval(pcap.StreamFlushInterval)
		if err = pw.Flush(); err == nil {
			var dst pcap.Output = pw
			if filter != nil {
				dst = filter.Output(pw)
			}
			o.Result, err = r.cfg.Store.Query(ctx, q, dst)
		}
		o.Packets, o.Bytes = pw.Packets(), pw.Bytes()
	}
	res := o.Result
	o.Err = err
	o.Outcome = metrics.Outcome(ctx, res != nil && res.Truncated, err)
	if err != nil && out.failed {
		o.Outcome = metrics.OutcomeCanceled // the client is gone
	}
	m.End(o.Outcome, o.Packets, o.Bytes, o.FileErrors())

	attrs := []any{"query", req.Text, "filter", req.Filter, "outcome", o.Outcome, "packets", o.Packets, "bytes", o.Bytes,
		"duration", time.Since(start)}
	for _, ferr := range o.resultErrors() {
		log.Warn("query: file could not be read; result lacks its packets", "query", req.Text, "err", ferr)
	}
	switch {
	case o.Outcome == metrics.OutcomeCanceled:
		log.Info("query canceled", append(attrs, "err", err)...)
	case err != nil:
		log.Warn("query failed", append(attrs, "err", err)...)
	default:
		log.Info("query", attrs...)
	}
	return o
}

// Cost parses req and, in a running slot like any query (it reads every
// index of its time range), returns what running it would touch without
// reading a packet: the --explain of a remote client. The Outcome is
// OutcomeBadQuery, OutcomeBusy, OutcomeCanceled, OutcomeError or OutcomeOK.
func (r *Runner) Cost(ctx context.Context, req Request) (query.Node, *store.Cost, Outcome) {
	log := r.logger(req)
	q, err := Parse(req.Text, time.Now())
	if err != nil {
		return nil, nil, r.Refuse(req, err)
	}
	release, refused := r.enter(ctx, req)
	if refused != nil {
		return nil, nil, *refused
	}
	defer release()
	start := time.Now()
	c, err := r.cfg.Store.Cost(ctx, q)
	o := Outcome{Outcome: metrics.Outcome(ctx, false, err), Err: err}
	log.Info("explain", "query", req.Text, "outcome", o.Outcome, "files_opened", c.FilesOpened,
		"candidates", c.Candidates, "duration", time.Since(start))
	return q, c, o
}

// newOutput writes the result's header in the format req asks for.
func (r *Runner) newOutput(w io.Writer, req Request) (pcap.Output, error) {
	size := req.BufferSize
	if size <= 0 {
		size = DefaultBufferSize
	}
	if req.Pcapng {
		return pcap.NewNgWriterSize(w, req.Limits, r.cfg.Store.Interfaces(), size)
	}
	return pcap.NewWriterSize(w, req.Limits, size)
}

func (o Outcome) resultErrors() []error {
	if o.Result == nil {
		return nil
	}
	return o.Result.Errors
}

// enter takes a running slot for req, or counts and logs why it could
// not (busy, or the client left while waiting) and returns that Outcome.
func (r *Runner) enter(ctx context.Context, req Request) (release func(), refused *Outcome) {
	release, err := r.admit(ctx, req.Transport)
	if err == nil {
		return release, nil
	}
	outcome := metrics.OutcomeBusy
	if ctx.Err() != nil {
		outcome = metrics.OutcomeCanceled
	}
	r.cfg.Metrics.Refused(req.Transport, outcome)
	r.logger(req).Warn("query refused", "query", req.Text, "err", err)
	return nil, &Outcome{Outcome: outcome, Err: err}
}

// admit takes a running slot, waiting up to MaxWait for one.
func (r *Runner) admit(ctx context.Context, transport string) (release func(), err error) {
	defer r.cfg.Metrics.StartWait(transport)()
	release = func() { <-r.slots }
	select {
	case r.slots <- struct{}{}:
		return release, nil
	default:
	}
	wait := time.NewTimer(r.cfg.MaxWait)
	defer wait.Stop()
	select {
	case r.slots <- struct{}{}:
		return release, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for one of %d running queries to end: %w", r.cfg.MaxRunning, ctx.Err())
	case <-wait.C:
		return nil, fmt.Errorf("%w: %d running (the limit) for %v; try again later", ErrBusy, r.cfg.MaxRunning, r.cfg.MaxWait)
	}
}

// trackedSink remembers that a write to the client failed: the client is
// gone, and the query's error is its absence, not a server fault.
type trackedSink struct {
	Sink
	failed bool
}

func (t *trackedSink) Write(p []byte) (int, error) {
	n, err := t.Sink.Write(p)
	if err != nil {
		t.failed = true
	}
	return n, err
}

func (t *trackedSink) Flush() error {
	err := t.Sink.Flush()
	if err != nil {
		t.failed = true
	}
	return err
}

// CaptureState is how capture is doing, as the supervisor knows it: up,
// or down (stenotype not running, restarting, stale) since a time. The
// servers tell analysts on every query while it is down.
type CaptureState interface {
	CaptureState() (up bool, since time.Time)
}

// CaptureDown returns "down since <RFC 3339 time>" while cs says capture
// is down, and "" while it is up or cs is nil.
func CaptureDown(cs CaptureState) string {
	if cs == nil {
		return ""
	}
	up, since := cs.CaptureState()
	if up {
		return ""
	}
	return "down since " + since.UTC().Format(time.RFC3339)
}

// maxDetailBytes bounds FileErrorDetail.
const maxDetailBytes = 1024

// FileErrorDetail describes the files a query could not read in one
// bounded line, for a trailer.
func FileErrorDetail(errs []error) string {
	var b strings.Builder
	for i, e := range errs {
		part := strings.Join(strings.Fields(e.Error()), " ")
		if i > 0 {
			part = "; " + part
		}
		if b.Len()+len(part) > maxDetailBytes {
			fmt.Fprintf(&b, "; and %d more", len(errs)-i)
			break
		}
		b.WriteString(part)
	}
	return b.String()
}
