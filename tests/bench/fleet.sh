#!/usr/bin/env bash
# Fleet benchmark (in `make bench`, after daemon.sh): the cost of the
# fan-out. The query benchmark's store is split three ways (hard links,
# round-robin by file, so every sensor holds interleaved time and no bytes
# are copied) and served by three real stenographer daemons, each with an
# idle veth stenotype of its own, with stenofleet in front. A rare-host and
# a broad query are timed through stenofleet's POST /query and against
# each sensor alone: p50/p95 wall time of BENCH_FLEET_RUNS runs (each a new
# curl with a client certificate, TLS handshake included), MB/s at the
# median and the ratio to the slowest sensor alone; stenofleet's CPU per
# run and its peak RSS (VmHWM, reset before the broad runs) while merging.
# The merged result must hold exactly the sensors' packets.
#
# Everything runs on this machine: the three sensors and stenofleet share
# its CPUs, so on a 2-CPU box the fan-out also pays for the sensors'
# concurrent work, which the "alone" runs do not.
#
# Store: as daemon.sh (reused from $BENCH_QUERY_DIR, default
# /var/tmp/steno-qbench, when complete there). BENCH_FLEET_CPUPROFILE=FILE
# writes stenofleet's CPU profile of the whole run there; BENCH_FLEET_BIN times
# another stenofleet binary (before/after comparisons).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="$ROOT/build/bin"
SHARED="${STENO_SHARED:-$(dirname "$ROOT")/shared}"
RUNS="${BENCH_FLEET_RUNS:-21}"
BROAD_RUNS="${BENCH_FLEET_BROAD_RUNS:-7}"
WORK="${BENCH_QUERY_DIR:-/var/tmp/steno-qbench}"
RARE="${BENCH_RARE_QUERY:-host 212.199.202.9}"
BROAD="${BENCH_BROAD_QUERY:-port 443}"
FLEET_PORT=1240
SENSOR_PORTS=(1241 1242 1243)
export PATH=/usr/local/go/bin:$PATH
# shellcheck source=SCRIPTDIR/lib.sh
source "$ROOT/tests/bench/lib.sh"

# ---- inner part: runs inside the namespace, prints the table ----
if [[ "${STENO_BENCH_INNER:-}" == 1 ]]; then
  CERTS=$1 SPLIT=$2 OUT=$3
  read -ra SENSOR_PIDS <<<"$SENSOR_PIDS"
  tck=$(getconf CLK_TCK)
  ms() { printf '%.1f' "$(echo "$1/1000" | bc -l)"; }
  fmt='%-20s %-12s %9s %8s %9s %9s %8s %9s\n'
  # shellcheck disable=SC2059
  printf "$fmt" query via packets MB p50_ms p95_ms MB/s cpu_ms
  for spec in "$RUNS:$RARE" "$BROAD_RUNS:$BROAD"; do
    n=${spec%%:*} q=${spec#*:}
    sum_pk=0 sum_bytes=0 slow_p50=0 slow_p95=0 slow_bytes=0 slow=
    for i in 0 1 2; do
      pk=$("$BIN/stenoquery" --dir "$SPLIT/s$i" --count "$q")
      bytes=$(https_query "$CERTS" "${SENSOR_PORTS[$i]}" "$q" | wc -c)
      sum_pk=$((sum_pk + pk)) sum_bytes=$((sum_bytes + bytes))
      d0=$(proc_ticks "${SENSOR_PIDS[$i]}")
      t=$(times_us "$n" https_query "$CERTS" "${SENSOR_PORTS[$i]}" "$q")
      d1=$(proc_ticks "${SENSOR_PIDS[$i]}")
      p50=$(pct 50 <<<"$t") p95=$(pct 95 <<<"$t")
      if ((p50 > slow_p50)); then slow_p50=$p50 slow_p95=$p95 slow_bytes=$bytes slow=sensor-$i; fi
      # shellcheck disable=SC2059
      printf "$fmt" "$q" "sensor-$i" "$pk" "$(printf '%.1f' "$(echo "$bytes/1000000" | bc -l)")" "$(ms "$p50")" "$(ms "$p95")" \
        "$(printf '%.0f' "$(echo "$bytes/$p50" | bc -l)")" "$(printf '%.1f' "$(echo "($d1 - $d0) * 1000 / $tck / ($n + 1)" | bc -l)")"
    done
    # The merged result: every sensor's packets, one file header.
    https_query "$CERTS" "$FLEET_PORT" "$q" >"$OUT"
    got_pk=$(tcpdump -nr "$OUT" --count 2>/dev/null | awk '{print $1}')
    got_bytes=$(stat -c %s "$OUT")
    rm -f "$OUT"
    if [[ $got_pk != "$sum_pk" || $got_bytes != $((sum_bytes - 2 * 24)) ]]; then
      echo "fleet bench: '$q' through stenofleet: $got_pk packets, $got_bytes bytes; the sensors alone: $sum_pk packets, $sum_bytes bytes (3 file headers)" >&2
      exit 1
    fi
    echo 5 >"/proc/$FLEET_PID/clear_refs" # resets VmHWM: the peak of these runs only
    f0=$(proc_ticks "$FLEET_PID")
    t=$(times_us "$n" https_query "$CERTS" "$FLEET_PORT" "$q")
    f1=$(proc_ticks "$FLEET_PID")
    hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$FLEET_PID/status")
    p50=$(pct 50 <<<"$t") p95=$(pct 95 <<<"$t")
    cpu=$(echo "($f1 - $f0) * 1000 / $tck / ($n + 1)" | bc -l)
    # shellcheck disable=SC2059
    printf "$fmt" "$q" stenofleet "$got_pk" "$(printf '%.1f' "$(echo "$got_bytes/1000000" | bc -l)")" "$(ms "$p50")" "$(ms "$p95")" \
      "$(printf '%.0f' "$(echo "$got_bytes/$p50" | bc -l)")" "$(printf '%.1f' "$cpu")"
    printf '  %s: stenofleet / slowest alone (%s, %.1f MB): p50 %.2fx, p95 %.2fx; stenofleet %.2f CPU-s/GB, peak RSS %.1f MB\n' \
      "$q" "$slow" "$(echo "$slow_bytes/1000000" | bc -l)" "$(echo "$p50/$slow_p50" | bc -l)" "$(echo "$p95/$slow_p95" | bc -l)" \
      "$(echo "$cpu / 1000 / ($got_bytes/1000000000)" | bc -l)" "$(echo "$hwm/1024" | bc -l)"
  done
  exit 0
fi

# ---- outer part: store, split, namespace, sensors, stenofleet ----
bench_need "fleet bench" "${STENO_DAEMON_BIN:-$BIN/stenographer}" "${BENCH_FLEET_BIN:-$BIN/stenofleet}" "$BIN/stenoquery" "$BIN/stenotype"
command -v tcpdump >/dev/null || { echo "fleet bench: tcpdump not found (make deps)" >&2; exit 1; }

echo "== fleet benchmark =="
bench_store "fleet bench"

RUN=$(mktemp -d /tmp/steno-fbench.XXXXXX)
SPLIT="$WORK/fleet-split.$$" # beside the store: hard links need one file system
NS="stfleet-$$"
SENSOR_PIDS=() FLEET_PID=
cleanup() {
  set +e
  stop_pid "$FLEET_PID"
  for p in "${SENSOR_PIDS[@]}"; do stop_pid "$p"; done
  ip netns del "$NS" 2>/dev/null
  rm -rf "$RUN" "$SPLIT"
  if [[ $BENCH_BUILT == 1 && -z "${BENCH_QUERY_DIR:-}" ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

mapfile -t NAMES < <(find "$WORK/store/PKT0" -maxdepth 1 -type f ! -name '.*' -printf '%f\n' | sort)
for i in 0 1 2; do mkdir -p "$SPLIT/s$i/PKT0" "$SPLIT/s$i/IDX0"; done
for k in "${!NAMES[@]}"; do
  s="$SPLIT/s$((k % 3))"
  ln "$WORK/store/PKT0/${NAMES[$k]}" "$s/PKT0/" && ln "$WORK/store/IDX0/${NAMES[$k]}" "$s/IDX0/"
done

bench_netns "$NS"
mkdir -p "$RUN/certs"
conds=()
for i in 0 1 2; do
  daemon_config "$RUN/sensor$i.json" "$SPLIT/s$i" "stfl$i" "${SENSOR_PORTS[$i]}" "$RUN/certs"
  store_size "$SPLIT/s$i"
  conds+=(" sensor-$i $FILES files, $(printf '%.2f' "$(echo "$PKT_BYTES/1000000000" | bc -l)") GB")
done
# One CA and certificate set for all: the sensors' server certificate
# (127.0.0.1) is stenofleet's too, and its client certificate is both
# stenofleet's to the sensors and the analyst's to stenofleet.
STENOGRAPHER_CONFIG="$RUN/sensor0.json" "$ROOT/scripts/stenokeys.sh" root root >/dev/null
for i in 0 1 2; do
  start_daemon "$RUN/sensor$i.json" "$RUN/sensor$i.log" "$RUN/certs" "${SENSOR_PORTS[$i]}" "$SPLIT/s$i" "$RARE"
  SENSOR_PIDS+=("$DAEMON_PID")
done

{
  echo "stenographer_instances:"
  for i in 0 1 2; do
    echo "  - { host: 127.0.0.1, sensor: sensor-$i, port: ${SENSOR_PORTS[$i]}, key: $RUN/certs/client_key.pem, cert: $RUN/certs/client_cert.pem, ca: $RUN/certs/ca_cert.pem }"
  done
  echo "LISTEN: 127.0.0.1:$FLEET_PORT"
  echo "TLS_CERT: $RUN/certs/server_cert.pem"
  echo "TLS_KEY: $RUN/certs/server_key.pem"
  echo "CLIENT_CA: $RUN/certs/ca_cert.pem"
  echo "SENSOR_TIMEOUT: 600s"
} >"$RUN/stenofleet.yaml"
ip netns exec "$NS" "${BENCH_FLEET_BIN:-$BIN/stenofleet}" --config="$RUN/stenofleet.yaml" \
  ${BENCH_FLEET_CPUPROFILE:+--cpuprofile="$BENCH_FLEET_CPUPROFILE"} >"$RUN/stenofleet.log" 2>&1 &
FLEET_PID=$!
up=0
for _ in $(seq 1 600); do
  https_ns "$RUN/certs" -o /dev/null --data-raw "$RARE" "https://127.0.0.1:$FLEET_PORT/query" 2>/dev/null && { up=1; break; }
  kill -0 "$FLEET_PID" 2>/dev/null || break
  sleep 0.2
done
if [[ $up != 1 ]]; then
  echo "fleet bench: stenofleet did not come up; its log:" >&2
  tail -30 "$RUN/stenofleet.log" >&2
  exit 1
fi

store_size "$WORK/store"
total_pk=$(sed -n 's/^mkbig: \([0-9]*\) packets.*/\1/p' "$WORK/mkbig.log" 2>/dev/null || true)
printf 'store: %s packet files, %.2f GB packets%s, split round-robin by file:%s\n' "$FILES" \
  "$(echo "$PKT_BYTES/1000000000" | bc -l)" "${total_pk:+, $total_pk packets}" "$(IFS=';'; echo "${conds[*]}")"
printf 'machine: %s CPUs, load %s; %s runs per rare query, %s per broad query (after one unmeasured warm-up run each); every run a new curl (TLS handshake included)\n' \
  "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" "$RUNS" "$BROAD_RUNS"
ip netns exec "$NS" env STENO_BENCH_INNER=1 FLEET_PID="$FLEET_PID" SENSOR_PIDS="${SENSOR_PIDS[*]}" \
  bash "$0" "$RUN/certs" "$SPLIT" "$RUN/merged.pcap"
echo "(MB/s: result bytes / p50 wall time; cpu_ms: CPU ms per run of that sensor's stenographer or of stenofleet, user + system;"
echo " the three sensors and stenofleet share this machine's CPUs)"
stop_pid "$FLEET_PID"
FLEET_PID=
[[ -z "${BENCH_FLEET_CPUPROFILE:-}" ]] || echo "stenofleet CPU profile: $BENCH_FLEET_CPUPROFILE"
problems_in "fleet bench" "$RUN"/*.log
