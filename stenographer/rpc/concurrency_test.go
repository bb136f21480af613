package rpc_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/stenographer-ng/stenographer/protobuf"
	"github.com/stenographer-ng/stenographer/stenographer/connlimit"
	"github.com/stenographer-ng/stenographer/stenographer/metrics"
	"github.com/stenographer-ng/stenographer/stenographer/pcap"
	"github.com/stenographer-ng/stenographer/stenographer/rpc"
	"github.com/stenographer-ng/stenographer/stenographer/serve"
	"github.com/stenographer-ng/stenographer/stenographer/server"
	"github.com/stenographer-ng/stenographer/stenographer/server/servertest"
)

// TestConcurrent runs 20 queries at once, half over HTTPS and half over
// gRPC, and checks every answer against the store's.
func TestConcurrent(t *testing.T) {
	t.Parallel()
	st, certs := servertest.Store(t, small), servertest.Certs(t)
	e := start(t, st, certs, rpc.Config{ClientPcapChunkSize: 3000})
	c := e.client(t, certs.Client)
	url := startHTTPS(t, server.Config{CertPath: certs.Dir, Store: st})
	hc := servertest.HTTPClient(t, certs, certs.Client)

	queries := []string{"after 3h ago", "port 1001", "port 1002 or port 1003", "port 1004 and after 110m ago", "port=1005"}
	want := map[string][]byte{}
	for _, q := range queries {
		want[q], _ = servertest.Expected(t, st, q, pcap.Limits{})
	}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		q := queries[i%len(queries)]
		wg.Go(func() {
			var got []byte
			if i%2 == 0 {
				resp, err := hc.Post(url, "text/plain", strings.NewReader(q))
				if err != nil {
					errs <- fmt.Errorf("HTTPS %q: %w", q, err)
					return
				}
				got, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					errs <- fmt.Errorf("HTTPS %q: %w", q, err)
					return
				}
			} else {
				a, err := retrieve(context.Background(), c, &pb.PcapRequest{Uid: fmt.Sprint(i), Query: q})
				if err != nil {
					errs <- fmt.Errorf("gRPC %q: %w", q, err)
					return
				}
				got = a.data
			}
			if !bytes.Equal(got, want[q]) {
				errs <- fmt.Errorf("query %d %q: %d bytes, want %d", i, q, len(got), len(want[q]))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	st, certs := servertest.Store(t, servertest.Layout{Packets: 10, PerFile: 10, Step: time.Second}), servertest.Certs(t)
	missing := certs.Dir + "/missing.pem"
	for _, tc := range []struct {
		name string
		cfg  rpc.Config
		want string
	}{
		{"missing CA", rpc.Config{CaCert: missing, ServerCert: certs.Server.Cert, ServerKey: certs.Server.Key}, missing},
		{"missing cert", rpc.Config{CaCert: certs.CA, ServerCert: missing, ServerKey: certs.Server.Key}, missing},
		{"missing key", rpc.Config{CaCert: certs.CA, ServerCert: certs.Server.Cert, ServerKey: missing}, missing},
		{"CA not PEM", rpc.Config{CaCert: certs.Server.Key, ServerCert: certs.Server.Cert, ServerKey: certs.Server.Key}, certs.Server.Key},
		{"negative size", rpc.Config{CaCert: certs.CA, ServerCert: certs.Server.Cert, ServerKey: certs.Server.Key, ClientPcapChunkSize: -1}, "ClientPcapChunkSize"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Store = st
			if _, err := rpc.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v; want an error naming %s", err, tc.want)
			}
		})
	}
	if _, err := os.Stat(missing); err == nil {
		t.Fatal("test bug: the missing file exists")
	}
}

// TestConcurrentWithDeletion runs 20 queries over both transports while
// the oldest files are deleted under them, as disk cleanup does: every
// query ends, and what it returns is a well-formed PCAP in time order.
func TestConcurrentWithDeletion(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st := servertest.StoreIn(t, dir, servertest.Layout{Packets: 4000, PerFile: 400, Size: 1000, Step: time.Millisecond})
	certs := servertest.Certs(t)
	e := start(t, st, certs, rpc.Config{ClientPcapChunkSize: 64 << 10})
	c := e.client(t, certs.Client)
	url := startHTTPS(t, server.Config{CertPath: certs.Dir, Store: st})
	hc := servertest.HTTPClient(t, certs, certs.Client)

	var wg sync.WaitGroup
	results := make(chan []byte, 20)
	for i := range 20 {
		wg.Go(func() {
			if i%2 == 0 {
				resp, err := hc.Post(url, "text/plain", strings.NewReader("after 3h ago"))
				if err != nil {
					t.Errorf("HTTPS: %v", err)
					return
				}
				data, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil {
					results <- data
				}
				return
			}
			a, err := retrieve(context.Background(), c, &pb.PcapRequest{Uid: fmt.Sprint(i), Query: "after 3h ago"})
			if err == nil {
				results <- a.data
			} else if status.Code(err) != codes.Internal {
				t.Errorf("gRPC: %v; want success or a clear Internal error", err)
			}
		})
	}
	// Delete the two oldest pairs of each thread while the queries run.
	servertest.Eventually(t, "queries to start", func() bool {
		q := e.m.Queries()
		return q[metrics.TransportHTTP].InFlight+q[metrics.TransportGRPC].InFlight > 0
	})
	for range 2 {
		for th := range st.Threads() {
			f := st.Files(th)[0]
			for _, d := range []string{"PKT", "IDX"} {
				path := filepath.Join(dir, fmt.Sprint(d, th), f.Name)
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			}
			st.Forget(f)
		}
	}
	wg.Wait()
	close(results)
	n := 0
	for data := range results {
		n++
		if pkts := servertest.Packets(t, data); len(pkts) == 0 {
			t.Error("a query returned no packets")
		}
	}
	t.Logf("%d of 20 queries completed while files were deleted", n)
}

// TestRunningBound shares one Runner of two running slots between gRPC
// and HTTPS: two streams that are not read hold both, a third stream
// waits and is refused RESOURCE_EXHAUSTED, an HTTPS query gets 503, the
// in-flight gauge never passes 2, and once the two end a query runs again.
func TestRunningBound(t *testing.T) {
	t.Parallel()
	st, certs := servertest.Store(t, big), servertest.Certs(t)
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	runner, err := serve.New(serve.Config{Store: st, Metrics: m, MaxRunning: 2, MaxWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e := start(t, st, certs, rpc.Config{Runner: runner})
	c := e.client(t, certs.Client, grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))

	inFlight := func() int64 {
		q := m.Queries()
		return q[metrics.TransportGRPC].InFlight + q[metrics.TransportHTTP].InFlight
	}
	stopSampling := make(chan struct{})
	sampled := make(chan int64, 1)
	go func() {
		var peak int64
		defer func() { sampled <- peak }()
		for {
			peak = max(peak, inFlight())
			select {
			case <-stopSampling:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	for i := range 2 {
		stream, err := c.RetrievePcap(ctx, &pb.PcapRequest{Uid: fmt.Sprint(i), ChunkSize: 1 << 20, Query: "after 3h ago"})
		if err == nil {
			_, err = stream.Recv()
		}
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	_, err = retrieve(context.Background(), c, &pb.PcapRequest{Query: "port 1001"})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "2 running") {
		t.Errorf("third stream: %v; want ResourceExhausted saying 2 are running", err)
	}
	url := startHTTPS(t, server.Config{CertPath: certs.Dir, Store: st, Runner: runner})
	resp, err := servertest.HTTPClient(t, certs, certs.Client).Post(url, "text/plain", strings.NewReader("port 1001"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("HTTPS while both slots are held: %d %q (Retry-After %q); want 503", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if n := m.Queries()[metrics.TransportGRPC].ByOutcome[metrics.OutcomeBusy]; n != 1 {
		t.Errorf("%d gRPC queries counted busy, want 1", n)
	}

	cancel()
	servertest.Eventually(t, "the two streams to end", func() bool { return inFlight() == 0 })
	if a, err := retrieve(context.Background(), c, &pb.PcapRequest{Query: "port 1001"}); err != nil || len(a.data) <= pcap.FileHeaderSize {
		t.Errorf("query after the slots were freed: %d bytes, %v", len(a.data), err)
	}
	close(stopSampling)
	if peak := <-sampled; peak > 2 {
		t.Errorf("%d queries in flight at once; the bound is 2", peak)
	}
}

// TestIdleConnections opens more idle TCP connections than the server
// allows from one address: a client on another address still gets its
// answer, and the server closes every idle one (those over the bound at
// once, the rest when the handshake timeout passes).
func TestIdleConnections(t *testing.T) {
	t.Parallel()
	st, certs := servertest.Store(t, small), servertest.Certs(t)
	e := start(t, st, certs, rpc.Config{Conns: connlimit.Limits{MaxConns: 30, MaxConnsPerIP: 10, HandshakeTimeout: time.Second}})
	idle := servertest.IdleConns(t, e.addr, 40)
	c := e.client(t, certs.Client)
	if a, err := retrieve(context.Background(), c, &pb.PcapRequest{Query: "port 1001"}); err != nil || len(a.data) <= pcap.FileHeaderSize {
		t.Errorf("query with 40 idle connections open: %d bytes, %v", len(a.data), err)
	}
	servertest.WaitClosed(t, idle)
}

// TestIdleFlood fills the connection bound with idle connections that
// stay within a long handshake timeout: a client with a certificate still
// gets its answer (its connection takes the place of the oldest idle
// one), and a second query on its authenticated connection too.
func TestIdleFlood(t *testing.T) {
	t.Parallel()
	st, certs := servertest.Store(t, small), servertest.Certs(t)
	e := start(t, st, certs, rpc.Config{Conns: connlimit.Limits{MaxConns: 20, MaxConnsPerIP: 1000, HandshakeTimeout: time.Hour}})
	servertest.IdleConns(t, e.addr, 60)
	c := e.client(t, certs.Client)
	for i := range 2 {
		if a, err := retrieve(context.Background(), c, &pb.PcapRequest{Query: "port 1001"}); err != nil || len(a.data) <= pcap.FileHeaderSize {
			t.Errorf("query %d with the bound full of idle connections: %d bytes, %v", i, len(a.data), err)
		}
		servertest.IdleConns(t, e.addr, 30)
	}
}
