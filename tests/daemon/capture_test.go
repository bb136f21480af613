package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "github.com/stenographer-ng/stenographer/protobuf"
	"github.com/stenographer-ng/stenographer/stenographer/server/servertest"
	"github.com/stenographer-ng/stenographer/tests/internal/daemon"
	"github.com/stenographer-ng/stenographer/tests/internal/netns"
	"github.com/stenographer-ng/stenographer/tests/internal/oracle"
	"github.com/stenographer-ng/stenographer/tests/internal/pcapfile"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// captureFiles are the corpus files replayed by TestCaptureAndQuery: the
// best mixed-traffic file and two small ones with VLAN and MPLS rows in
// oracle.tsv.
var captureFiles = []string{"pcapplusplus-many-protocols.pcap", "arkime-mpls-basic.pcap", "zeek-mixed-vlan-mpls.pcap"}

// generatedQueries select parts of the generated frames (addresses and
// encapsulations of tests/internal/gen).
var generatedQueries = []string{
	"host 10.1.0.1", "host 2001:db8::1", "net 10.0.0.0/8 and tcp", "udp or icmp", "port 80",
	"vlan 100", "mpls 1000", "port 53", "ip proto 58", "(tcp or udp) and host 10.2.0.2",
}

// TestCaptureAndQuery runs the daemon with two capture threads over a
// veth, replays the generated pcap and a few corpus files, and checks what
// it serves: every frame sent, byte for byte, in time order; every query of
// oracle.tsv for those files (counts from the oracle evaluated over all the
// frames sent) through scripts/stenoread, with tcpdump reading the result;
// legacy-syntax queries giving the same bytes as their modern forms;
// byte-identical results through HTTPS, stenogrpc and a Python client
// generated from protobuf/steno.proto; packet and byte limits; bad queries
// and headers (400 with a reason, INVALID_ARGUMENT); the debug endpoints
// and /metrics.
func TestCaptureAndQuery(t *testing.T) {
	testenv.RequireTools(t, "tcpreplay", "tcpdump")
	pcaps := []string{generatedPcap(t)}
	queries := append([]string(nil), generatedQueries...)
	if dir := testenv.SharedPcapDir(t); dir != "" {
		rows, err := oracle.ReadTSV(filepath.Join(dir, "oracle.tsv"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range captureFiles {
			pcaps = append(pcaps, filepath.Join(dir, f))
			for _, r := range rows {
				if r.File == f {
					queries = append(queries, r.Query)
				}
			}
		}
	}
	frames := framesOf(t, pcaps...)

	pair := netns.NewPair(t)
	// Two threads (PACKET_FANOUT): results merge both threads' files.
	d := daemon.Start(t, pair, daemon.Options{Threads: 2, RPC: true, RPCEdit: func(r *daemon.RPC) {
		r.ClientPcapMaxSize = 200 << 20 // no default 5 MB cut on the broad queries
	}})
	replay(t, pair, 3000, len(frames), pcaps...)
	waitCount(t, d, everything, len(frames), 2*time.Minute)
	t.Logf("%d frames from %d pcaps captured and served; %d + %d packet files", len(frames), len(pcaps), len(d.Files(0)), len(d.Files(1)))

	// Served exactly what was sent, byte for byte (VLAN tags the kernel
	// stripped restored), in timestamp order across the two threads.
	all := parsePCAP(t, everything, d.MustQuery(everything, nil)).Packets
	counts := map[string]int{}
	for _, f := range frames {
		counts[string(f)]++
	}
	for i, p := range all {
		counts[string(p.Data)]--
		if i > 0 && p.Time.Before(all[i-1].Time) {
			t.Errorf("result packet %d (%v) is older than packet %d (%v): threads not merged in time order", i, p.Time, i-1, all[i-1].Time)
			break
		}
	}
	for _, c := range counts {
		if c != 0 {
			t.Errorf("the packets served differ from the frames sent (as a multiset)")
			break
		}
	}
	for i := 0; i < 2; i++ {
		// Queries find packets before their files are finished.
		waitFinished(t, d, i)
		var bytes int64
		for _, n := range d.Files(i) {
			if fi, err := os.Stat(filepath.Join(d.Config.Threads[i].PacketsDirectory, n)); err == nil {
				bytes += fi.Size()
			}
		}
		if bytes == 0 {
			t.Errorf("thread %d stored nothing: fanout did not spread the flows", i)
		}
	}

	t.Run("stenoread", func(t *testing.T) {
		tmp := t.TempDir()
		for i, q := range queries {
			want := count(t, q, frames)
			if want == 0 {
				t.Errorf("%q selects none of the frames sent: the check would prove nothing", q)
			}
			out := filepath.Join(tmp, fmt.Sprintf("q%d.pcap", i))
			r := d.Stenoread(2*time.Minute, q, "-w", out)
			if r.Err != nil {
				t.Errorf("stenoread %q: %v", q, r.Err)
				continue
			}
			f, err := pcapfile.Read(out)
			if err != nil {
				t.Errorf("stenoread %q -w: tcpdump wrote no readable pcap: %v", q, err)
				continue
			}
			if len(f.Packets) != want {
				t.Errorf("stenoread %q: %d packets, the oracle says %d", q, len(f.Packets), want)
			}
		}
		// tcpdump printing packets: one line per packet with -q -n (the
		// generated frames have no multi-line decodes under -q).
		r := d.Stenoread(time.Minute, "host 10.1.0.1", "-n", "-q")
		if r.Err != nil {
			t.Fatalf("stenoread -n: %v", r.Err)
		}
		lines := strings.Count(string(r.Stdout), "\n")
		if want := count(t, "host 10.1.0.1", frames); lines < want || want == 0 {
			t.Errorf("stenoread 'host 10.1.0.1' -n -q printed %d lines, want at least %d:\n%s", lines, want, r.Stdout)
		}
		if !strings.Contains(string(r.Stdout), "10.1.0.1") {
			t.Errorf("tcpdump output does not mention 10.1.0.1:\n%s", r.Stdout)
		}
	})

	t.Run("legacy syntax", func(t *testing.T) {
		for _, tc := range []struct{ legacy, modern string }{
			{"ip=10.1.0.1", "host 10.1.0.1"},
			{"port=53", "port 53"},
			{"protocol=17", "udp"},
			{"ip=10.1.0.1 port=53|port=80", "host 10.1.0.1 and (port 53 or port 80)"},
			{"ip=10.1.0.0-10.1.0.255 last=1h", "net 10.1.0.0/24 and after 1h ago"},
		} {
			a, b := d.MustQuery(tc.legacy, nil), d.MustQuery(tc.modern, nil)
			n := len(parsePCAP(t, tc.modern, b).Packets)
			if !bytes.Equal(a, b) || n == 0 {
				t.Errorf("%q: %d bytes; %q: %d bytes, %d packets; want the same non-empty result", tc.legacy, len(a), tc.modern, len(b), n)
			}
		}
	})

	t.Run("limits", func(t *testing.T) {
		tmp := t.TempDir()
		// Limits below what was captured, so each one really cuts: the
		// generated frames alone are a few dozen packets and a few KB.
		for _, n := range []int{1, 7, min(100, len(frames)-1)} {
			out := filepath.Join(tmp, fmt.Sprintf("lim%d.pcap", n))
			must(t, d.Stenoread(time.Minute, "--limit-packets", strconv.Itoa(n), everything, "-w", out))
			f, err := pcapfile.Read(out)
			if err != nil {
				t.Fatal(err)
			}
			if len(f.Packets) != n {
				t.Errorf("--limit-packets %d: %d packets", n, len(f.Packets))
			}
		}
		full := d.MustQuery(everything, nil)
		for _, n := range []int{24 + 16 + 60, min(10000, len(full)/2), min(100000, len(full)-1)} {
			body := d.MustQuery(everything, map[string]string{"Steno-Limit-Bytes": strconv.Itoa(n)})
			// As the reference: the packet that crosses the limit is sent.
			if len(body) <= n {
				t.Errorf("Steno-Limit-Bytes %d: %d bytes; want the crossing packet too", n, len(body))
			}
			servertest.CheckByteLimit(t, body, int64(n))
			f := parsePCAP(t, "limited result", body)
			if !bytes.HasPrefix(full, body) {
				t.Errorf("Steno-Limit-Bytes %d: the %d bytes (%d packets) are not a prefix of the full result", n, len(body), len(f.Packets))
			}
		}
	})

	t.Run("bad query", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, q := range []string{"port 70000", "host example.com", "tcp and", "(udp"} {
			r, err := d.Query(ctx, q, nil)
			if err != nil {
				t.Fatal(err)
			}
			reason := strings.TrimSpace(string(r.Body))
			if r.Status != http.StatusBadRequest || reason == "" || strings.Contains(reason, "\n") {
				t.Errorf("query %q: status %d, body %q; want 400 and a one-line reason", q, r.Status, reason)
			}
		}
		r, err := d.Query(ctx, everything, map[string]string{"Steno-Limit-Packets": "many"})
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != http.StatusBadRequest {
			t.Errorf("Steno-Limit-Packets: many: status %d, want 400", r.Status)
		}
		// stenoread shows the reason and fails.
		sr := d.Stenoread(time.Minute, "port 70000", "-n")
		if sr.Err == nil || !strings.Contains(string(sr.Stderr), "70000") {
			t.Errorf("stenoread 'port 70000': err %v, stderr %q; want a failure naming the problem", sr.Err, sr.Stderr)
		}
	})

	// gRPC: the same bytes as HTTPS for the same query.
	grpcQueries := []string{everything, "host 10.1.0.1", "vlan 100 or mpls 1000", queries[len(queries)-1]}
	t.Run("stenogrpc", func(t *testing.T) {
		bin := testenv.Stenogrpc(t)
		tmp := t.TempDir()
		for i, q := range grpcQueries {
			want := d.MustQuery(q, nil)
			out := filepath.Join(tmp, fmt.Sprintf("g%d.pcap", i))
			r := d.Run(2*time.Minute, bin, "--server", daemon.GRPCAddr(),
				"--ca", filepath.Join(d.CertDir, "ca_cert.pem"),
				"--cert", filepath.Join(d.CertDir, "client_cert.pem"),
				"--key", filepath.Join(d.CertDir, "client_key.pem"),
				"--out", out, q)
			if r.Err != nil {
				t.Errorf("stenogrpc %q: %v", q, r.Err)
				continue
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("stenogrpc %q: %d bytes differ from the HTTPS result's %d", q, len(got), len(want))
			}
		}
	})

	t.Run("go client", func(t *testing.T) {
		conn := d.GRPCConn(nil)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		want := d.MustQuery(everything, nil)
		res, err := daemon.Retrieve(ctx, conn, &pb.PcapRequest{Uid: "go-1", ChunkSize: 4096, Query: everything})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(res.PCAP, want) {
			t.Errorf("RetrievePcap: %d bytes differ from the HTTPS result's %d", len(res.PCAP), len(want))
		}
		if len(res.UIDs) != 1 || res.UIDs[0] != "go-1" {
			t.Errorf("responses carry uids %v, want only go-1", res.UIDs)
		}
		if min := len(want) / 4096; res.Chunks < min {
			t.Errorf("%d responses for %d bytes in chunks of 4096", res.Chunks, len(want))
		}
		// max_size cuts the stream short at a packet boundary and says so;
		// below the full result's size, whatever traffic was captured.
		limit := min(50000, len(want)/2)
		res, err = daemon.Retrieve(ctx, conn, &pb.PcapRequest{Uid: "go-2", MaxSize: int64(limit), Query: everything})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.PCAP) <= limit {
			t.Errorf("max_size %d: %d bytes; want the crossing packet too", limit, len(res.PCAP))
		}
		servertest.CheckByteLimit(t, res.PCAP, int64(limit))
		parsePCAP(t, "max_size result", res.PCAP)
		if !bytes.HasPrefix(want, res.PCAP) {
			t.Errorf("max_size result is not a prefix of the full result")
		}
		if v := res.Trailer.Get("steno-truncated"); len(v) == 0 || v[0] != "true" {
			t.Errorf("max_size cut the result but the trailer says steno-truncated=%v (trailer %v)", v, res.Trailer)
		}
		// A bad query is INVALID_ARGUMENT.
		_, err = daemon.Retrieve(ctx, conn, &pb.PcapRequest{Query: "port 70000"})
		if err == nil || !strings.Contains(err.Error(), "InvalidArgument") {
			t.Errorf("bad query over gRPC: %v, want code InvalidArgument", err)
		}
	})

	t.Run("python client", func(t *testing.T) {
		py := pythonClient(t)
		tmp := t.TempDir()
		for i, q := range grpcQueries {
			want := d.MustQuery(q, nil)
			out := filepath.Join(tmp, fmt.Sprintf("py%d.pcap", i))
			r := d.Run(2*time.Minute, "/usr/bin/python3", py.script, py.genDir, daemon.GRPCAddr(),
				filepath.Join(d.CertDir, "ca_cert.pem"), filepath.Join(d.CertDir, "client_cert.pem"),
				filepath.Join(d.CertDir, "client_key.pem"), q, out)
			if r.Err != nil {
				t.Fatalf("python client %q: %v\n%s", q, r.Err, r.Stdout)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("python client %q: %d bytes differ from the HTTPS result's %d", q, len(got), len(want))
			}
		}
	})

	t.Run("debug and metrics", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		code, body, err := d.Get(ctx, "/debug/config")
		if err != nil || code != http.StatusOK {
			t.Fatalf("/debug/config: %d %v", code, err)
		}
		var cfg map[string]any
		if err := json.Unmarshal(body, &cfg); err != nil {
			t.Errorf("/debug/config is not JSON: %v: %s", err, testenv.Tail(body, 300))
		} else if !strings.Contains(string(body), pair.CaptureIf) {
			t.Errorf("/debug/config does not show Interface %s: %s", pair.CaptureIf, testenv.Tail(body, 500))
		}
		// The reference's text: name<TAB>value lines.
		code, body, err = d.Get(ctx, "/debug/stats")
		if err != nil || code != http.StatusOK || !regexp.MustCompile(`(?m)^current_files\t[1-9]\d*$`).Match(body) ||
			!regexp.MustCompile(`(?m)^capture_up\t1$`).Match(body) {
			t.Errorf("/debug/stats: %d %v %q", code, err, testenv.Tail(body, 600))
		}
		for i := 0; i < 2; i++ {
			path := fmt.Sprintf("/debug/t%d/files", i)
			code, body, err = d.Get(ctx, path)
			files := d.Files(i)
			if err != nil || code != http.StatusOK || len(files) == 0 || !strings.Contains(string(body), files[0]) {
				t.Errorf("%s: %d %v; want it to list %v: %s", path, code, err, files[:min(len(files), 1)], testenv.Tail(body, 500))
			}
		}
		m, err := d.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		// The test fetched the whole result at least once before.
		servedAtLeast := len(d.MustQuery(everything, nil))
		if v := m["stenographer_captured_packets_total"]; v < float64(len(frames)) {
			t.Errorf("stenographer_captured_packets_total = %v, want >= %d", v, len(frames))
		}
		if v, ok := m[`stenographer_capture_up{thread="0"}`]; !ok || v != 1 {
			t.Errorf("stenographer_capture_up{thread=0} = %v (present %v) while capturing, want 1", v, ok)
		}
		if v := m["stenographer_build_info"]; v != 1 {
			t.Errorf("stenographer_build_info = %v, want 1", v)
		}
		if v := m["stenographer_stenotype_restarts_total"]; v != 1 {
			t.Errorf("stenographer_stenotype_restarts_total = %v, want 1 (one start, no restart)", v)
		}
		// The rest of the metrics the issue lists, after the queries above.
		for _, c := range []struct {
			name   string
			lo, hi float64
		}{
			{"stenographer_dropped_packets_total", 0, 0},
			{`stenographer_stored_files{thread="0"}`, 1, 1e6},
			{`stenographer_stored_files{thread="1"}`, 1, 1e6},
			{`stenographer_stored_bytes{thread="0"}`, 1, 1e12},
			{`stenographer_oldest_packet_age_seconds{thread="0"}`, 0.001, 3600},
			{"stenographer_queries_total", 20, 1e9},
			{"stenographer_query_duration_seconds_count", 20, 1e9},
			{"stenographer_served_bytes_total", float64(servedAtLeast), 1e12},
			{"stenographer_served_packets_total", float64(len(frames)), 1e12},
		} {
			v, ok := m[c.name]
			if !ok || v < c.lo || v > c.hi {
				t.Errorf("/metrics: %s = %v (present %v), want %v..%v", c.name, v, ok, c.lo, c.hi)
			}
		}
	})
}

// pyClient is a Python gRPC client generated at test time.
type pyClient struct{ script, genDir string }

// pythonClient generates steno_pb2*.py from protobuf/steno.proto with
// Debian's python3-grpc-tools and writes a small client that streams
// RetrievePcap into a file.
func pythonClient(t *testing.T) pyClient {
	t.Helper()
	const py = "/usr/bin/python3" // Debian's, with python3-grpc-tools
	if _, err := os.Stat(py); err != nil {
		t.Fatalf("%s not found (apt-get install python3-grpc-tools): %v", py, err)
	}
	dir := t.TempDir()
	proto := filepath.Join(testenv.Root(t), "protobuf")
	r := testenv.Run(time.Minute, py, "-m", "grpc_tools.protoc", "-I", proto, "--python_out="+dir, "--grpc_python_out="+dir,
		filepath.Join(proto, "steno.proto"))
	if r.Err != nil {
		t.Fatalf("generating the Python client (apt-get install python3-grpc-tools): %v", r.Err)
	}
	script := filepath.Join(dir, "client.py")
	if err := os.WriteFile(script, []byte(pythonClientSource), 0o644); err != nil {
		t.Fatal(err)
	}
	return pyClient{script: script, genDir: dir}
}

const pythonClientSource = `"""RetrievePcap client: client.py GENDIR SERVER CA CERT KEY QUERY OUT."""
import sys

gen_dir, server, ca, cert, key, query, out = sys.argv[1:8]
sys.path.insert(0, gen_dir)

import grpc  # noqa: E402
import steno_pb2  # noqa: E402
import steno_pb2_grpc  # noqa: E402


def read(path):
    with open(path, "rb") as f:
        return f.read()


creds = grpc.ssl_channel_credentials(
    root_certificates=read(ca), private_key=read(key), certificate_chain=read(cert))
options = [("grpc.enable_http_proxy", 0), ("grpc.max_receive_message_length", 64 << 20)]
with grpc.secure_channel(server, creds, options=options) as channel:
    stub = steno_pb2_grpc.StenographerStub(channel)
    request = steno_pb2.PcapRequest(uid="python-1", chunk_size=65536, max_size=200 << 20, query=query)
    chunks = 0
    with open(out, "wb") as f:
        for response in stub.RetrievePcap(request, timeout=120):
            if response.uid != "python-1":
                sys.exit("response uid %r, want python-1" % response.uid)
            f.write(response.pcap)
            chunks += 1
print(chunks)
`
