#!/usr/bin/env bash
# Daemon benchmark (in `make bench`, after query.sh): the cost of the
# transports. Serves the query benchmark's store (tests/bench/mkbig's >2 GB
# capture imported with `stenotype --pcap_in`, as query.sh builds it) with
# the real stenographer, then times a rare-host query, a broad query and
# a scan-sized one (`tcp`, over 1 GB of result) through HTTPS (curl with
# the client certificate, as stenocurl does) and gRPC (stenogrpc), next to
# the offline stenoquery on the same files and, for the scan-sized query,
# `tcpdump -r` filtering the same packets saved as one pcap, and HTTPS's
# floor: curl from tests/bench/tlsfloor, a server with the daemon's TLS
# stack sending as many bytes from memory without a query: p50/p95 wall
# time of BENCH_DAEMON_RUNS runs (each a new client process, TLS handshake
# included), MB/s of the result at the median, CPU per run and per GB of
# result of the client and of the daemon, and the bytes the daemon moved
# through read and write system calls per result byte (the kernel's
# copies: page cache to daemon, daemon to socket). The copies in user
# space, counted from the code path, are in DESIGN.md ("Where the time
# goes"). BENCH_DAEMON_PERF=FILE records a system-wide perf profile
# (call graphs) there during the scan-sized query's runs through
# BENCH_DAEMON_PERF_VIA (https or grpc; default https): `perf report
# --comm stenographer` (or curl, stenogrpc) reads each end's share.
#
# The daemon runs in a private network namespace whose only other link is
# an idle veth pair (both ends inside, IPv6 off) for its stenotype, so
# nothing is captured into the store; the files that idle stenotype leaves
# are removed afterwards.
#
# Store: reused from $BENCH_QUERY_DIR (default /var/tmp/steno-qbench) when
# query.sh left a complete one there (BENCH_QUERY_DIR set), else built and,
# unless BENCH_QUERY_DIR is set, removed at the end.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="${BENCH_BIN:-$ROOT/build/bin}" # BENCH_BIN: binaries to time (default: this tree's), for before/after figures
SHARED="${STENO_SHARED:-$(dirname "$ROOT")/shared}"
RUNS="${BENCH_DAEMON_RUNS:-21}"
BROAD_RUNS="${BENCH_DAEMON_BROAD_RUNS:-7}"
CHUNK="${BENCH_GRPC_CHUNK:-262144}"
WORK="${BENCH_QUERY_DIR:-/var/tmp/steno-qbench}"
RARE="${BENCH_RARE_QUERY:-host 212.199.202.9}"
BROAD="${BENCH_BROAD_QUERY:-port 443}"
SCAN_RUNS="${BENCH_DAEMON_SCAN_RUNS:-5}"
SCAN="${BENCH_SCAN_QUERY:-tcp}"
SCAN_FILTER="${BENCH_SCAN_FILTER:-tcp}" # tcpdump's expression for the same packets
# BENCH_NS_PREFIX: names the namespace and the veth (default stbench), so
# several benchmarks can run at once.
PREFIX="${BENCH_NS_PREFIX:-stbench}"
HTTPS_PORT=1234 GRPC_PORT=8443 FLOOR_PORT=1240
DAEMON="${STENO_DAEMON_BIN:-$BIN/stenographer}"
export PATH=/usr/local/go/bin:$PATH
# shellcheck source=SCRIPTDIR/lib.sh
source "$ROOT/tests/bench/lib.sh"

# ---- inner part: runs inside the namespace, prints the table ----
if [[ "${STENO_BENCH_INNER:-}" == 1 ]]; then
  CERTS=$1 SCAN_PCAP=$2
  # CPU clock ticks: of this shell's finished children, and of the daemon.
  tck=$(getconf CLK_TCK)
  children_ticks() { awk '{print $16 + $17}' "/proc/$$/stat"; }
  # shellcheck disable=SC2317  # called through "$how"
  offline() { "$BIN/stenoquery" --dir "$WORK/store" "$1"; }
  # shellcheck disable=SC2317
  https() { https_query "$CERTS" "$HTTPS_PORT" "$1"; }
  # shellcheck disable=SC2317
  grpc() {
    "$BIN/stenogrpc" --server "127.0.0.1:$GRPC_PORT" --ca "$CERTS/ca_cert.pem" --cert "$CERTS/client_cert.pem" \
      --key "$CERTS/client_key.pem" --chunk_size "$CHUNK" --max_size 100000000000 --out - "$1"
  }
  # Bytes through read and write system calls: of this shell's reaped
  # children (the kernel adds a child's counts to its parent's at wait)
  # and of the daemon.
  io_bytes() { awk '$1 == "rchar:" {r = $2} $1 == "wchar:" {w = $2} END {print r, w}' "/proc/$1/io"; }
  # shellcheck disable=SC2317  # $bytes: the scan-sized result's size
  floor() {
    curl -sS --fail --cert "$CERTS/client_cert.pem" --key "$CERTS/client_key.pem" --cacert "$CERTS/ca_cert.pem" \
      --data-raw "$bytes" -o - "https://127.0.0.1:$FLOOR_PORT/query"
  }
  # shellcheck disable=SC2317
  tcpdump_scan() { tcpdump -nr "$SCAN_PCAP" -w - "$SCAN_FILTER"; } # as root, tcpdump chowns a -w file: /dev/null too
  fmt='%-18s %-8s %8s %7s %8s %8s %6s %9s %9s %7s %7s %6s %6s\n'
  # shellcheck disable=SC2059
  printf "$fmt" query via packets MB p50_ms p95_ms MB/s client_ms server_ms cli_s/GB srv_s/GB srv_rd srv_wr
  for spec in "$RUNS:$RARE" "$BROAD_RUNS:$BROAD" "$SCAN_RUNS:$SCAN"; do
    n=${spec%%:*} q=${spec#*:}
    pk=$("$BIN/stenoquery" --dir "$WORK/store" --count "$q")
    hows="offline https grpc"
    if [[ $q == "$SCAN" ]]; then
      offline "$q" >"$SCAN_PCAP"
      bytes=$(stat -c %s "$SCAN_PCAP")
      hows="tcpdump_scan floor offline https grpc"
    else
      bytes=$(offline "$q" | wc -c)
    fi
    for how in https grpc; do
      got=$("$how" "$q" | wc -c)
      [[ $got == "$bytes" ]] || { echo "daemon bench: $how returned $got bytes for '$q', stenoquery $bytes" >&2; exit 1; }
    done
    for how in $hows; do
      perf_pid=
      if [[ -n "${BENCH_DAEMON_PERF:-}" && $q == "$SCAN" && $how == "${BENCH_DAEMON_PERF_VIA:-https}" ]]; then
        perf record -a -g -o "$BENCH_DAEMON_PERF" >/dev/null 2>&1 &
        perf_pid=$!
        sleep 1
      fi
      spid=$DAEMON_PID
      [[ $how != floor ]] || spid=$FLOOR_PID
      c0=$(children_ticks) d0=$(proc_ticks "$spid")
      read -r dr0 dw0 < <(io_bytes "$spid")
      t=$(times_us "$n" "$how" "$q")
      c1=$(children_ticks) d1=$(proc_ticks "$spid")
      read -r dr1 dw1 < <(io_bytes "$spid")
      [[ -z $perf_pid ]] || { kill -INT "$perf_pid"; wait "$perf_pid" || true; }
      p50=$(pct 50 <<<"$t") p95=$(pct 95 <<<"$t")
      # CPU per run in ms; the warm-up run is included, so divide by n+1.
      ccpu=$(echo "($c1 - $c0) * 1000 / $tck / ($n + 1)" | bc -l)
      gb=$(echo "$bytes / 1000000000" | bc -l)
      scpu=- sgb=- srd=- swr=-
      if [[ $how == https || $how == grpc || $how == floor ]]; then
        scpu=$(echo "($d1 - $d0) * 1000 / $tck / ($n + 1)" | bc -l)
        sgb=$(printf '%.2f' "$(echo "$scpu / 1000 / $gb" | bc -l)")
        srd=$(printf '%.2f' "$(echo "($dr1 - $dr0) / ($n + 1) / $bytes" | bc -l)")
        swr=$(printf '%.2f' "$(echo "($dw1 - $dw0) / ($n + 1) / $bytes" | bc -l)")
        scpu=$(printf '%.1f' "$scpu")
      fi
      # shellcheck disable=SC2059
      printf "$fmt" "$q" "${how%_scan}" "$pk" "$(printf '%.1f' "$(echo "$bytes/1000000" | bc -l)")" \
        "$(printf '%.1f' "$(echo "$p50/1000" | bc -l)")" "$(printf '%.1f' "$(echo "$p95/1000" | bc -l)")" \
        "$(printf '%.0f' "$(echo "$bytes/$p50" | bc -l)")" "$(printf '%.1f' "$ccpu")" "$scpu" \
        "$(printf '%.2f' "$(echo "$ccpu / 1000 / $gb" | bc -l)")" "$sgb" "$srd" "$swr"
    done
  done
  rm -f "$SCAN_PCAP"
  exit 0
fi

# ---- outer part: store, namespace, daemon ----
bench_need "daemon bench" "$DAEMON" "$BIN/stenogrpc" "$BIN/stenoquery" "$BIN/stenotype"
command -v tcpdump >/dev/null || { echo "daemon bench: tcpdump not found (make deps)" >&2; exit 1; }

echo "== daemon benchmark =="
bench_store "daemon bench"

RUN=$(mktemp -d /tmp/steno-dbench.XXXXXX)
NS="$PREFIX-$$"
DAEMON_PID='' FLOOR_PID=''
start_us=$(date +%s%6N)
cleanup() {
  set +e
  stop_pid "$FLOOR_PID"
  bench_teardown "$start_us" "$WORK/store"
  if [[ $BENCH_BUILT == 1 && -z "${BENCH_QUERY_DIR:-}" ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

store_size "$WORK/store"
bench_netns "$NS"
mkdir -p "$RUN/certs" "$RUN/rpc"
daemon_config "$RUN/config" "$WORK/store" "${PREFIX}0" "$HTTPS_PORT" "$RUN/certs" \
  "\"Rpc\": {\"CaCert\": \"$RUN/certs/ca_cert.pem\", \"ServerKey\": \"$RUN/certs/server_key.pem\",
          \"ServerCert\": \"$RUN/certs/server_cert.pem\", \"ServerPort\": $GRPC_PORT, \"ServerPcapPath\": \"$RUN/rpc\",
          \"ServerPcapMaxSize\": 100000000000, \"ClientPcapChunkSize\": $CHUNK, \"ClientPcapMaxSize\": 100000000000}"
STENOGRAPHER_CONFIG="$RUN/config" "$ROOT/scripts/stenokeys.sh" root root >/dev/null
start_daemon "$RUN/config" "$RUN/log" "$RUN/certs" "$HTTPS_PORT" "$WORK/store" "$RARE"
(cd "$ROOT" && go build -o "$RUN/tlsfloor" ./tests/bench/tlsfloor)
ip netns exec "$NS" "$RUN/tlsfloor" --certs "$RUN/certs" --addr "127.0.0.1:$FLOOR_PORT" >"$RUN/floor.log" 2>&1 &
FLOOR_PID=$!
for _ in $(seq 1 100); do grep -q listening "$RUN/floor.log" && break; sleep 0.1; done
grep -q listening "$RUN/floor.log" || { echo "daemon bench: tlsfloor did not start:" >&2; cat "$RUN/floor.log" >&2; exit 1; }

printf 'store: %s packet files, %.2f GB packets, %.1f MB index; %s runs per rare query, %s per broad query, %s per scan-sized query (after one unmeasured warm-up run each)\n' \
  "$FILES" "$(echo "$PKT_BYTES/1000000000" | bc -l)" "$(echo "$IDX_BYTES/1000000" | bc -l)" "$RUNS" "$BROAD_RUNS" "$SCAN_RUNS"
printf 'machine: %s CPUs, load %s; gRPC chunk_size %s bytes; every run is a new client process (TLS handshake included)\n' \
  "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" "$CHUNK"
ip netns exec "$NS" env STENO_BENCH_INNER=1 DAEMON_PID="$DAEMON_PID" FLOOR_PID="$FLOOR_PID" bash "$0" "$RUN/certs" "$RUN/scan.pcap"
echo "(MB/s: result bytes / p50 wall time; offline: stenoquery on the same files, no daemon; tcpdump: tcpdump -r of"
echo " the result saved as one pcap (from the page cache), filter '$SCAN_FILTER', written to /dev/null; floor: curl from"
echo " tests/bench/tlsfloor, the daemon's TLS and HTTP stack sending as many bytes from memory (no query); client_ms, server_ms:"
echo " CPU ms per run of the client process (tcpdump, stenoquery, curl, stenogrpc) and of stenographer (or tlsfloor), user + system;"
echo " cli_s/GB, srv_s/GB: those per GB of result; srv_rd, srv_wr: bytes stenographer read (pread of packet files)"
echo " and wrote (TLS records to the socket) through system calls per result byte: the copies the kernel makes)"
problems_in "daemon bench" "$RUN/log"
