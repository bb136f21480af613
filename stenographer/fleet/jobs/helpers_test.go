package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"
	"github.com/stenographer-ng/stenographer/stenographer/pcap"
)

// clock is an injectable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2018, 1, 10, 22, 11, 40, 0, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeFleet is a RunFunc standing in for the sensors: it writes a small
// valid PCAP whose packets spell the query, so results are deterministic
// and tell jobs apart.
type fakeFleet struct {
	mu           sync.Mutex
	running, max int
	calls        []string
	sensorArgs   [][]string
	// gate, when set, holds each run after its first packet until a value
	// is received or the context ends.
	gate chan struct{}
	// sensors is the report; a sensor named "down" fails, "picky" refuses.
	sensors []string
}

func (f *fakeFleet) Run(ctx context.Context, query string, sensors []string, w io.Writer) (Report, error) {
	f.mu.Lock()
	f.running++
	f.max = max(f.max, f.running)
	f.calls = append(f.calls, query)
	f.sensorArgs = append(f.sensorArgs, sensors)
	gate := f.gate
	names := f.sensors
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.running--
		f.mu.Unlock()
	}()
	if names == nil {
		names = []string{"s1", "s2"}
	}
	pw, err := pcap.NewWriter(w, pcap.Limits{})
	if err != nil {
		return Report{}, err
	}
	ts := time.Date(2018, 1, 10, 22, 0, 0, 0, time.UTC)
	pkt := func(i int) error {
		data := fmt.Appendf(nil, "%-60s", fmt.Sprintf("%d %s", i, query))
		if err := pw.WritePacket(ts.Add(time.Duration(i)*time.Millisecond), len(data), data); err != nil {
			return err
		}
		return pw.Flush()
	}
	if err := pkt(0); err != nil {
		return Report{}, err
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return Report{}, ctx.Err()
		}
	}
	if err := pkt(1); err != nil {
		return Report{}, err
	}
	var rep Report
	for _, n := range names {
		s := SensorResult{Name: n, Packets: 1, Bytes: 76, Duration: 3 * time.Millisecond}
		switch n {
		case "down":
			s = SensorResult{Name: n, Err: "dial tcp: connection refused"}
		case "picky":
			s = SensorResult{Name: n, Err: "400: bad query", Refused: true}
		}
		rep.Sensors = append(rep.Sensors, s)
	}
	return rep, nil
}

func (f *fakeFleet) stats() (running, maxRunning int, calls []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.running, f.max, append([]string(nil), f.calls...)
}

// started is a running Manager and an HTTP server in front of it.
type started struct {
	m      *Manager
	srv    *httptest.Server
	cancel context.CancelFunc
	done   chan error
}

// start runs a Manager on cfg until the test ends or stop is called.
func start(t *testing.T, cfg Config) *started {
	t.Helper()
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &started{m: m, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- m.Run(ctx) }()
	s.srv = httptest.NewServer(m.Handler(translate, func(r *http.Request) string { return r.Header.Get("X-User") }))
	t.Cleanup(s.stop)
	return s
}

func (s *started) stop() {
	s.cancel()
	if s.done != nil {
		<-s.done
		s.done = nil
	}
	s.srv.Close()
}

// translate is a stand-in for Docket's URL terms: /k/v/k/v…, with
// "after/5m" meaning "after 5m ago" and value-less tcp/udp.
func translate(p string) ([]string, error) {
	f := strings.FieldsFunc(p, func(r rune) bool { return r == '/' })
	var out []string
	for i := 0; i < len(f); i++ {
		switch k := f[i]; k {
		case "tcp", "udp":
			out = append(out, k)
		case "host", "port", "after", "before":
			if i+1 == len(f) {
				return nil, fmt.Errorf("%s needs a value", k)
			}
			v := f[i+1]
			i++
			if (k == "after" || k == "before") && !strings.Contains(v, "T") {
				v += " ago"
			}
			out = append(out, k+" "+v)
		default:
			return nil, fmt.Errorf("unknown term %q", k)
		}
	}
	return out, nil
}

// get fetches path as user and returns the status and body.
func (s *started) get(t *testing.T, user, path string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.Header.Set("X-User", user)
	}
	resp, err := s.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", path, err)
	}
	return resp.StatusCode, b
}

func (s *started) getJSON(t *testing.T, user, path string, v any) {
	t.Helper()
	code, b := s.get(t, user, path)
	if code != http.StatusOK {
		t.Fatalf("GET %s as %q: %d %s", path, user, code, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v in %s", path, err, b)
	}
}

// waitState polls until job id reaches st; a loaded machine only makes it
// slower.
func waitState(t *testing.T, m *Manager, id string, st State) Job {
	t.Helper()
	var j Job
	waitFor(t, fmt.Sprintf("job %s %s", id, st), func() bool {
		var err error
		j, err = m.Get(id)
		return err == nil && j.State == st
	})
	return j
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkPcap parses b as a PCAP and returns its packet count.
func checkPcap(t *testing.T, b []byte) int {
	t.Helper()
	r, err := pcapgo.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("result is not a PCAP: %v", err)
	}
	n := 0
	for {
		_, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			t.Fatalf("packet %d: %v", n, err)
		}
		n++
	}
}

func submit(t *testing.T, m *Manager, user string, clauses ...string) Job {
	t.Helper()
	j, err := m.Submit(context.Background(), user, clauses, nil)
	if err != nil {
		t.Fatalf("Submit(%q): %v", clauses, err)
	}
	return j
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func spoolFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
