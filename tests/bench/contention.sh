#!/usr/bin/env bash
# Contention benchmark (in `make bench`; issue 11 part 4): whether broad
# queries can drown the sensor. A real stenographer (and its stenotype)
# captures a steady tcpreplay stream on a veth pair in a private namespace
# while serving a store built first (tests/bench/mkbig's capture of the
# corpus, imported with `stenotype --pcap_in`). Two phases of
# BENCH_CONTENTION_SECONDS each, on the same daemon:
#   1. capture alone;
#   2. capture plus BENCH_CONTENTION_CLIENTS clients over HTTPS (curl with
#      the client certificate, as stenocurl asks), each asking the broad
#      query again and again until the phase ends.
# Per phase: packets sent and captured, kernel drops (stenotype's, through
# the daemon's /metrics), CPU seconds of stenotype and stenographer; for
# phase 2 also each query's p50/p95 time and bytes, the queries refused
# (503), the wait for a running slot (stenographer_query_wait_seconds) and
# the smallest and largest per-client throughput (fairness: none starved).
#
# The broad query's time bound keeps it to the imported store (2025
# packets), so every answer has the same bytes while capture adds files.
#
# Environment: BENCH_CONTENTION_SECONDS (default 30), _CLIENTS (20), _PPS
# (the replay's packets per second, default 20000), _QUERY (default
# 'port 443 and before 2025-06-01T00:00:00Z'), _MAX_QUERIES (the daemon's
# --max_queries, default its own default 16), _STORE_BYTES (the store's
# packet bytes, default 300000000), _DIR (keep the store there and reuse
# it), BENCH_NS_PREFIX (names of the namespace and veth, default stt-<pid>,
# which the tests' sweeper removes after a crash).
set -Eeuo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="$ROOT/build/bin"
SHARED="${STENO_SHARED:-$(dirname "$ROOT")/shared}"
SECS="${BENCH_CONTENTION_SECONDS:-30}"
CLIENTS="${BENCH_CONTENTION_CLIENTS:-20}"
PPS="${BENCH_CONTENTION_PPS:-20000}"
QUERY="${BENCH_CONTENTION_QUERY:-port 443 and before 2025-06-01T00:00:00Z}"
MAXQ="${BENCH_CONTENTION_MAX_QUERIES:-16}"
PORT=1238
trap 'echo "contention bench: failed (status $?) at line $LINENO: $BASH_COMMAND" >&2' ERR
export PATH=/usr/local/go/bin:$PATH
# shellcheck source=SCRIPTDIR/lib.sh
source "$ROOT/tests/bench/lib.sh"

# ---- client part: one client's loop, inside the namespace ----
# Each line of OUT: end time (µs), duration (µs), HTTP status, bytes.
if [[ "${STENO_CONTENTION_CLIENT:-}" == 1 ]]; then
  certs=$1 end_us=$2 out=$3
  while ((${EPOCHREALTIME/./} < end_us)); do
    s=${EPOCHREALTIME/./}
    r=$(curl -sS --cert "$certs/client_cert.pem" --key "$certs/client_key.pem" --cacert "$certs/ca_cert.pem" \
      -H 'Content-Type: text/plain' --data-raw "$QUERY" -o /dev/null -w '%{http_code} %{size_download}' \
      "https://127.0.0.1:$PORT/query" 2>/dev/null) || true
    [[ -n "$r" ]] || r="000 0"
    e=${EPOCHREALTIME/./}
    echo "$e $((e - s)) $r" >>"$out"
  done
  exit 0
fi

# ---- outer part: store, namespace, daemon, the two phases ----
bench_need "contention bench" "$BIN/stenographer" "$BIN/stenotype" "$BIN/stenoquery"
for t in tcpreplay python3; do command -v "$t" >/dev/null || { echo "contention bench: $t not found (make deps)" >&2; exit 1; }; done
PCAP="$SHARED/pcaps/mercury-emix.pcap"
[[ -f "$PCAP" ]] || { echo "contention bench: $PCAP not found (the corpus)" >&2; exit 1; }
echo "== contention benchmark: $CLIENTS broad queries beside capture =="

WORK="${BENCH_CONTENTION_DIR:-$(mktemp -d /var/tmp/steno-contention.XXXXXX)}"
BENCH_MIN_BYTES="${BENCH_CONTENTION_STORE_BYTES:-300000000}" bench_store "contention bench"
RUN=$(mktemp -d /tmp/steno-contention.XXXXXX)
P="${BENCH_NS_PREFIX:-stt-$$}"
NS="$P-cont"
IF="${P//-/}"
IF="${IF:0:12}ct"
DAEMON_PID='' REPLAY_PID=''
start_us=$(date +%s%6N)
cleanup() {
  set +e
  [[ -n "$REPLAY_PID" ]] && kill "$REPLAY_PID" 2>/dev/null
  stop_pid "$DAEMON_PID"
  ip netns del "$NS" 2>/dev/null
  remove_new_files "$WORK/store" "$start_us"
  rm -rf "$RUN"
  [[ -n "${BENCH_CONTENTION_DIR:-}" ]] || rm -rf "$WORK"
}
trap cleanup EXIT

store_size "$WORK/store"
want_bytes=$("$BIN/stenoquery" --dir "$WORK/store" "$QUERY" | wc -c)
bench_netns "$NS"
mkdir -p "$RUN/certs"
DAEMON_FLAGS='"--stats_sec=1", "--blocks=64", "--uid=0", "--gid=0"' \
  daemon_config "$RUN/config" "$WORK/store" "$IF" "$PORT" "$RUN/certs"
STENOGRAPHER_CONFIG="$RUN/config" "$ROOT/scripts/stenokeys.sh" root root >/dev/null
start_daemon "$RUN/config" "$RUN/log" "$RUN/certs" "$PORT" "$WORK/store" "host 212.199.202.9" --max_queries="$MAXQ"
stenotype_pid=''
for _ in $(seq 100); do
  stenotype_pid=$(pgrep -P "$DAEMON_PID" -x stenotype || true)
  [[ -n "$stenotype_pid" ]] && https_ns "$RUN/certs" "https://127.0.0.1:$PORT/metrics" | grep -q '^stenographer_captured_packets_total' && break
  sleep 0.2
done
[[ -n "$stenotype_pid" ]] || { echo "contention bench: stenotype did not start; the daemon's log:" >&2; tail -20 "$RUN/log" >&2; exit 1; }

# metric NAME: the sum of every series of NAME in the daemon's /metrics.
metric() {
  https_ns "$RUN/certs" "https://127.0.0.1:$PORT/metrics" |
    awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $2 } END { printf "%.6f\n", s }'
}
tck=$(getconf CLK_TCK)
printf "store: %s packet files, %.2f GB packets, %.1f MB index; query '%s': %.1f MB each\n" "$FILES" \
  "$(echo "$PKT_BYTES/1000000000" | bc -l)" "$(echo "$IDX_BYTES/1000000" | bc -l)" "$QUERY" "$(echo "$want_bytes/1000000" | bc -l)"
printf 'machine: %s CPUs, load %s; replay: %s (%s packets, %s bytes) looped at %s packets/s on a veth pair\n' \
  "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" "${PCAP##*/}" "$(tcpdump -r "$PCAP" -nq 2>/dev/null | wc -l)" \
  "$(stat -c %s "$PCAP")" "$PPS"
printf 'daemon: --max_queries=%s (running at once; more wait up to 10 s, then 503), --index_readers and --packet_readers at their defaults; stenotype --blocks=64 --stats_sec=1\n' "$MAXQ"

# phase LABEL CLIENTS: SECS seconds of replay, with CLIENTS query loops
# beside it; prints the phase's row (and, with clients, the query figures).
phase() {
  local label=$1 nclients=$2 i end_us d0 w0 wn0 k0 d1 w1 wn1 k1
  local p0 x0 y0 p1 x1 y1 sent sent_bytes sent_secs pids=()
  rm -f "$RUN"/client.*
  p0=$(metric stenographer_captured_packets_total) x0=$(metric stenographer_dropped_packets_total)
  y0=$(metric stenographer_captured_bytes_total)
  w0=$(metric stenographer_query_wait_seconds_sum) wn0=$(metric stenographer_query_wait_seconds_count)
  k0=$(proc_ticks "$stenotype_pid") d0=$(proc_ticks "$DAEMON_PID")
  ip netns exec "$NS" tcpreplay -q -K -i "${IF}p" --pps="$PPS" --loop=0 --duration="$SECS" "$PCAP" >"$RUN/replay.log" 2>&1 &
  REPLAY_PID=$!
  end_us=$(($(date +%s%6N) + SECS * 1000000))
  for ((i = 0; i < nclients; i++)); do
    ip netns exec "$NS" env STENO_CONTENTION_CLIENT=1 QUERY="$QUERY" PORT="$PORT" bash "$0" "$RUN/certs" "$end_us" "$RUN/client.$i" &
    pids+=($!)
  done
  wait "$REPLAY_PID" || true
  REPLAY_PID=
  for i in "${pids[@]}"; do wait "$i"; done # each client finishes the query it has under way
  sleep 3 # the last blocks retire (--blockage_sec=1) and their STATS line reaches /metrics
  p1=$(metric stenographer_captured_packets_total) x1=$(metric stenographer_dropped_packets_total)
  y1=$(metric stenographer_captured_bytes_total)
  w1=$(metric stenographer_query_wait_seconds_sum) wn1=$(metric stenographer_query_wait_seconds_count)
  k1=$(proc_ticks "$stenotype_pid") d1=$(proc_ticks "$DAEMON_PID")
  sent=$(sed -n 's/.*Successful packets: *\([0-9]*\).*/\1/p' "$RUN/replay.log")
  sent_bytes=$(sed -n 's/^Actual: [0-9]* packets (\([0-9]*\) bytes).*/\1/p' "$RUN/replay.log")
  sent_secs=$(sed -n 's/^Actual: .* sent in \([0-9.]*\) seconds.*/\1/p' "$RUN/replay.log")
  printf '%-24s sent %8s (%6.1f MB, %6.0f/s), captured %8.0f (%6.1f MB), drops %6.0f | CPU s: stenotype %5.2f, stenographer %6.2f | load %s\n' \
    "$label" "${sent:-?}" "$(echo "${sent_bytes:-0} / 1000000" | bc -l)" "$(echo "${sent:-0} / ${sent_secs:-1}" | bc -l)" \
    "$(echo "$p1 - $p0" | bc -l)" \
    "$(echo "($y1 - $y0) / 1000000" | bc -l)" "$(echo "$x1 - $x0" | bc -l)" "$(echo "($k1 - $k0) / $tck" | bc -l)" \
    "$(echo "($d1 - $d0) / $tck" | bc -l)" "$(cut -d' ' -f1 /proc/loadavg)"
  if ((${sent:-0} < SECS * PPS * 95 / 100)); then
    echo "  the replay fell short of $PPS packets/s (the sender lacked CPU): capture was not offered the full stream"
  fi
  ((nclients > 0)) || return 0
  python3 - "$SECS" "$want_bytes" "$(echo "$w1 - $w0" | bc -l)" "$(echo "$wn1 - $wn0" | bc -l)" "$end_us" "$RUN"/client.* <<'PY'
import sys
secs, want, wait_sum, wait_n, end_us = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
start_us = end_us - secs * 1e6
times, refused, wrong, per_client, fewest = [], 0, 0, [], None
for path in sys.argv[6:]:
    got, last, answers = 0, start_us, 0
    for line in open(path):
        e, d, code, size = line.split()
        last = max(last, int(e))
        if code != "200":
            refused += 1
            continue
        times.append(int(d) / 1e6)
        answers += 1
        got += int(size)
        wrong += int(size) != want
    per_client.append(got / ((last - start_us) / 1e6) / 1e6)
    fewest = answers if fewest is None else min(fewest, answers)
times.sort()
pct = lambda p: times[max(0, -(-len(times) * p // 100) - 1)] if times else float("nan")
print("  queries: %d answered (%d with other than the %d bytes expected), %d refused or failed; per query p50 %.2f s, p95 %.2f s, %.1f MB"
      % (len(times), wrong, want, refused, pct(50), pct(95), want / 1e6))
print("  wait for a running slot: %d queries, mean %.3f s (stenographer_query_wait_seconds)" % (wait_n, wait_sum / wait_n if wait_n else 0))
print("  per-client throughput: min %.1f MB/s, max %.1f MB/s over %d clients (all: %.1f MB/s); fewest answers of a client: %d"
      % (min(per_client), max(per_client), len(per_client), sum(per_client),
         fewest))
PY
}

phase "capture alone" 0
phase "capture + $CLIENTS queries" "$CLIENTS"
echo "(sent: tcpreplay's count; captured, drops: stenotype's counters through /metrics, over the phase and 3 s after it;"
echo " CPU: user + system of each process over the same span; a query's time is curl's, TLS handshake included)"
problems_in "contention bench" "$RUN/log"
