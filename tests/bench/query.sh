#!/usr/bin/env bash
# Query benchmark (called by `make bench` after run.sh): builds a store of
# more than 2 GB of packets by importing one large capture made from the
# corpus (tests/bench/mkbig: copies shifted in time and address), then times
# queries with stenoquery next to tcpdump scanning the same packets as one
# pcap. Each figure is the median of BENCH_RUNS runs (default 3; stenoquery
# and tcpdump alternate), from the page cache (the store and the pcap were
# just written).
#
# BENCH_QUERY_DIR keeps the work directory (big.pcap and store) after the
# run; with BENCH_REUSE=1 as well, an existing store there is reused instead
# of being built again (for repeated measurements). By default a fresh store
# is built in a temporary directory that is removed afterwards.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="${BENCH_BIN:-$ROOT/build/bin}" # BENCH_BIN: binaries to time (default: this tree's)
SHARED="${STENO_SHARED:-$(dirname "$ROOT")/shared}"
RUNS="${BENCH_RUNS:-3}"
WORK="${BENCH_QUERY_DIR:-/var/tmp/steno-qbench}"
export PATH=/usr/local/go/bin:$PATH
[[ -d "$SHARED/pcaps" ]] || { echo "query bench: corpus not found at $SHARED/pcaps" >&2; exit 1; }
mkdir -p "$WORK"
[[ -n "${BENCH_QUERY_DIR:-}" ]] || trap 'rm -rf "$WORK"' EXIT

echo "== query benchmark =="
if [[ "${BENCH_REUSE:-0}" == 1 && -s "$WORK/big.pcap" && -d "$WORK/store/PKT0" && -f "$WORK/store/.complete" ]]; then
  echo "reusing the store in $WORK (BENCH_REUSE=1)"
  t0=0 t1=0
else
  (cd "$ROOT" && go run ./tests/bench/mkbig -o "$WORK/big.pcap" -min_bytes "${BENCH_MIN_BYTES:-2200000000}" "$SHARED"/pcaps/*.pcap) | tee "$WORK/mkbig.log"
  rm -rf "$WORK/store" && mkdir -p "$WORK/store"
  t0=$(date +%s.%N)
  "$BIN/stenotype" --pcap_in="$WORK/big.pcap" --dir="$WORK/store" --uid=0 --gid=0 --fileage_sec=3600 -q
  t1=$(date +%s.%N)
  touch "$WORK/store/.complete"
fi
pkt_bytes=$(du -cb "$WORK"/store/PKT0/* | tail -1 | cut -f1)
idx_bytes=$(du -cb "$WORK"/store/IDX0/* | tail -1 | cut -f1)
files=$(find "$WORK/store/PKT0" -maxdepth 1 -type f ! -name ".*" | wc -l)
printf 'store: %s files, %.2f GB packet files, %.1f MB index files, %s packets; ' \
  "$files" "$(echo "$pkt_bytes/1000000000" | bc -l)" "$(echo "$idx_bytes/1000000" | bc -l)" "$(sed -n 's/^mkbig: \([0-9]*\) packets.*/\1/p' "$WORK/mkbig.log")"
if [[ "$t1" == 0 ]]; then echo "reused"; else printf 'imported in %.1f s\n' "$(echo "$t1-$t0" | bc -l)"; fi
echo "runs: median of $RUNS; $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# median_times CMD_A... -- CMD_B...: runs the two commands alternately
# RUNS times each (so that the load of other work on the machine falls on
# both alike) and prints, per command, "wall user sys" (seconds,
# microsecond resolution) of its run with the median wall time.
median_times() {
  python3 - "$RUNS" "$@" <<'PY'
import resource, subprocess, sys, time
runs, args = int(sys.argv[1]), sys.argv[2:]
cut = args.index("--")
cmds = [args[:cut], args[cut + 1:]]
out = [[], []]
for _ in range(runs):
    for i, cmd in enumerate(cmds):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.monotonic()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        w = time.monotonic() - t
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        out[i].append((w, r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime))
for o in out:
    o.sort()
    print("%.6f %.6f %.6f" % o[(runs - 1) // 2])
PY
}

# first_packet_ms QUERY: time until the first packet record has arrived
# (median of RUNS runs).
first_packet_ms() {
  python3 - "$BIN/stenoquery" "$WORK/store" "$1" "$RUNS" <<'PY'
import subprocess, sys, time
ms = []
for _ in range(int(sys.argv[4])):
    t = time.monotonic()
    p = subprocess.Popen([sys.argv[1], "--dir", sys.argv[2], sys.argv[3]], stdout=subprocess.PIPE)
    need, got = 24 + 16, b""
    while len(got) < need:
        b = p.stdout.read1(need - len(got))
        if not b:
            break
        got += b
    ms.append((time.monotonic() - t) * 1000)
    p.kill()
    p.wait()
ms.sort()
print("%.1f" % ms[(len(ms) - 1) // 2])
PY
}

# The time-range row selects a window of a few files' worth of packets in
# the middle of the store: from 30 s after the middle file was opened to
# 30 s after the file two later was (a few hundred thousand packets; the
# files at both ends are filtered by packet timestamps).
mapfile -t NAMES < <(ls "$WORK/store/PKT0")
MID=$(( ${#NAMES[@]} / 2 ))
END=$(( MID + 2 < ${#NAMES[@]} ? MID + 2 : ${#NAMES[@]} - 1 ))
AFTER=$(date -u -d "@$(( ${NAMES[$MID]} / 1000000 + 30 ))" +%Y-%m-%dT%H:%M:%SZ)
BEFORE=$(date -u -d "@$(( ${NAMES[$END]} / 1000000 + 30 ))" +%Y-%m-%dT%H:%M:%SZ)
printf '%-34s %10s %9s %9s %9s %9s | %9s %9s %8s %9s\n' query packets idx_KB wall_s cpu_s first_ms tcpdump_s tcpdump_n speedup stream_MB/s
run() {
  local q=$1 filter=$2
  local n w u s first tw tn
  local idx
  n=$("$BIN/stenoquery" --dir "$WORK/store" --count --stats "$q" 2>"$WORK/stats")
  idx=$(sed -n 's/.*index_bytes_read=\([0-9]*\).*/\1/p' "$WORK/stats")
  { read -r w u s; read -r tw _ _; } < <(median_times "$BIN/stenoquery" --dir "$WORK/store" "$q" -- tcpdump -nr "$WORK/big.pcap" -w - "$filter")
  first=$(first_packet_ms "$q")
  tn=$(tcpdump -nr "$WORK/big.pcap" --count "$filter" 2>/dev/null | awk '{print $1}')
  local mb
  mb=$("$BIN/stenoquery" --dir "$WORK/store" "$q" | wc -c)
  printf '%-34s %10s %9d %9.4f %9.4f %9s | %9.3f %9s %7.1fx %9.1f\n' "$q" "$n" "$((idx / 1024))" "$w" "$(echo "$u+$s" | bc)" "$first" "$tw" "$tn" \
    "$(echo "$tw/$w" | bc -l)" "$(echo "$mb/1000000/$w" | bc -l)"
}
run "host 212.199.202.9" "ip host 212.199.202.9"
run "port 443" "tcp port 443 or udp port 443 or (vlan and (tcp port 443 or udp port 443))"
run "net 192.168.0.0/16 and port 53" "ip net 192.168.0.0/16 and (tcp port 53 or udp port 53)"
run "after $AFTER and before $BEFORE" "greater 0"
# Direction and negation: a per-packet header check on the candidates; a
# difference of sets; and a negation no indexed term bounds (a scan).
run "src host 212.199.202.9" "ip src host 212.199.202.9"
run "net 192.168.0.0/16 and not port 53" "(ip net 192.168.0.0/16 and not (tcp port 53 or udp port 53)) or (vlan and ip net 192.168.0.0/16 and not (tcp port 53 or udp port 53))"
run "not port 443" "not (tcp port 443 or udp port 443 or (vlan and (tcp port 443 or udp port 443)))"
echo "(idx_KB: index bytes the key lookups read, over all files; tcpdump_n: tcpdump's count for a comparable filter; the time-range row's tcpdump scans everything, having no time filter)"
