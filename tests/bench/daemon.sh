#!/usr/bin/env bash
# Daemon benchmark (in `make bench`, after query.sh): the cost of the
# transports. Serves the query benchmark's store (tests/bench/mkbig's >2 GB
# capture imported with `stenotype --pcap_in`, as query.sh builds it) with
# the real stenographer, then times a rare-host query and a broad query
# through HTTPS (curl with the client certificate, as stenocurl does) and
# gRPC (stenogrpc), next to the offline stenoquery on the same files:
# p50/p95 wall time of BENCH_DAEMON_RUNS runs (each a new client process,
# TLS handshake included) and MB/s of the result at the median.
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
BIN="$ROOT/build/bin"
SHARED="${STENO_SHARED:-$(dirname "$ROOT")/shared}"
RUNS="${BENCH_DAEMON_RUNS:-21}"
BROAD_RUNS="${BENCH_DAEMON_BROAD_RUNS:-7}"
CHUNK="${BENCH_GRPC_CHUNK:-262144}"
WORK="${BENCH_QUERY_DIR:-/var/tmp/steno-qbench}"
RARE="${BENCH_RARE_QUERY:-host 212.199.202.9}"
BROAD="${BENCH_BROAD_QUERY:-port 443}"
HTTPS_PORT=1234 GRPC_PORT=8443
DAEMON="${STENO_DAEMON_BIN:-$BIN/stenographer}"
export PATH=/usr/local/go/bin:$PATH

# ---- inner part: runs inside the namespace, prints the table ----
if [[ "${STENO_BENCH_INNER:-}" == 1 ]]; then
  CERTS=$1
  # times N CMD...: prints N wall times in microseconds, one per line
  # (bash's clock: no process per reading).
  times_us() {
    local n=$1 i s e
    shift
    "$@" >/dev/null 2>&1 || { echo "benchmark command failed: $*" >&2; "$@" >/dev/null; exit 1; }
    for ((i = 0; i < n; i++)); do
      s=${EPOCHREALTIME/./}
      "$@" >/dev/null 2>&1
      e=${EPOCHREALTIME/./}
      echo $((e - s))
    done
  }
  # CPU clock ticks: of this shell's finished children, and of the daemon.
  tck=$(getconf CLK_TCK)
  children_ticks() { awk '{print $16 + $17}' "/proc/$$/stat"; }
  daemon_ticks() { awk '{print $14 + $15}' "/proc/$DAEMON_PID/stat"; }
  # pct P: the P-th percentile (nearest rank) of numbers on stdin.
  pct() { sort -n | awk -v p="$1" '{a[NR] = $1} END {i = int((NR * p + 99) / 100); if (i < 1) i = 1; print a[i]}'; }
  # shellcheck disable=SC2317  # called through "$how"
  offline() { "$BIN/stenoquery" --dir "$WORK/store" "$1"; }
  # shellcheck disable=SC2317
  https() {
    curl -sS --fail --cert "$CERTS/client_cert.pem" --key "$CERTS/client_key.pem" --cacert "$CERTS/ca_cert.pem" \
      -H 'Content-Type: text/plain' --data-raw "$1" -o - "https://127.0.0.1:$HTTPS_PORT/query"
  }
  # shellcheck disable=SC2317
  grpc() {
    "$BIN/stenogrpc" --server "127.0.0.1:$GRPC_PORT" --ca "$CERTS/ca_cert.pem" --cert "$CERTS/client_cert.pem" \
      --key "$CERTS/client_key.pem" --chunk_size "$CHUNK" --max_size 100000000000 --out - "$1"
  }
  fmt='%-20s %-8s %8s %8s %9s %9s %8s %11s %11s\n'
  # shellcheck disable=SC2059
  printf "$fmt" query via packets MB p50_ms p95_ms MB/s client_cpu server_cpu
  for spec in "$RUNS:$RARE" "$BROAD_RUNS:$BROAD"; do
    n=${spec%%:*} q=${spec#*:}
    pk=$("$BIN/stenoquery" --dir "$WORK/store" --count "$q")
    bytes=$(offline "$q" | wc -c)
    for how in https grpc; do
      got=$("$how" "$q" | wc -c)
      [[ $got == "$bytes" ]] || { echo "daemon bench: $how returned $got bytes for '$q', stenoquery $bytes" >&2; exit 1; }
    done
    for how in offline https grpc; do
      c0=$(children_ticks) d0=$(daemon_ticks)
      t=$(times_us "$n" "$how" "$q")
      c1=$(children_ticks) d1=$(daemon_ticks)
      p50=$(pct 50 <<<"$t") p95=$(pct 95 <<<"$t")
      # CPU per run in ms; the warm-up run is included, so divide by n+1.
      ccpu=$(echo "($c1 - $c0) * 1000 / $tck / ($n + 1)" | bc -l)
      scpu=-
      [[ $how == offline ]] || scpu=$(printf '%.1f' "$(echo "($d1 - $d0) * 1000 / $tck / ($n + 1)" | bc -l)")
      # shellcheck disable=SC2059
      printf "$fmt" "$q" "$how" "$pk" "$(printf '%.1f' "$(echo "$bytes/1000000" | bc -l)")" \
        "$(printf '%.1f' "$(echo "$p50/1000" | bc -l)")" "$(printf '%.1f' "$(echo "$p95/1000" | bc -l)")" \
        "$(printf '%.0f' "$(echo "$bytes/$p50" | bc -l)")" "$(printf '%.1f' "$ccpu")" "$scpu"
    done
  done
  exit 0
fi

# ---- outer part: store, namespace, daemon ----
for b in "$DAEMON" "$BIN/stenogrpc" "$BIN/stenoquery" "$BIN/stenotype"; do
  [[ -x "$b" ]] || { echo "daemon bench: $b not built (make build)" >&2; exit 1; }
done
for tool in ip curl jq openssl bc; do
  command -v "$tool" >/dev/null || { echo "daemon bench: $tool not found (make deps)" >&2; exit 1; }
done
[[ $(id -u) == 0 ]] || { echo "daemon bench: needs root (network namespace)" >&2; exit 1; }

echo "== daemon benchmark =="
built=0
if [[ -f "$WORK/store/.complete" && -d "$WORK/store/PKT0" ]]; then
  echo "reusing the store in $WORK"
else
  [[ -d "$SHARED/pcaps" ]] || { echo "daemon bench: corpus not found at $SHARED/pcaps" >&2; exit 1; }
  built=1
  mkdir -p "$WORK"
  (cd "$ROOT" && go run ./tests/bench/mkbig -o "$WORK/big.pcap" -min_bytes "${BENCH_MIN_BYTES:-2200000000}" "$SHARED"/pcaps/*.pcap)
  rm -rf "$WORK/store" && mkdir -p "$WORK/store"
  "$BIN/stenotype" --pcap_in="$WORK/big.pcap" --dir="$WORK/store" --uid=0 --gid=0 --fileage_sec=3600 -q
  rm -f "$WORK/big.pcap"
  touch "$WORK/store/.complete"
fi

RUN=$(mktemp -d /tmp/steno-dbench.XXXXXX)
NS="stbench-$$"
PID=
start_us=$(date +%s%6N)
cleanup() {
  set +e
  if [[ -n "$PID" ]] && kill -0 "$PID" 2>/dev/null; then
    kill -TERM "$PID"
    for _ in $(seq 1 300); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$PID" 2>/dev/null
  fi
  ip netns del "$NS" 2>/dev/null
  # Files the idle stenotype made (named after start_us); the store's own
  # are named by 2025 packet times.
  for d in "$WORK/store/PKT0" "$WORK/store/IDX0"; do
    for f in "$d"/* "$d"/.[0-9]*; do
      n=${f##*/}
      n=${n#.}
      [[ -e "$f" && $n =~ ^[0-9]+$ && $n -ge $start_us ]] && rm -f -- "$f"
    done
  done
  rm -rf "$RUN"
  if [[ $built == 1 && -z "${BENCH_QUERY_DIR:-}" ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

pkt_bytes=$(du -cb "$WORK"/store/PKT0/* | tail -1 | cut -f1)
idx_bytes=$(du -cb "$WORK"/store/IDX0/* | tail -1 | cut -f1)
files=$(find "$WORK/store/PKT0" -maxdepth 1 -type f ! -name '.*' | wc -l)

ip netns add "$NS"
ip netns exec "$NS" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
ip -n "$NS" link set lo up
ip -n "$NS" link add stbench0 type veth peer name stbench1
ip -n "$NS" link set stbench0 up && ip -n "$NS" link set stbench1 up
mkdir -p "$RUN/certs" "$RUN/rpc"
cat >"$RUN/config" <<EOF
{
  "Threads": [{"PacketsDirectory": "$WORK/store/PKT0", "IndexDirectory": "$WORK/store/IDX0"}],
  "StenotypePath": "$BIN/stenotype", "Interface": "stbench0",
  "Port": $HTTPS_PORT, "Host": "127.0.0.1", "CertPath": "$RUN/certs",
  "Flags": ["--fileage_sec=86400", "--stats_sec=5", "--blocks=16", "--uid=0", "--gid=0"],
  "Rpc": {"CaCert": "$RUN/certs/ca_cert.pem", "ServerKey": "$RUN/certs/server_key.pem",
          "ServerCert": "$RUN/certs/server_cert.pem", "ServerPort": $GRPC_PORT, "ServerPcapPath": "$RUN/rpc",
          "ServerPcapMaxSize": 100000000000, "ClientPcapChunkSize": $CHUNK, "ClientPcapMaxSize": 100000000000}
}
EOF
STENOGRAPHER_CONFIG="$RUN/config" "$ROOT/scripts/stenokeys.sh" root root >/dev/null
ip netns exec "$NS" "$DAEMON" --config="$RUN/config" >"$RUN/log" 2>&1 &
PID=$!
up=0
for _ in $(seq 1 600); do
  if ip netns exec "$NS" curl -sS --fail -o /dev/null --cert "$RUN/certs/client_cert.pem" --key "$RUN/certs/client_key.pem" \
    --cacert "$RUN/certs/ca_cert.pem" "https://127.0.0.1:$HTTPS_PORT/debug/stats" 2>/dev/null; then
    up=1
    break
  fi
  kill -0 "$PID" 2>/dev/null || break
  sleep 0.2
done
# Up, and serving the whole store (its first sync has seen every file).
want=$("$BIN/stenoquery" --dir "$WORK/store" "$RARE" | wc -c)
if [[ $up == 1 ]]; then
  up=0
  for _ in $(seq 1 600); do
    got=$(ip netns exec "$NS" curl -sS --fail --cert "$RUN/certs/client_cert.pem" --key "$RUN/certs/client_key.pem" \
      --cacert "$RUN/certs/ca_cert.pem" --data-raw "$RARE" "https://127.0.0.1:$HTTPS_PORT/query" 2>/dev/null | wc -c)
    [[ $got == "$want" ]] && { up=1; break; }
    sleep 0.2
  done
fi
if [[ $up != 1 ]]; then
  echo "daemon bench: stenographer did not come up serving the store (rare query: $want bytes expected); its log:" >&2
  tail -30 "$RUN/log" >&2
  exit 1
fi

printf 'store: %s packet files, %.2f GB packets, %.1f MB index; %s runs per rare query, %s per broad query (after one unmeasured warm-up run each)\n' \
  "$files" "$(echo "$pkt_bytes/1000000000" | bc -l)" "$(echo "$idx_bytes/1000000" | bc -l)" "$RUNS" "$BROAD_RUNS"
printf 'machine: %s CPUs, load %s; gRPC chunk_size %s bytes; every run is a new client process (TLS handshake included)\n' \
  "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" "$CHUNK"
ip netns exec "$NS" env STENO_BENCH_INNER=1 DAEMON_PID="$PID" bash "$0" "$RUN/certs"
echo "(MB/s: result bytes / p50 wall time; offline: stenoquery on the same files, no daemon; client_cpu, server_cpu:"
echo " CPU ms per run of the client process (stenoquery, curl, stenogrpc) and of stenographer, user + system)"
if grep -q 'DATA RACE\|panic' "$RUN/log"; then
  echo "daemon bench: the stenographer log reports a problem:" >&2
  grep -m5 'DATA RACE\|panic' "$RUN/log" >&2
  exit 1
fi
