package rpc_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/stenographer-ng/stenographer/protobuf"
	"github.com/stenographer-ng/stenographer/stenographer/metrics"
	"github.com/stenographer-ng/stenographer/stenographer/pcap"
	"github.com/stenographer-ng/stenographer/stenographer/rpc"
	"github.com/stenographer-ng/stenographer/stenographer/serve"
	"github.com/stenographer-ng/stenographer/stenographer/server"
	"github.com/stenographer-ng/stenographer/stenographer/server/servertest"
	"github.com/stenographer-ng/stenographer/stenographer/store"
	"github.com/stenographer-ng/stenographer/stenographer/tlsconfig/testcerts"
)

var (
	small = servertest.Layout{Packets: 2000, PerFile: 200, Step: 100 * time.Millisecond}
	big   = servertest.Layout{Packets: 12000, PerFile: 3000, Size: 1400, Step: time.Millisecond}
)

type env struct {
	st    *store.Store
	certs *testcerts.Set
	addr  string
	m     *metrics.Metrics
	stop  func() error
}

func start(t *testing.T, st *store.Store, certs *testcerts.Set, cfg rpc.Config) *env {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	cfg.CaCert, cfg.ServerCert, cfg.ServerKey = certs.CA, certs.Server.Cert, certs.Server.Key
	cfg.Store = st
	srv, err := rpc.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := servertest.Serve(t, srv)
	e := &env{st: st, certs: certs, addr: srv.Addr().String(), m: srv.Metrics(), stop: stop}
	return e
}

func (e *env) client(t *testing.T, p testcerts.Pair, opts ...grpc.DialOption) pb.StenographerClient {
	t.Helper()
	opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(servertest.TLS(t, e.certs, p))))
	conn, err := grpc.NewClient(e.addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewStenographerClient(conn)
}

type answer struct {
	data    []byte
	chunks  []int
	trailer metadata.MD
}

func retrieve(ctx context.Context, c pb.StenographerClient, req *pb.PcapRequest) (*answer, error) {
	a := &answer{}
	stream, err := c.RetrievePcap(ctx, req)
	if err != nil {
		return a, err
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return a, err
		}
		if resp.Uid != req.Uid {
			return a, fmt.Errorf("response uid %q, want %q", resp.Uid, req.Uid)
		}
		a.data = append(a.data, resp.Pcap...)
		a.chunks = append(a.chunks, len(resp.Pcap))
	}
	a.trailer = stream.Trailer()
	return a, nil
}

func (a *answer) truncated() string {
	if v := a.trailer.Get(rpc.TrailerTruncated); len(v) == 1 {
		return v[0]
	}
	return ""
}

// httpAnswer returns the HTTPS API's answer to q.
func httpAnswer(t *testing.T, st *store.Store, certs *testcerts.Set, q string) []byte {
	t.Helper()
	url := startHTTPS(t, server.Config{CertPath: certs.Dir, Store: st})
	resp, err := servertest.HTTPClient(t, certs, certs.Client).Post(url, "text/plain", strings.NewReader(q))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTPS %q: %d %v", q, resp.StatusCode, err)
	}
	return data
}

// startHTTPS serves cfg's HTTPS API on loopback for the test and returns
// its /query URL.
func startHTTPS(t *testing.T, cfg server.Config) string {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	servertest.Serve(t, srv)
	return "https://" + srv.Addr().String() + "/query"
}

func TestRetrieve(t *testing.T) {
	t.Parallel()
	st, certs := servertest.Store(t, small), servertest.Certs(t)
	e := start(t, st, certs, rpc.Config{ClientPcapChunkSize: 1000})
	c := e.client(t, certs.Client)
	viaHTTP := httpAnswer(t, st, certs, "after 3h ago")
	if n := len(servertest.Packets(t, viaHTTP)); n != small.Packets {
		t.Fatalf("HTTPS answer has %d packets, want %d", n, small.Packets)
	}
	for _, tc := range []struct {
		name      string
		chunk     int64
		wantChunk int
		query     string
	}{
		{"chunk 100", 100, 100, "after 3h ago"},
		{"default chunk", 0, 1000, "after 3h ago"},
		{"odd chunk", 4099, 4099, "after 3h ago"},
		{"chunk over the cap", 1 << 30, rpc.MaxChunkSize, "after 3h ago"},
		{"one chunk of header", 0, 1000, "port 4000"},
		{"one port", 512, 512, "port 1007"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := &pb.PcapRequest{Uid: "uid-" + tc.name, ChunkSize: tc.chunk, Query: tc.query}
			a, err := retrieve(context.Background(), c, req)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := servertest.Expected(t, st, tc.query, pcap.Limits{})
			if tc.query == "after 3h ago" && !bytes.Equal(want, viaHTTP) {
				t.Fatal("the store's answer differs from the HTTPS answer")
			}
			if !bytes.Equal(a.data, want) {
				t.Errorf("concatenated chunks: %d bytes, differ from the %d byte HTTPS/store answer", len(a.data), len(want))
			}
			// Chunks are flushed early (the header, the first packet,
			// every 50 ms), so chunk_size bounds them.
			for i, n := range a.chunks {
				if n > tc.wantChunk || n == 0 {
					t.Fatalf("chunk %d of %d is %d bytes; want 1 to %d", i, len(a.chunks), n, tc.wantChunk)
				}
			}
			if full := len(want) / tc.wantChunk; len(a.chunks) < full {
				t.Errorf("%d chunks for %d bytes in chunks of %d", len(a.chunks), len(want), tc.wantChunk)
			}
			if got := a.truncated(); got != "false" {
				t.Errorf("trailer %s = %q, want false", rpc.TrailerTruncated, got)
			}
			if got := a.trailer.Get(rpc.TrailerBytes); len(got) != 1 || got[0] != fmt.Sprint(len(want)) {
				t.Errorf("trailer %s = %q, want %d", rpc.TrailerBytes, got, len(want))
			}
		})
	}
}

func TestSizeLimits(t *testing.T) {
	t.Parallel()
	st, certs := servertest.Store(t, small), servertest.Certs(t)
	e := start(t, st, certs, rpc.Config{ClientPcapChunkSize: 700, ClientPcapMaxSize: 3000, ServerPcapMaxSize: 5000})
	c := e.client(t, certs.Client)
	for _, tc := range []struct {
		name      string
		maxSize   int64
		query     string
		limit     int64 // bytes the server should allow
		truncated string
	}{
		{"client default", 0, "after 3h ago", 3000, "true"},
		{"below the cap", 4000, "after 3h ago", 4000, "true"},
		{"capped by the server", 1 << 40, "after 3h ago", 5000, "true"},
		{"tiny", 100, "after 3h ago", 100, "true"},
		{"under the limit", 0, "port 1003 and before 2h ago", 3000, "false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := retrieve(context.Background(), c, &pb.PcapRequest{Uid: "x", MaxSize: tc.maxSize, Query: tc.query})
			if err != nil {
				t.Fatal(err)
			}
			want, _ := servertest.Expected(t, st, tc.query, pcap.Limits{MaxBytes: tc.limit})
			if !bytes.Equal(a.data, want) {
				t.Errorf("%d bytes; want the store's %d byte answer under a %d byte limit", len(a.data), len(want), tc.limit)
			}
			servertest.CheckByteLimit(t, a.data, tc.limit)
			if tc.truncated == "true" && int64(len(a.data)) < tc.limit {
				t.Errorf("%d bytes cut by a %d byte limit; want the packet that reached it too", len(a.data), tc.limit)
			}
			servertest.Packets(t, a.data) // a valid PCAP, cut at a packet boundary
			if got := a.truncated(); got != tc.truncated {
				t.Errorf("trailer %s = %q, want %q", rpc.TrailerTruncated, got, tc.truncated)
			}
			for _, n := range a.chunks {
				if n > 700 {
					t.Errorf("chunk of %d bytes over the default 700", n)
				}
			}
		})
	}
}

// TestFilter: the filter field refines the result on the server, as
// Steno-Filter does over HTTPS.
func TestFilter(t *testing.T) {
	t.Parallel()
	st, certs := servertest.Store(t, small), servertest.Certs(t)
	e := start(t, st, certs, rpc.Config{})
	c := e.client(t, certs.Client)
	a, err := retrieve(context.Background(), c, &pb.PcapRequest{Query: "after 3h ago", Filter: "ether[0] = 7"})
	if err != nil {
		t.Fatal(err)
	}
	pkts := servertest.Packets(t, a.data)
	if len(pkts) != (small.Packets+255-7)/256 {
		t.Errorf("%d packets, want those whose number is 7 mod 256", len(pkts))
	}
	for _, k := range pkts {
		if k%256 != 7 {
			t.Errorf("packet %d passed the filter", k)
		}
	}
}

func TestInvalidArgument(t *testing.T) {
	t.Parallel()
	limited := small
	limited.MaxScanBytes = 1000
	st, certs := servertest.Store(t, limited), servertest.Certs(t)
	e := start(t, st, certs, rpc.Config{})
	c := e.client(t, certs.Client)
	for _, tc := range []struct {
		name string
		req  *pb.PcapRequest
		msg  string
	}{
		{"bad port", &pb.PcapRequest{Query: "port 65536"}, "position 6"},
		{"empty query", &pb.PcapRequest{}, "empty query"},
		{"hostname", &pb.PcapRequest{Query: "host example.com"}, "position"},
		{"negative chunk", &pb.PcapRequest{Query: "port 1", ChunkSize: -1}, "chunk_size"},
		{"negative max", &pb.PcapRequest{Query: "port 1", MaxSize: -5}, "max_size"},
		{"long uid", &pb.PcapRequest{Query: "port 1", Uid: strings.Repeat("u", rpc.MaxUIDBytes+1)}, "uid"},
		{"bad filter", &pb.PcapRequest{Query: "port 1", Filter: "port"}, "syntax error"},
		{"unbounded negation over the limit", &pb.PcapRequest{Query: "not port 1003"}, "--max_scan_bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.m.Queries()[metrics.TransportGRPC].ByOutcome[metrics.OutcomeBadQuery]
			a, err := retrieve(context.Background(), c, tc.req)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.msg) {
				t.Fatalf("error %v; want InvalidArgument naming %q", err, tc.msg)
			}
			if len(a.data) != 0 {
				t.Errorf("%d bytes sent before the error", len(a.data))
			}
			if got := e.m.Queries()[metrics.TransportGRPC].ByOutcome[metrics.OutcomeBadQuery] - before; got != 1 {
				t.Errorf("bad_query count went up by %d, want 1", got)
			}
		})
	}
}

func TestRefused(t *testing.T) {
	t.Parallel()
	st, certs := servertest.Store(t, small), servertest.Certs(t)
	e := start(t, st, certs, rpc.Config{})
	for _, tc := range []struct {
		name string
		p    testcerts.Pair
	}{
		{"no client certificate", testcerts.Pair{}},
		{"another CA", certs.OtherCAClient},
		{"expired", certs.ExpiredClient},
		{"server usage only", certs.ServerUsageClient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.m.Queries()[metrics.TransportGRPC]
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			a, err := retrieve(ctx, e.client(t, tc.p), &pb.PcapRequest{Query: "port 1001"})
			if err == nil || status.Code(err) == codes.DeadlineExceeded || len(a.data) != 0 {
				t.Fatalf("err %v, %d bytes; want the handshake refused", err, len(a.data))
			}
			t.Logf("refused: %v", err)
			if after := e.m.Queries()[metrics.TransportGRPC]; after.ByOutcome[metrics.OutcomeOK] != before.ByOutcome[metrics.OutcomeOK] {
				t.Error("a query ran")
			}
		})
	}
	t.Run("plaintext client", func(t *testing.T) {
		conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := retrieve(ctx, pb.NewStenographerClient(conn), &pb.PcapRequest{Query: "port 1001"}); err == nil || status.Code(err) == codes.DeadlineExceeded {
			t.Fatalf("plaintext gRPC answered: %v", err)
		}
	})
}

// TestClientCancel stops reading a large stream and cancels it: the
// server's query must end and be counted as canceled.
func TestClientCancel(t *testing.T) {
	t.Parallel()
	st, certs := servertest.Store(t, big), servertest.Certs(t)
	e := start(t, st, certs, rpc.Config{})
	// Small fixed windows: a client that stops reading holds the server.
	c := e.client(t, certs.Client, grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	before := e.m.Queries()[metrics.TransportGRPC]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := c.RetrievePcap(ctx, &pb.PcapRequest{Uid: "c", ChunkSize: 1 << 20, Query: "after 3h ago"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	if n := e.m.Queries()[metrics.TransportGRPC].InFlight; n != 1 {
		t.Errorf("%d queries in flight while streaming, want 1", n)
	}
	cancel()
	servertest.Eventually(t, "the query to end", func() bool {
		return e.m.Queries()[metrics.TransportGRPC].InFlight == 0
	})
	after := e.m.Queries()[metrics.TransportGRPC]
	if got := after.ByOutcome[metrics.OutcomeCanceled] - before.ByOutcome[metrics.OutcomeCanceled]; got != 1 {
		t.Errorf("canceled count went up by %d, want 1 (outcomes %v)", got, after.ByOutcome)
	}
	if sent, total := after.Bytes-before.Bytes, int64(big.Packets*(big.Size+16)); sent < pcap.FileHeaderSize || sent >= total {
		t.Errorf("server produced %d bytes of %d: the query was not cut short", sent, total)
	}
}

func TestShutdownCancelsStreams(t *testing.T) {
	t.Parallel()
	st, certs := servertest.Store(t, big), servertest.Certs(t)
	e := start(t, st, certs, rpc.Config{})
	c := e.client(t, certs.Client, grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	stream, err := c.RetrievePcap(context.Background(), &pb.PcapRequest{ChunkSize: 1 << 20, Query: "after 3h ago"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	servertest.MustStop(t, "a stream in flight", e.stop)
	if n := e.m.Queries()[metrics.TransportGRPC].InFlight; n != 0 {
		t.Errorf("%d queries in flight after shutdown", n)
	}
	for {
		if _, err := stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				t.Error("interrupted stream ended cleanly; want an error")
			}
			break
		}
	}
}

// TestFirstPacketAtOnce asks for 256 KiB chunks and reads only the first
// messages: the PCAP header and the first packet must each arrive in
// messages of their own, while the query still runs (the client's small
// window holds the rest), instead of waiting for a chunk to fill.
func TestFirstPacketAtOnce(t *testing.T) {
	t.Parallel()
	st, certs := servertest.Store(t, big), servertest.Certs(t)
	e := start(t, st, certs, rpc.Config{})
	c := e.client(t, certs.Client, grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	want, _ := servertest.Expected(t, st, "after 3h ago", pcap.Limits{MaxPackets: 1})
	for _, chunk := range []int64{1000, 256 << 10} {
		t.Run(fmt.Sprint(chunk), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stream, err := c.RetrievePcap(ctx, &pb.PcapRequest{Uid: "first", ChunkSize: chunk, Query: "after 3h ago"})
			if err != nil {
				t.Fatal(err)
			}
			var got []byte
			for len(got) < len(want) {
				resp, err := stream.Recv()
				if err != nil {
					t.Fatalf("after %d bytes: %v", len(got), err)
				}
				got = append(got, resp.Pcap...)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("first messages: %d bytes; want exactly the header and the first packet (%d bytes)", len(got), len(want))
			}
			if n := e.m.Queries()[metrics.TransportGRPC].InFlight; n != 1 {
				t.Errorf("%d queries in flight once the first packet arrived, want 1 (the result is %d MB)", n, big.Packets*big.Size>>20)
			}
			// The server learns of the cancellation a moment later: the
			// next subtest counts only its own query.
			cancel()
			start := time.Now()
			for e.m.Queries()[metrics.TransportGRPC].InFlight != 0 {
				if time.Since(start) > 10*time.Second {
					t.Fatal("the cancelled query still runs after 10 s")
				}
				time.Sleep(time.Millisecond)
			}
			t.Logf("the cancelled query ended %v after the cancellation", time.Since(start))
		})
	}
}

// TestQueryTooLong: a query over serve.MaxQueryBytes is INVALID_ARGUMENT
// naming the limit, and a message far over it is refused by gRPC before
// it is decoded; the server goes on answering.
func TestQueryTooLong(t *testing.T) {
	t.Parallel()
	st, certs := servertest.Store(t, small), servertest.Certs(t)
	e := start(t, st, certs, rpc.Config{})
	c := e.client(t, certs.Client)
	long := strings.Repeat("(", serve.MaxQueryBytes+1)
	_, err := retrieve(context.Background(), c, &pb.PcapRequest{Query: long})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "MaxQueryBytes") {
		t.Errorf("%d byte query: %v; want InvalidArgument naming MaxQueryBytes", len(long), err)
	}
	_, err = retrieve(context.Background(), c, &pb.PcapRequest{Query: strings.Repeat("(", 4<<20)})
	if code := status.Code(err); code != codes.ResourceExhausted && code != codes.InvalidArgument {
		t.Errorf("4 MB query: %v; want it refused", err)
	}
	if a, err := retrieve(context.Background(), c, &pb.PcapRequest{Query: "port 1001"}); err != nil || len(a.data) <= pcap.FileHeaderSize {
		t.Errorf("query after the refusals: %d bytes, %v", len(a.data), err)
	}
}

type captureDown time.Time

func (c captureDown) CaptureState() (bool, time.Time) { return false, time.Time(c) }

// TestUnreadableFileAndCaptureDown spoils one index file and reports
// capture down: the stream has every other file's packets, its trailer
// counts and names the file, and its header says since when capture is
// down.
func TestUnreadableFileAndCaptureDown(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st, certs := servertest.StoreIn(t, dir, small), servertest.Certs(t)
	bad := st.Files(1)[4]
	if err := os.WriteFile(filepath.Join(dir, "IDX1", bad.Name), bytes.Repeat([]byte{0xee}, 5000), 0o644); err != nil {
		t.Fatal(err)
	}
	down := time.Now().Add(-time.Hour).Truncate(time.Second)
	e := start(t, st, certs, rpc.Config{Capture: captureDown(down)})
	c := e.client(t, certs.Client)
	var header metadata.MD
	stream, err := c.RetrievePcap(context.Background(), &pb.PcapRequest{Uid: "u", Query: "after 3h ago"})
	if err != nil {
		t.Fatal(err)
	}
	var data []byte
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data = append(data, resp.Pcap...)
	}
	header, _ = stream.Header()
	if n := len(servertest.Packets(t, data)); n != small.Packets-100 {
		t.Errorf("%d packets, want the %d of the readable files", n, small.Packets-100)
	}
	tr := stream.Trailer()
	if v := tr.Get(rpc.TrailerFileErrors); len(v) != 1 || v[0] != "1" {
		t.Errorf("trailer %s = %q, want 1", rpc.TrailerFileErrors, v)
	}
	if v := tr.Get(rpc.TrailerFileErrorDetail); len(v) != 1 || !strings.Contains(v[0], bad.Name) {
		t.Errorf("trailer %s = %q, want it to name %s", rpc.TrailerFileErrorDetail, v, bad.Name)
	}
	want := "down since " + down.UTC().Format(time.RFC3339)
	if v := header.Get(rpc.HeaderCapture); len(v) != 1 || v[0] != want {
		t.Errorf("header %s = %q, want %q", rpc.HeaderCapture, v, want)
	}
}
