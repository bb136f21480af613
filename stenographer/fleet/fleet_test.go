package fleet

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/stenographer/fleet/config"
	"github.com/stenographer-ng/stenographer/stenographer/pcap"
	"github.com/stenographer-ng/stenographer/stenographer/server/servertest"
	"github.com/stenographer-ng/stenographer/stenographer/tlsconfig"
	"github.com/stenographer-ng/stenographer/stenographer/tlsconfig/testcerts"
)

// These tests stand in for sensors that misbehave in ways a real sensor
// cannot be made to (a stream cut mid-way, another link type, a hang);
// tests/fleet runs stenofleet against real sensors.

type fakeSensor struct {
	name string
	h    http.HandlerFunc
}

func newFleet(t *testing.T, set *testcerts.Set, timeout time.Duration, sensors ...fakeSensor) *Fleet {
	t.Helper()
	tc, err := tlsconfig.Server(set.CA, set.Server.Cert, set.Server.Key)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{SensorTimeout: config.Duration(timeout)}
	for _, s := range sensors {
		srv := httptest.NewUnstartedServer(s.h)
		srv.TLS = tc
		srv.StartTLS()
		t.Cleanup(srv.Close)
		_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
		p, _ := strconv.Atoi(port)
		cfg.Sensors = append(cfg.Sensors, config.Sensor{Name: s.name, Host: "127.0.0.1", Port: p,
			Cert: set.Client.Cert, Key: set.Client.Key, CA: set.CA, ServerName: "127.0.0.1"})
	}
	f, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// stream answers with n packets whose timestamps start at base, then
// calls after (nil: end cleanly).
func stream(base int64, n int, after func(w http.ResponseWriter, r *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		// Reading the body to its end, as a sensor does, is what makes
		// net/http notice the client closing the connection.
		io.ReadAll(r.Body)
		pw, _ := pcap.NewWriter(w, pcap.Limits{})
		for i := 0; i < n; i++ {
			pw.WritePacket(time.Unix(base+int64(2*i), 0), 60, bytes.Repeat([]byte{byte(i)}, 60))
		}
		pw.Flush()
		http.NewResponseController(w).Flush()
		if after != nil {
			after(w, r)
		}
	}
}

func records(t *testing.T, b []byte) []time.Time {
	t.Helper()
	if len(b) < pcap.FileHeaderSize {
		t.Fatalf("%d bytes: no PCAP header", len(b))
	}
	var ts []time.Time
	for b = b[pcap.FileHeaderSize:]; len(b) >= pcap.RecordHeaderSize; {
		n := int(binary.LittleEndian.Uint32(b[8:]))
		ts = append(ts, time.Unix(int64(binary.LittleEndian.Uint32(b)), 0))
		b = b[pcap.RecordHeaderSize+n:]
	}
	return ts
}

func find(rep Report, name string) SensorResult {
	for _, s := range rep.Sensors {
		if s.Name == name {
			return s
		}
	}
	return SensorResult{}
}

func TestBrokenStreamsDoNotFailOthers(t *testing.T) {
	set := servertest.Certs(t)
	otherLink := func(w http.ResponseWriter, r *http.Request) {
		var h [pcap.FileHeaderSize]byte
		binary.LittleEndian.PutUint32(h[0:], 0xa1b2c3d4)
		binary.LittleEndian.PutUint32(h[20:], 101) // raw IP
		w.Write(h[:])
	}
	f := newFleet(t, set, time.Minute,
		fakeSensor{"good", stream(1000, 5, nil)},
		fakeSensor{"cut", stream(1001, 3, func(w http.ResponseWriter, r *http.Request) {
			http.NewResponseController(w).Flush()
			panic(http.ErrAbortHandler)
		})},
		fakeSensor{"rawip", otherLink},
		fakeSensor{"refuses", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "bad query", 400) }},
	)
	var out bytes.Buffer
	rep, err := f.Query(context.Background(), Request{Query: "tcp"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	ts := records(t, out.Bytes())
	if len(ts) != 8 || rep.Packets != 8 {
		t.Fatalf("%d packets (report %d), want 5 + 3", len(ts), rep.Packets)
	}
	for i := 1; i < len(ts); i++ {
		if ts[i].Before(ts[i-1]) {
			t.Errorf("packet %d at %v before %v", i, ts[i], ts[i-1])
		}
	}
	if r := find(rep, "cut"); r.Packets != 3 || !strings.Contains(r.Err, "after 3 packets") {
		t.Errorf("cut: %+v", r)
	}
	if r := find(rep, "rawip"); !strings.Contains(r.Err, "link type 101") {
		t.Errorf("rawip: %+v", r)
	}
	if r := find(rep, "refuses"); !r.Refused || !strings.Contains(r.Err, "bad query") {
		t.Errorf("refuses: %+v", r)
	}
	if r := find(rep, "good"); r.Err != "" || r.Packets != 5 {
		t.Errorf("good: %+v", r)
	}
	if m := strings.Join(rep.Missing(), ", "); !strings.Contains(m, "cut=") || strings.Contains(m, "good=") {
		t.Errorf("Missing() = %q", m)
	}
}

func TestEverySensorRefuses(t *testing.T) {
	set := servertest.Certs(t)
	refuse := func(w http.ResponseWriter, r *http.Request) { http.Error(w, "query: unknown term", 400) }
	f := newFleet(t, set, time.Minute, fakeSensor{"a", refuse}, fakeSensor{"b", refuse})
	var out bytes.Buffer
	_, err := f.Query(context.Background(), Request{Query: "bogus"}, &out)
	var re *RefusedError
	if !errors.As(err, &re) || !re.Refused || !strings.Contains(re.Reason, "unknown term") || out.Len() != 0 {
		t.Fatalf("err %v, %d bytes written", err, out.Len())
	}
	if _, err := f.Query(context.Background(), Request{Query: "tcp", Sensors: []string{"nosuch"}}, &out); !errors.Is(err, ErrNoSensors) {
		t.Errorf("unknown sensor: %v", err)
	}
}

func TestTimeoutAndCancel(t *testing.T) {
	set := servertest.Certs(t)
	cancelled := make(chan struct{})
	hang := stream(1000, 1, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		close(cancelled)
	})
	// A sensor that never answers is cut off by the sensor timeout.
	f := newFleet(t, set, 2*time.Second, fakeSensor{"good", stream(1000, 2, nil)},
		fakeSensor{"silent", func(w http.ResponseWriter, r *http.Request) { io.ReadAll(r.Body); <-r.Context().Done() }})
	var out bytes.Buffer
	rep, err := f.Query(context.Background(), Request{Query: "tcp"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if r := find(rep, "silent"); !strings.Contains(r.Err, "timed out") && !strings.Contains(r.Err, "deadline") {
		t.Errorf("silent: %+v", r)
	}
	if len(records(t, out.Bytes())) != 2 {
		t.Errorf("want the good sensor's 2 packets")
	}

	// The caller going away cancels the sensor requests.
	f = newFleet(t, set, time.Hour, fakeSensor{"hang", hang})
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { _, err := f.Query(ctx, Request{Query: "tcp"}, pw); pw.Close(); done <- err }()
	buf := make([]byte, pcap.FileHeaderSize)
	if _, err := io.ReadFull(pr, buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	go io.Copy(io.Discard, pr)
	select {
	case <-cancelled:
	case <-time.After(time.Minute):
		t.Fatal("the sensor's request was not cancelled")
	}
	<-done
}
