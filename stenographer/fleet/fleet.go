// Package fleet is stenofleet's core: one query fanned out to many
// sensors' mutual-TLS HTTPS /query and their PCAP streams merged, as they
// arrive, into one PCAP in timestamp order.
//
// Stage: analyst query → sensors → merged PCAP. Memory is bounded: each
// sensor's stream is read one record at a time, in place in its read
// buffer (256 KiB, the largest record), so the merge holds one pending
// packet per sensor plus those buffers and one write buffer (1 MiB),
// whatever the result's size.
package fleet

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stenographer-ng/stenographer/stenographer/fleet/config"
	"github.com/stenographer-ng/stenographer/stenographer/pcap"
	"github.com/stenographer-ng/stenographer/stenographer/server"
	"github.com/stenographer-ng/stenographer/stenographer/tlsconfig"
)

// Request is one query for the fleet.
type Request struct {
	Query string
	// Sensors are sensor names or tags; empty means every sensor.
	Sensors []string
	Limits  pcap.Limits
	// Filter is a tcpdump expression each sensor refines its result with
	// (the Steno-Filter header, passed through as it is).
	Filter string
	// User is who asked, for the log.
	User string
}

// Report says how each selected sensor did.
type Report struct {
	Sensors []SensorResult
	// Truncated is true when a limit cut the merged result short.
	Truncated bool
	// Packets and Bytes count the merged result (Bytes with headers).
	Packets, Bytes int64
}

// SensorResult is one sensor's part of a query.
type SensorResult struct {
	Name           string
	Packets, Bytes int64
	Duration       time.Duration
	Err            string // "" when ok
	Refused        bool   // the sensor said the query is invalid (400)
	// FileErrors and Truncated relay the sensor's Steno-File-Errors and
	// Steno-Truncated trailers ("" when it sent none).
	FileErrors, Truncated string
}

// RefusedError is returned when no sensor ran the query: every one
// refused it as invalid (Refused) or failed. Nothing was written.
type RefusedError struct {
	Refused bool   // every sensor said the query is invalid
	Reason  string // the first sensor's reason
}

func (e *RefusedError) Error() string {
	if e.Refused {
		return "every sensor refused the query: " + e.Reason
	}
	return "no sensor answered the query: " + e.Reason
}

// writeBufferSize is the merged stream's write buffer: every write to
// the response costs a hand-over to net/http's frame writer, so fewer and
// larger ones; the flush interval still bounds how long a packet waits.
const writeBufferSize = 1 << 20

// ErrNoSensors is returned when a selection matches no sensor.
var ErrNoSensors = errors.New("fleet: no sensor matches the selection")

// Fleet knows the sensors and how to reach them.
type Fleet struct {
	sensors []*sensor
	timeout time.Duration
	log     *slog.Logger
	metrics *Metrics
	health  *health
}

type sensor struct {
	cfg    config.Sensor
	client *http.Client
	base   string
}

// Options are the parts of a Fleet that are not in the config file.
type Options struct {
	Logger  *slog.Logger
	Metrics *Metrics // nil: a private registry
	// Dial replaces the dialer to the sensors (tests reach namespaces).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// New loads every sensor's client certificate. A file that cannot be
// loaded is an error naming the sensor and the file.
func New(cfg *config.Config, opts Options) (*Fleet, error) {
	f := &Fleet{timeout: time.Duration(cfg.SensorTimeout), log: opts.Logger, metrics: opts.Metrics}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	if f.metrics == nil {
		f.metrics = NewMetrics(nil)
	}
	for _, sc := range cfg.Sensors {
		tc, err := tlsconfig.Client(sc.CA, sc.Cert, sc.Key, sc.ServerName)
		if err != nil {
			return nil, fmt.Errorf("fleet: sensor %s: %w", sc.Name, err)
		}
		tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: false,
			MaxIdleConnsPerHost: 8, IdleConnTimeout: 90 * time.Second}
		if opts.Dial != nil {
			tr.DialContext = opts.Dial
		}
		f.sensors = append(f.sensors, &sensor{cfg: sc, client: &http.Client{Transport: tr},
			base: "https://" + sc.Addr()})
	}
	f.health = newHealth(cfg, len(f.sensors))
	return f, nil
}

// Metrics returns the fleet's metrics.
func (f *Fleet) Metrics() *Metrics { return f.metrics }

// Sensors returns the configured sensor names, in config order.
func (f *Fleet) Sensors() []string {
	var n []string
	for _, s := range f.sensors {
		n = append(n, s.cfg.Name)
	}
	return n
}

// selectSensors picks the sensors named, or tagged, by sel.
func (f *Fleet) selectSensors(sel []string) ([]*sensor, error) {
	if len(sel) == 0 {
		return f.sensors, nil
	}
	want := map[string]bool{}
	for _, s := range sel {
		if s = strings.TrimSpace(s); s != "" {
			want[s] = true
		}
	}
	matched := map[string]bool{}
	var out []*sensor
	for _, s := range f.sensors {
		hit := want[s.cfg.Name]
		matched[s.cfg.Name] = matched[s.cfg.Name] || hit
		for _, t := range s.cfg.Tags {
			if want[t] {
				hit, matched[t] = true, true
			}
		}
		if hit {
			out = append(out, s)
		}
	}
	for w := range want {
		if !matched[w] {
			return nil, fmt.Errorf("%w: %q is neither a sensor name nor a tag", ErrNoSensors, w)
		}
	}
	if len(out) == 0 {
		return nil, ErrNoSensors
	}
	return out, nil
}

// Query runs one query on the selected sensors and streams the merged PCAP into w.
//
// It writes nothing until some sensor answers with a PCAP; when none
// does, it returns a *RefusedError. A sensor that fails, times out or
// refuses is reported in the Report and does not fail the others. The
// returned error is otherwise about w (the client went away) or the
// selection. Cancelling ctx cancels every sensor request.
func (f *Fleet) Query(ctx context.Context, q Request, w io.Writer) (Report, error) {
	sel, err := f.selectSensors(q.Sensors)
	if err != nil {
		return Report{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	srcs := make([]*source, len(sel))
	answered := make(chan *source, len(sel))
	for i, s := range sel {
		srcs[i] = &source{f: f, s: s, start: start, res: SensorResult{Name: s.cfg.Name}, opened: make(chan struct{})}
		go srcs[i].open(ctx, q, answered)
	}
	// Wait for the first PCAP, or for every sensor to have failed.
	ok := false
	for range sel {
		if src := <-answered; src.rd != nil {
			ok = true
			break
		}
	}
	if !ok {
		rep := f.report(srcs, nil)
		return rep, f.refusal(rep)
	}
	pw, err := pcap.NewWriterSize(w, q.Limits, writeBufferSize)
	if err != nil {
		cancel()
		return f.finish(srcs, nil, fmt.Errorf("writing the PCAP header: %w", err))
	}
	pw.SetFlushInterval(pcap.StreamFlushInterval)
	ms := make([]pcap.Source, len(srcs))
	for i, s := range srcs {
		ms[i] = s
	}
	truncated, werr := mergeInto(pw, ms)
	// The merge stops early at a limit or a write error: the sensors
	// still streaming are cancelled, not failures.
	cancel()
	rep, err := f.finish(srcs, pw, werr)
	rep.Truncated = truncated
	return rep, err
}

// mergeInto writes the packets of srcs to pw in timestamp order and
// flushes it; truncated is true when a limit stopped it. Each packet is
// written before its source is asked for the next, which is what lets a
// source hand out its read buffer in place.
func mergeInto(pw *pcap.Writer, srcs []pcap.Source) (truncated bool, err error) {
	m := pcap.NewMerge(srcs...)
	for m.Next() {
		p := m.Packet()
		if err = pw.WritePacket(p.Timestamp, p.WireLen, p.Data); err != nil {
			if errors.Is(err, pcap.ErrLimit) {
				return true, pw.Flush()
			}
			return false, err
		}
	}
	return false, pw.Flush()
}

func (f *Fleet) refusal(rep Report) error {
	all := true
	reason := ""
	for _, r := range rep.Sensors {
		all = all && r.Refused
		if reason == "" {
			reason = r.Name + ": " + r.Err
		}
	}
	return &RefusedError{Refused: all, Reason: reason}
}

func (f *Fleet) finish(srcs []*source, pw *pcap.Writer, err error) (Report, error) {
	for _, s := range srcs {
		s.close()
	}
	rep := f.report(srcs, pw)
	if err != nil {
		return rep, fmt.Errorf("fleet: writing the merged result: %w", err)
	}
	return rep, nil
}

func (f *Fleet) report(srcs []*source, pw *pcap.Writer) Report {
	var rep Report
	for _, s := range srcs {
		r := s.result()
		f.metrics.sensorDone(r)
		rep.Sensors = append(rep.Sensors, r)
	}
	if pw != nil {
		rep.Packets, rep.Bytes = pw.Packets(), pw.Bytes()
	}
	return rep
}

// Missing lists the sensors with an error as "name=reason" (reasons with
// commas replaced, so the list splits on ", ").
func (r Report) Missing() []string {
	var out []string
	for _, s := range r.Sensors {
		if s.Err != "" {
			out = append(out, s.Name+"="+strings.ReplaceAll(oneLine(s.Err), ",", ";"))
		}
	}
	return out
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// source is one sensor's part of a query: the request and, once the
// sensor answered 200, its PCAP stream as a pcap.Source.
type source struct {
	f     *Fleet
	s     *sensor
	start time.Time

	cancel context.CancelFunc
	// opened is closed when open is done: resp, rd and cancel are set.
	opened chan struct{}
	resp   *http.Response
	rd     *pcapReader
	cur    pcap.Packet
	// isOpen is set once Next has waited for opened: a receive per
	// packet costs more than the merge itself.
	isOpen bool

	mu  sync.Mutex
	res SensorResult
	// ended is set when the sensor's part is over (its stream ended or
	// failed); the duration is taken then.
	ended bool
}

func (s *source) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.res.Err == "" {
		s.res.Err = err.Error()
	}
	s.end()
}

func (s *source) end() {
	if !s.ended {
		s.ended = true
		s.res.Duration = time.Since(s.start)
	}
}

func (s *source) open(ctx context.Context, q Request, answered chan<- *source) {
	defer func() { close(s.opened); answered <- s }()
	ctx, s.cancel = context.WithTimeout(ctx, s.f.timeout)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.s.base+"/query", strings.NewReader(q.Query))
	if err != nil {
		s.fail(err)
		return
	}
	if q.Limits.MaxPackets > 0 {
		req.Header.Set(server.HeaderLimitPackets, strconv.FormatInt(q.Limits.MaxPackets, 10))
	}
	if q.Limits.MaxBytes > 0 {
		req.Header.Set(server.HeaderLimitBytes, strconv.FormatInt(q.Limits.MaxBytes, 10))
	}
	if q.Filter != "" {
		req.Header.Set(server.HeaderFilter, q.Filter)
	}
	resp, err := s.s.client.Do(req)
	if err != nil {
		s.fail(describe(err))
		return
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		msg := fmt.Sprintf("HTTP %d: %s", resp.StatusCode, oneLine(string(bytes.TrimSpace(body))))
		s.mu.Lock()
		s.res.Refused = resp.StatusCode == http.StatusBadRequest
		s.mu.Unlock()
		s.fail(errors.New(msg))
		return
	}
	rd, err := newPCAPReader(resp.Body)
	if err != nil {
		resp.Body.Close()
		s.fail(err)
		return
	}
	s.resp, s.rd = resp, rd
}

// describe makes TLS failures say what they are: a sensor refusing
// stenofleet's certificate shows up as a bare "remote error".
func describe(err error) error {
	var re tls.AlertError
	if errors.As(err, &re) || strings.Contains(err.Error(), "remote error: tls:") {
		return fmt.Errorf("TLS: the sensor refused stenofleet's client certificate (%w)", err)
	}
	var ce *tls.CertificateVerificationError
	if errors.As(err, &ce) {
		return fmt.Errorf("TLS: the sensor's certificate does not verify: %w", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("timed out: %w", err)
	}
	return err
}

// Next implements pcap.Source. A sensor whose stream fails ends its part
// with the error recorded (Err is nil): the merge goes on with the rest.
func (s *source) Next() bool {
	if !s.isOpen {
		<-s.opened
		s.isOpen = true
	}
	if s.rd == nil {
		return false
	}
	p, err := s.rd.next()
	if err != nil {
		if !errors.Is(err, io.EOF) {
			s.fail(describe(fmt.Errorf("after %d packets: %w", s.res.Packets, err)))
		} else {
			s.mu.Lock()
			s.end()
			s.mu.Unlock()
			s.trailers()
		}
		s.rd = nil
		return false
	}
	s.cur = p
	s.res.Packets++
	s.res.Bytes += int64(pcap.RecordHeaderSize + len(p.Data))
	return true
}

// trailers relays the sensor's own report once its body was read to the
// end; a sensor that sent no Steno-Packets trailer cut its stream short.
func (s *source) trailers() {
	t := s.resp.Trailer
	s.mu.Lock()
	s.res.FileErrors, s.res.Truncated = t.Get(server.TrailerFileErrors), t.Get(server.TrailerTruncated)
	s.mu.Unlock()
}

func (s *source) Packet() pcap.Packet { return s.cur }
func (s *source) Err() error          { return nil }

// close is called after the query's context was cancelled, so open
// returns promptly.
func (s *source) close() {
	<-s.opened
	if s.resp != nil {
		s.resp.Body.Close()
	}
	if s.cancel != nil {
		s.cancel()
	}
}

func (s *source) result() SensorResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.end()
	return s.res
}
