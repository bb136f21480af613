#!/usr/bin/env bash
# Time-to-queryable benchmark (in `make bench`): how long after a packet
# crosses the link an analyst's stenoread finds it. A real stenographer
# (and its stenotype) captures one end of a veth pair in a private
# namespace, on an empty store; tests/bench/fresh sends BENCH_FRESH_PROBES
# probe packets, each from an address of its own, on the other end and
# polls with the real stenoread until each is found: p50/p99 seconds from
# the send to the end of the stenoread that returned it.
#
# Conditions: today's defaults (1 s blocks, a delta index every second,
# new files found through inotify) and the reference's timings
# (--blockage_sec=10, no live index, --watch_files=false: files found by the
# 15 s scan), each idle and under load (a corpus capture replayed in a loop
# with tcpreplay at BENCH_FRESH_LOAD_MBPS on the same link; skipped without
# the corpus). Files are the default 60 s.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="$ROOT/build/bin"
SHARED="${STENO_SHARED:-$(dirname "$ROOT")/shared}"
PROBES="${BENCH_FRESH_PROBES:-20}"
LOAD_MBPS="${BENCH_FRESH_LOAD_MBPS:-100}"
PORT=1237
export PATH=/usr/local/go/bin:$PATH
# shellcheck source=SCRIPTDIR/lib.sh
source "$ROOT/tests/bench/lib.sh"

bench_need "fresh bench" "$BIN/stenographer" "$BIN/stenotype" "$BIN/stenoquery"
command -v tcpdump >/dev/null || { echo "fresh bench: tcpdump not found (make deps)" >&2; exit 1; }
echo "== time-to-queryable benchmark =="

RUN=$(mktemp -d /tmp/steno-fresh.XXXXXX)
chmod 755 "$RUN"
NS="stfresh-$$"
DAEMON_PID='' LOAD_PID=''
cleanup() {
  set +e
  [[ -n "$LOAD_PID" ]] && kill "$LOAD_PID" 2>/dev/null
  stop_pid "$DAEMON_PID"
  ip netns del "$NS" 2>/dev/null
  rm -rf "$RUN"
}
trap cleanup EXIT

(cd "$ROOT" && go build -o "$RUN/fresh" ./tests/bench/fresh)
bench_netns "$NS"
load_pcap=
if [[ -d "$SHARED/pcaps" ]]; then
  load_pcap=$(find "$SHARED/pcaps" -maxdepth 1 -name '*.pcap' -printf '%s %p\n' | sort -n | tail -1 | cut -d' ' -f2-)
fi
printf 'machine: %s CPUs, load %s; %s probes per condition; load: %s at %s Mbit/s\n' "$(nproc)" \
  "$(cut -d' ' -f1-3 /proc/loadavg)" "$PROBES" "${load_pcap:-(no corpus: load conditions skipped)}" "$LOAD_MBPS"

# condition LABEL SUBNET EVERY LOAD EXTRA_FLAGS DAEMON_ARGS...: a fresh
# daemon on an empty store, with the default file age and EXTRA_FLAGS (JSON
# list members) for stenotype.
condition() {
  local label=$1 subnet=$2 every=$3 load=$4 flags=$5
  shift 5
  local store="$RUN/store-$subnet" certs="$RUN/certs"
  mkdir -p "$store/PKT0" "$store/IDX0" "$certs"
  DAEMON_FLAGS="\"--stats_sec=5\", \"--blocks=64\", \"--uid=0\", \"--gid=0\"$flags" \
    daemon_config "$RUN/config-$subnet" "$store" "stfr$subnet" "$PORT" "$certs"
  [[ -f "$certs/ca_cert.pem" ]] || STENOGRAPHER_CONFIG="$RUN/config-$subnet" "$ROOT/scripts/stenokeys.sh" root root >/dev/null
  start_daemon "$RUN/config-$subnet" "$RUN/log-$subnet" "$certs" "$PORT" "$store" "host 10.77.255.255" "$@"
  if [[ $load == 1 ]]; then
    ip netns exec "$NS" tcpreplay -q -i "stfr${subnet}p" --mbps="$LOAD_MBPS" --loop=0 "$load_pcap" >/dev/null 2>&1 &
    LOAD_PID=$!
    sleep 2
  fi
  ip netns exec "$NS" env STENOGRAPHER_CONFIG="$RUN/config-$subnet" "$RUN/fresh" --iface "stfr${subnet}p" \
    --probes "$PROBES" --every "$every" --subnet "$subnet" --label "$label" --stenoread "$ROOT/scripts/stenoread"
  if [[ -n "$LOAD_PID" ]]; then kill "$LOAD_PID" 2>/dev/null; wait "$LOAD_PID" 2>/dev/null || true; LOAD_PID=; fi
  stop_pid "$DAEMON_PID"
  DAEMON_PID=
  problems_in "fresh bench" "$RUN/log-$subnet"
  printf '%-28s files %s, %s MB on disk\n' "" "$(find "$store/PKT0" -maxdepth 1 -type f | wc -l)" \
    "$(du -sm "$store" | cut -f1)"
  rm -rf "$store"
}

old=', "--blockage_sec=10", "--live_index_ms=0"'
condition "defaults, idle" 1 1s 0 ""
if [[ -n "$load_pcap" ]]; then condition "defaults, loaded" 2 1s 1 ""; fi
condition "reference timings, idle" 3 2s 0 "$old" --watch_files=false
if [[ -n "$load_pcap" ]]; then condition "reference timings, loaded" 4 2s 1 "$old" --watch_files=false; fi
echo "(seconds from a probe's send to the end of the first stenoread that returned it, client included;"
echo " defaults: --blockage_sec=1 --live_index_ms=1000 and inotify; reference timings: --blockage_sec=10, no live index, 15 s scan)"
