// Package servertest builds what the tests of the HTTPS and gRPC servers
// share: a store of real stenotype-format files, certificates, mutual-TLS
// clients and the store's own answer to compare results with. Test helper
// only.
package servertest

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"

	"github.com/stenographer-ng/stenographer/stenographer/internal/fixture"
	"github.com/stenographer-ng/stenographer/stenographer/pcap"
	"github.com/stenographer-ng/stenographer/stenographer/query"
	"github.com/stenographer-ng/stenographer/stenographer/store"
	"github.com/stenographer-ng/stenographer/stenographer/tlsconfig"
	"github.com/stenographer-ng/stenographer/stenographer/tlsconfig/testcerts"
)

// BlockSize is the block size of the files Store writes.
const BlockSize = 64 << 10

// Layout says how Store lays out packets. Packet k is captured at
// Base + k*Step, goes to thread k%2 and file k/PerFile of its thread,
// carries port 1000+k%10, and is Size bytes (at least 60 + k%50 when Size
// is 0) with k in its first four bytes.
type Layout struct {
	Packets int
	PerFile int
	Size    int
	Step    time.Duration
	// MaxScanBytes is the store's store.Config.MaxScanBytes.
	MaxScanBytes int64
}

// Store writes the packets of l under a new temporary directory, about two
// hours old, and returns a store over them.
func Store(t testing.TB, l Layout) *store.Store {
	t.Helper()
	return StoreIn(t, t.TempDir(), l)
}

// StoreIn is Store with the files in dir/PKT<i> and dir/IDX<i>.
func StoreIn(t testing.TB, dir string, l Layout) *store.Store {
	t.Helper()
	base := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	files := map[[2]int][]fixture.Packet{}
	for k := 0; k < l.Packets; k++ {
		size := l.Size
		if size == 0 {
			size = 60 + k%50
		}
		data := make([]byte, size)
		data[0], data[1], data[2], data[3] = byte(k), byte(k>>8), byte(k>>16), byte(k>>24)
		key := [2]int{k % 2, k / l.PerFile}
		p := 1000 + k%10
		files[key] = append(files[key], fixture.Packet{
			Time: base.Add(time.Duration(k) * l.Step),
			Data: data,
			Keys: [][]byte{{0x02, byte(p >> 8), byte(p)}},
		})
	}
	for key, pkts := range files {
		if _, err := fixture.Write(dir, key[0], pkts[0].Time, BlockSize, pkts); err != nil {
			t.Fatal(err)
		}
	}
	st := store.New(store.Config{BlockSize: BlockSize, MaxScanBytes: l.MaxScanBytes, Threads: []store.Thread{
		{PacketsDirectory: filepath.Join(dir, "PKT0"), IndexDirectory: filepath.Join(dir, "IDX0")},
		{PacketsDirectory: filepath.Join(dir, "PKT1"), IndexDirectory: filepath.Join(dir, "IDX1")},
	}})
	if err := st.Refresh(); err != nil {
		t.Fatal(err)
	}
	return st
}

// Certs writes a certificate set into a new temporary directory.
func Certs(t testing.TB) *testcerts.Set {
	t.Helper()
	set, err := testcerts.Generate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// TLS returns a client configuration trusting set's CA and presenting p
// (no certificate when p is zero).
func TLS(t testing.TB, set *testcerts.Set, p testcerts.Pair) *tls.Config {
	t.Helper()
	if p == (testcerts.Pair{}) {
		c, err := tlsconfig.Client(set.CA, set.Client.Cert, set.Client.Key, "")
		if err != nil {
			t.Fatal(err)
		}
		c.Certificates = nil
		return c
	}
	c, err := tlsconfig.Client(set.CA, p.Cert, p.Key, "")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// HTTPClient returns an HTTPS client presenting p. Its sockets have a
// small fixed receive buffer, so a client that stops reading holds the
// server back after a few hundred kilobytes.
func HTTPClient(t testing.TB, set *testcerts.Set, p testcerts.Pair) *http.Client {
	t.Helper()
	d := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 64<<10)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	tr := &http.Transport{TLSClientConfig: TLS(t, set, p), DialContext: d.DialContext, ForceAttemptHTTP2: false}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// Expected returns the store's own answer to q.
func Expected(t testing.TB, st *store.Store, q string, limits pcap.Limits) ([]byte, *store.Result) {
	t.Helper()
	n, err := query.Parse(q, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := pcap.NewWriter(&buf, limits)
	if err != nil {
		t.Fatal(err)
	}
	res, err := st.Query(context.Background(), n, w)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), res
}

// Packets parses a PCAP stream and returns the packet numbers Store put
// into the packets' first bytes, failing on a malformed stream or one out
// of timestamp order.
func Packets(t testing.TB, data []byte) []int {
	t.Helper()
	r, err := pcapgo.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("result is not a PCAP stream: %v", err)
	}
	var out []int
	var last time.Time
	for {
		d, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("result breaks after packet %d: %v", len(out), err)
		}
		if ci.Timestamp.Before(last) {
			t.Fatalf("packet %d out of timestamp order", len(out))
		}
		last = ci.Timestamp
		out = append(out, int(d[0])|int(d[1])<<8|int(d[2])<<16|int(d[3])<<24)
	}
	return out
}

// Eventually polls cond until it holds or a generous deadline passes.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// MustStop runs a server's stop function while work is in flight and
// fails t unless Serve returned nil within a generous deadline.
func MustStop(t testing.TB, what string, stop func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- stop() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("Serve did not return after shutdown with %s", what)
	}
}

// CheckByteLimit fails t unless a result cut by a byte limit stops at the
// packet that reached it, as the reference does: without its last packet
// the result is under the limit.
func CheckByteLimit(t testing.TB, data []byte, limit int64) {
	t.Helper()
	r, err := pcapgo.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("result is not a PCAP stream: %v", err)
	}
	size, last := int64(pcap.FileHeaderSize), 0
	for {
		d, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("result breaks: %v", err)
		}
		last = pcap.RecordHeaderSize + len(d)
		size += int64(last)
	}
	if size != int64(len(data)) {
		t.Fatalf("parsed %d bytes of a %d byte result", size, len(data))
	}
	if size > limit && size-int64(last) >= limit {
		t.Errorf("%d bytes for a %d byte limit: it went on after the packet that reached the limit", size, limit)
	}
}

// IdleConns opens n TCP connections to addr from 127.0.0.2 (another
// client address than the tests' legitimate clients on 127.0.0.1) that
// never send a byte.
func IdleConns(t testing.TB, addr string, n int) []net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 30 * time.Second}
	var out []net.Conn
	for range n {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("idle connection %d: %v", len(out), err)
		}
		out = append(out, c)
	}
	t.Cleanup(func() {
		for _, c := range out {
			c.Close()
		}
	})
	return out
}

// WaitClosed fails t unless the server closes every one of conns within a
// generous deadline (it reads each to EOF or a reset).
func WaitClosed(t testing.TB, conns []net.Conn) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for i, c := range conns {
		c.SetReadDeadline(deadline)
		_, err := io.Copy(io.Discard, c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("idle connection %d of %d still open after 60 s", i, len(conns))
		}
	}
}

// Server is what the HTTPS and gRPC servers have in common.
type Server interface {
	Serve(ctx context.Context) error
	Ready() <-chan struct{}
}

// Serve runs s until the test ends (or stop is called) and waits until it
// listens. stop cancels Serve and returns its result; the test fails if
// Serve returned an error by the end of the test.
func Serve(t testing.TB, s Server) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	select {
	case <-s.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("Serve: %v", err)
	}
	var once sync.Once
	var result error
	stop = func() error {
		once.Do(func() { cancel(); result = <-done })
		return result
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Serve returned %v after shutdown; want nil", err)
		}
	})
	return stop
}
