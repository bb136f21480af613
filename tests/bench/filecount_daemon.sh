#!/usr/bin/env bash
# File-count benchmark, daemon part (called by filecount.sh, so in `make
# bench`; issue 11 part 3): the same queries as filecount.sh asked of the
# real stenographer over HTTPS instead of the stenoquery process. The
# daemon lists and stats the files in the background, so a query pays only
# for its own lookups: this measures how much of the offline figures is
# the listing.
#
# Usage: filecount_daemon.sh WORK, WORK holding filecount.sh's stores "few"
# and "many" (complete, many/IDX0/.summary built). Three daemons, one
# after the other, in a private namespace whose only other link is an idle
# veth for stenotype (IPv6 off, so nothing is captured; the files it
# leaves are removed afterwards):
#   few   the ~100-file store, --summaries=false (the reference);
#   many  the >20,000-file store, --summaries=false (before);
#   sum   the same store, summaries on (after). The daemon reads the tables
#         stenoquery --summarize left and builds what they miss; the runs
#         start once /explain of the rare host shows as many files skipped
#         by summary as stenoquery's own count on the same tables.
# Each run is a new curl process (TLS handshake included). Warm: median
# of WARM runs after a warm-up; cold: median of COLD runs, the whole
# machine's page cache dropped before each (the daemon's open index
# readers stay open; their pages are dropped too).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="${BENCH_BIN:-$ROOT/build/bin}"
WARM="${BENCH_DAEMON_WARM_RUNS:-11}"
COLD="${BENCH_DAEMON_COLD_RUNS:-3}"
BLOCK_KB=16 # as filecount.sh imported the stores
RARE_HOST=137.99.56.10
QUERIES=("host $RARE_HOST" "port 443" "net 192.168.0.0/16 and port 53")
HTTPS_PORT=1236
NS="${BENCH_NS:-stbfc-$$}" # BENCH_NS, BENCH_VETH: names of the namespace and its veths
DAEMON="${STENO_DAEMON_BIN:-$BIN/stenographer}"
export PATH=/usr/local/go/bin:$PATH
# shellcheck source=SCRIPTDIR/lib.sh
source "$ROOT/tests/bench/lib.sh"

# explain_field TEXT LABEL: the number after "LABEL: " in /explain's text.
explain_field() { sed -n "s/^$2: \([0-9]*\).*/\1/p" <<<"$1"; }

# query_durations_ms: the duration of each query in a daemon log on stdin
# (Go's time.Duration text), in ms, one a line.
query_durations_ms() {
  awk '/ msg=query / && match($0, / duration=[0-9.]+[µmn]?s/) {
    d = substr($0, RSTART + 10, RLENGTH - 10); f = 1000
    if (d ~ /ms$/) f = 1; else if (d ~ /µs$/) f = 0.001; else if (d ~ /ns$/) f = 0.000001
    sub(/[µmn]?s$/, "", d); printf "%.1f\n", d * f }'
}

# ---- inner part: runs inside the namespace, prints one row per query ----
if [[ "${STENO_BENCH_INNER:-}" == 1 ]]; then
  CERTS=$1 ROW=$2 STORE=$3 LOG=$4
  for q in "${QUERIES[@]}"; do
    want=$("$BIN/stenoquery" --dir "$STORE" --blocksize_kb="$BLOCK_KB" --no_summaries "$q" | wc -c)
    got=$(https_query "$CERTS" "$HTTPS_PORT" "$q" | wc -c)
    [[ $got == "$want" ]] || { echo "filecount daemon bench: FAIL: '$q' from the $ROW daemon: $got bytes, stenoquery $want" >&2; exit 1; }
    ex=$(https_ns "$CERTS" --data-raw "$q" "https://127.0.0.1:$HTTPS_PORT/explain")
    https_query_cmd "$CERTS" "$HTTPS_PORT" "$q"
    logged=$(wc -l <"$LOG")
    read -r wm wc cm cc _ sw sc sk < <(MEASURE_PID=$DAEMON_PID measure "${HTTPS_QUERY[@]}")
    # The daemon's own time for each query it logged during measure: the
    # warm-up, WARM warm runs, COLD cold runs.
    mapfile -t took < <(tail -n +"$((logged + 1))" "$LOG" | query_durations_ms)
    (( ${#took[@]} == 1 + WARM + COLD )) || { echo "filecount daemon bench: FAIL: the $ROW daemon logged ${#took[@]} queries for '$q', not $((1 + WARM + COLD))" >&2; exit 1; }
    sq=$(printf '%s\n' "${took[@]:1:WARM}" | pct 50) sqc=$(printf '%s\n' "${took[@]:1+WARM}" | pct 50)
    printf '%-32s %-4s %6d %9d %7d %7d %7d %7d | %8s %8s %8s %8s | %8s %8s %8s %8s %8s\n' "$q" "$ROW" \
      "$(explain_field "$ex" files)" "$got" "$(explain_field "$ex" 'files skipped by summary')" \
      "$(explain_field "$ex" 'indexes read')" "$(( $(explain_field "$ex" 'index bytes read') / 1024 ))" \
      "$(( $(explain_field "$ex" 'summary bytes read') / 1024 ))" "$wm" "$sq" "$wc" "$sw" "$cm" "$sqc" "$cc" "$sc" "$sk"
  done
  exit 0
fi

# ---- outer part: namespace, one daemon per row ----
WORK=${1:?usage: filecount_daemon.sh WORK}
bench_need "filecount daemon bench" "$DAEMON" "$BIN/stenoquery" "$BIN/stenotype"
for s in few many; do
  [[ -f "$WORK/$s/.complete" ]] || { echo "filecount daemon bench: no complete store in $WORK/$s (run filecount.sh)" >&2; exit 1; }
done
echo "== file-count benchmark, daemon over HTTPS =="
RUN=$(mktemp -d /tmp/steno-fcdaemon.XXXXXX)
DAEMON_PID=
start_us=$(date +%s%6N)
trap 'bench_teardown "$start_us" "$WORK/few" "$WORK/many"' EXIT
bench_netns "$NS"
mkdir -p "$RUN/certs"
echo "machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); warm: median of $WARM curl runs after one warm-up; cold: median of $COLD, page cache dropped before each"
printf '%-32s %-4s %6s %9s %7s %7s %7s %7s | %8s %8s %8s %8s | %8s %8s %8s %8s %8s\n' query row files bytes sum_skip opened idx_KB sum_KB \
  warm_ms srv_ms curl_cpu srv_cpu cold_ms srv_ms curl_cpu srv_cpu srv_disk_KB
n=0
for row in ${BENCH_FC_ROWS:-few many sum}; do
  store=$WORK/many summaries=false
  [[ $row == few ]] && store=$WORK/few
  [[ $row == sum ]] && summaries=true
  n=$((n + 1))
  DAEMON_FLAGS="\"--fileage_sec=86400\", \"--stats_sec=5\", \"--blocks=16\", \"--blocksize_kb=$BLOCK_KB\", \"--uid=0\", \"--gid=0\"" \
    daemon_config "$RUN/config$n" "$store" "${BENCH_VETH:-stbfc}$n" "$HTTPS_PORT" "$RUN/certs"
  [[ $n == 1 ]] && STENOGRAPHER_CONFIG="$RUN/config$n" "$ROOT/scripts/stenokeys.sh" root root >/dev/null
  t0=$(date +%s.%N)
  start_daemon "$RUN/config$n" "$RUN/log$n" "$RUN/certs" "$HTTPS_PORT" "$store" "host $RARE_HOST" --summaries="$summaries"
  up=$(printf '%.1f s' "$(echo "$(date +%s.%N)-$t0" | bc -l)")
  if [[ $row == sum ]]; then
    # Covered when the daemon skips as many files by summary as
    # stenoquery does with the same tables (it builds any they lack).
    want=$("$BIN/stenoquery" --dir "$store" --blocksize_kb="$BLOCK_KB" --stats -w /dev/null "host $RARE_HOST" 2>&1 |
      sed -n 's/.* files_summary_skipped=\([0-9]*\).*/\1/p')
    got=0
    for _ in $(seq 1 600); do
      got=$(explain_field "$(https_ns "$RUN/certs" --data-raw "host $RARE_HOST" "https://127.0.0.1:$HTTPS_PORT/explain")" 'files skipped by summary')
      (( got >= want )) && break
      sleep 0.5
    done
    (( got >= want )) || { echo "filecount daemon bench: FAIL: the daemon skips $got files by summary, stenoquery $want" >&2; exit 1; }
    up="$up serving, $(printf '%.1f' "$(echo "$(date +%s.%N)-$t0" | bc -l)") s skipping by summary"
  fi
  echo "($row: daemon --summaries=$summaries on $store, up in $up; resident $(awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$DAEMON_PID/status") MB)"
  ip netns exec "$NS" env STENO_BENCH_INNER=1 BENCH_NS="$NS" DAEMON_PID="$DAEMON_PID" bash "$0" "$RUN/certs" "$row" "$store" "$RUN/log$n"
  stop_pid "$DAEMON_PID"
  problems_in "filecount daemon bench" "$RUN/log$n"
  DAEMON_PID=
done
echo "(files: files the query's time range holds; sum_skip: files skipped by summary; opened: index files read; idx_KB, sum_KB: index and"
echo " summary bytes read, from /explain; srv_ms: the query's duration as the daemon logs it (median); curl_cpu, srv_cpu: CPU ms of curl"
echo " and of stenographer per run (10 ms ticks); srv_disk_KB: what stenographer read from disk, cold)"
echo "load average after $(cut -d' ' -f1-3 /proc/loadavg)"
