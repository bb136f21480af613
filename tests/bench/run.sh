#!/usr/bin/env bash
# Benchmarks for stenotype (called by `make bench`). Prints each figure with
# the conditions it was measured under. Needs root for the live part.
#
#   1. Offline indexing: build/bin/stenobench_index over the corpus, and
#      `stenotype --pcap_in` over every corpus file (wall, CPU, packets/s).
#   2. Live capture on a veth pair in private network namespaces at the
#      highest rate tcpreplay reaches here (--topspeed, pcap preloaded, looped),
#      with stenotype and `tcpdump -w` capturing the same replay at once:
#      offered packets, stored packets, kernel drops, CPU s per million packets.
#   3. Trickle: 5 packets/s past a live stenotype with --blockage_sec=1:
#      disk space (du) against frame bytes and file length (sparse files).
#   With BENCH_BASE_STENOTYPE=<path to another build>, 2 and 3 run that
#   binary too, next to this one (before/after figures).
#
# Environment: STENO_SHARED (corpus, default <repo>/../shared),
# BENCH_SECONDS (live replay duration, default 20), BENCH_PCAP (live replay
# file, default mercury-emix.pcap), BENCH_BLOCKS (ring blocks, default 1024),
# TRICKLE_SECONDS (trickle duration, default 30), BENCH_BASE_STENOTYPE.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="$ROOT/build/bin"
SHARED="${STENO_SHARED:-$(dirname "$ROOT")/shared}"
PCAPS="$SHARED/pcaps"
SECONDS_LIVE="${BENCH_SECONDS:-20}"
LIVE_PCAP="${BENCH_PCAP:-$PCAPS/mercury-emix.pcap}"
BLOCKS="${BENCH_BLOCKS:-1024}"
NS_CAP="stt-$$-bench-cap"   # same prefix/pid scheme as tests/internal/netns,
NS_SND="stt-$$-bench-snd"   # so a crashed run's leftovers are swept
IF_CAP="stt$$xbc"
IF_SND="stt$$xbs"

# shellcheck source=SCRIPTDIR/lib.sh
source "$ROOT/tests/bench/lib.sh"

die() { echo "bench: $*" >&2; exit 1; }
[[ -x "$BIN/stenotype" ]] || die "$BIN/stenotype not built (make build)"
[[ -d "$PCAPS" ]] || die "corpus not found at $PCAPS (set STENO_SHARED)"

WORK="$(mktemp -d "${BENCH_TMP:-/var/tmp}/steno-bench.XXXXXX")"
chmod 755 "$WORK"
cleanup() {
  set +e
  [[ -n "${STENO_PID:-}" ]] && kill -KILL "$STENO_PID" 2>/dev/null
  [[ -n "${TD_PID:-}" ]] && kill -KILL "$TD_PID" 2>/dev/null
  ip netns del "$NS_CAP" 2>/dev/null
  ip netns del "$NS_SND" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

# A --dir stenotype can write after dropping privileges to nobody, laid out
# as stenographer does before starting it (PKT0/IDX0 exist, nobody's).
outdir() {
  local d="$WORK/$1"
  mkdir -p "$d/PKT0" "$d/IDX0"
  chown nobody:nogroup "$d" "$d/PKT0" "$d/IDX0"
  echo "$d"
}

echo "== conditions"
echo "host: $(uname -sr), $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(free -g | awk '/Mem:/ {print $2}') GiB RAM"
echo "output disk: $(df -T "$WORK" | awk 'NR==2 {print $2, $1}')"
echo "stenotype: $BIN/stenotype ($(stat -c %y "$BIN/stenotype" | cut -d. -f1))"
echo

# ---------------------------------------------------------------- offline
echo "== 1. offline indexing"
mapfile -t FILES < <(ls "$PCAPS"/*.pcap)
TOTAL_BYTES=$(cat "${FILES[@]}" | wc -c)
if [[ -x "$BIN/stenobench_index" ]]; then
  echo "-- stenobench_index $PCAPS (parser + in-memory index only)"
  "$BIN/stenobench_index" "$PCAPS" 2>&1 | sed 's/^/   /' || echo "   stenobench_index failed (status $?)"
else
  echo "-- stenobench_index: not built (build/bin/stenobench_index missing), skipped"
fi

echo "-- stenotype --pcap_in over ${#FILES[@]} corpus files ($((TOTAL_BYTES / 1024)) KiB of pcap), one process per file, sequential"
LOGS="$WORK/import-logs"
mkdir -p "$LOGS"
TIMEFORMAT='%R %U %S'
{ time (
  for f in "${FILES[@]}"; do
    n=$(basename "$f" .pcap)
    "$BIN/stenotype" --pcap_in="$f" --dir="$(outdir "import/$n")" >"$LOGS/$n.log" 2>&1 \
      || echo "   import failed: $n (see log)" >&2
  done
); } 2>"$WORK/import.time"
read -r WALL USR SYS < <(tail -1 "$WORK/import.time")
PKTS=0; BYTES=0
for l in "$LOGS"/*.log; do
  PKTS=$((PKTS + $(stat_field "$l" packets)))
  BYTES=$((BYTES + $(stat_field "$l" bytes)))
done
grep -h "import failed" "$WORK/import.time" || true
awk -v w="$WALL" -v u="$USR" -v s="$SYS" -v p="$PKTS" -v b="$BYTES" 'BEGIN {
  cpu = u + s
  printf "   packets %d, frame bytes %d (from final STATS lines)\n", p, b
  printf "   wall %.2f s, CPU %.2f s (user %.2f, sys %.2f); includes %s process starts, O_DIRECT writes, fsync, index files\n", w, cpu, u, s, "per-file"
  if (w > 0) printf "   %.0f packets/s wall, %.0f packets/s per CPU second, %.1f MB/s wall\n", p / w, p / cpu, b / w / 1e6
}'
ZE="$PCAPS/zeek-echo-connections.pcap"
if [[ -f "$ZE" ]]; then
  { time "$BIN/stenotype" --pcap_in="$ZE" --dir="$(outdir import-ze)" >"$WORK/ze.log" 2>&1; } 2>"$WORK/ze.time"
  read -r WALL USR SYS < "$WORK/ze.time"
  P=$(stat_field "$WORK/ze.log" packets)
  awk -v w="$WALL" -v u="$USR" -v s="$SYS" -v p="$P" 'BEGIN {
    printf "-- single large file (zeek-echo-connections.pcap): %d packets, wall %.2f s, CPU %.2f s -> %.0f packets/s wall\n", p, w, u + s, p / w }'
fi
echo

# ------------------------------------------------------------------- live
echo "== 2. live capture on a veth pair (tcpreplay --topspeed -K, ${SECONDS_LIVE}s, $(basename "$LIVE_PCAP"))"
if [[ $(id -u) -ne 0 ]]; then echo "   needs root, skipped"; exit 0; fi
for t in ip tcpreplay tcpdump; do command -v $t >/dev/null || die "$t not installed (make deps)"; done

for ns in "$NS_CAP" "$NS_SND"; do
  ip netns add "$ns"
  ip netns exec "$ns" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
ip link add "$IF_CAP" netns "$NS_CAP" mtu 9000 type veth peer name "$IF_SND" netns "$NS_SND" mtu 9000
ip -n "$NS_CAP" link set "$IF_CAP" up
ip -n "$NS_SND" link set "$IF_SND" up

# Run a command in the capture namespace under a shell that reports its
# child's CPU time (bash `times`) when the child exits; SIGTERM is passed on.
# Called in the background: exec makes $! the wrapper shell itself.
cpu_wrap() {
  local out="$1"; shift
  # shellcheck disable=SC2016  # the inner shell expands these
  exec ip netns exec "$NS_CAP" bash -c '
    "$@" & p=$!
    trap "kill -TERM $p" TERM INT
    wait $p; wait $p; rc=$?
    times >&3   # line 2: user and system time of reaped children
    exit $rc' wrap "$@" 3>"$out"
}

# live_run BIN LABEL: one live measurement of stenotype binary BIN beside
# tcpdump -w on the same replay.
live_run() {
  local bin="$1" label="$2"
  STENO_DIR="$(outdir "live-$label")"
  cpu_wrap "$WORK/steno.cpu" "$bin" --iface="$IF_CAP" --dir="$STENO_DIR" --threads=1 \
    --blocks="$BLOCKS" --blockage_sec=1 --stats_sec=5 >"$WORK/steno.log" 2>&1 &
  STENO_PID=$!
  for _ in $(seq 300); do grep -q "STATS thread=0" "$WORK/steno.log" && break; sleep 0.1; done
  grep -q "STATS thread=0" "$WORK/steno.log" || { tail -20 "$WORK/steno.log"; die "stenotype did not start"; }

  cpu_wrap "$WORK/td.cpu" tcpdump -i "$IF_CAP" -w "$WORK/td.pcap" -s 0 -B 65536 -n >"$WORK/td.log" 2>&1 &
  TD_PID=$!
  for _ in $(seq 300); do grep -q "listening on" "$WORK/td.log" && break; sleep 0.1; done

  ip netns exec "$NS_SND" tcpreplay -i "$IF_SND" --topspeed -K --loop=100000 --duration="$SECONDS_LIVE" "$LIVE_PCAP" \
    >"$WORK/replay.log" 2>&1 || true
  OFFERED=$(sed -n 's/.*Successful packets: *\([0-9]*\).*/\1/p' "$WORK/replay.log")
  RATE=$(sed -n 's/^Rated: *\(.*\)/\1/p' "$WORK/replay.log")
  sleep 3   # let the last ring blocks retire (--blockage_sec=1)
  kill -TERM "$STENO_PID" "$TD_PID"
  wait "$STENO_PID" || echo "   stenotype exited with status $?"
  wait "$TD_PID" || true
  STENO_PID=; TD_PID=

  read -r SU SS < <(sed -n 2p "$WORK/steno.cpu" | sed 's/m/ /g; s/s//g' | awk '{print $1*60+$2, $3*60+$4}')
  read -r TU TS < <(sed -n 2p "$WORK/td.cpu" | sed 's/m/ /g; s/s//g' | awk '{print $1*60+$2, $3*60+$4}')
  S_PKTS=$(stat_field "$WORK/steno.log" packets)
  S_DROPS=$(stat_field "$WORK/steno.log" drops)
  S_FILES=$(find "$STENO_DIR/PKT0" -maxdepth 1 -type f ! -name '.*' | wc -l)
  S_DISK=$(du -sm "$STENO_DIR/PKT0" | cut -f1)
  S_STORED=0
  if [[ -x "$BIN/stenodump" ]]; then
    while IFS= read -r -d '' f; do
      S_STORED=$((S_STORED + $("$BIN/stenodump" positions "$f" | wc -l)))
    done < <(find "$STENO_DIR/PKT0" -maxdepth 1 -type f ! -name '.*' -print0)
  fi
  T_CAPT=$(sed -n 's/^\([0-9]*\) packets captured.*/\1/p' "$WORK/td.log")
  T_RECV=$(sed -n 's/^\([0-9]*\) packets received by filter.*/\1/p' "$WORK/td.log")
  T_DROP=$(sed -n 's/^\([0-9]*\) packets dropped by kernel.*/\1/p' "$WORK/td.log")

  echo "   [$label] $bin"
  echo "   conditions: veth MTU 9000 in two namespaces; stenotype --threads=1 --blocks=$BLOCKS --blocksize_kb=1024 --blockage_sec=1;"
  echo "               tcpdump -w -s 0 -B 65536 on the same interface at the same time; 2 cores shared by sender and both capturers"
  echo "   tcpreplay offered: ${OFFERED:-?} packets ($RATE)"
  awk -v o="${OFFERED:-0}" -v p="$S_PKTS" -v d="$S_DROPS" -v u="$SU" -v s="$SS" -v f="$S_FILES" -v m="$S_DISK" -v st="$S_STORED" 'BEGIN {
    printf "   stenotype: %d packets (%.2f%% of offered; final STATS), %d read back from %d files (%d MiB) with stenodump, kernel drops %d, CPU %.2f s (user %.2f sys %.2f) = %.2f CPU s per million packets\n",
      p, o ? 100 * p / o : 0, st, f, m, d, u + s, u, s, p ? (u + s) * 1e6 / p : 0 }'
  awk -v o="${OFFERED:-0}" -v c="${T_CAPT:-0}" -v r="${T_RECV:-0}" -v d="${T_DROP:-0}" -v u="$TU" -v s="$TS" 'BEGIN {
    printf "   tcpdump -w: captured %d packets (%.2f%% of offered), received by filter %d, dropped by kernel %d, CPU %.2f s (user %.2f sys %.2f) = %.2f CPU s per million packets\n",
      c, o ? 100 * c / o : 0, r, d, u + s, u, s, c ? (u + s) * 1e6 / c : 0 }'
}

live_run "$BIN/stenotype" this
if [[ -n "${BENCH_BASE_STENOTYPE:-}" ]]; then
  echo "   (the same replay again with the base binary, for comparison; other jobs share this machine, so compare within noise)"
  live_run "$BENCH_BASE_STENOTYPE" base
fi
echo

# ---------------------------------------------------------------- trickle
echo "== 3. trickle: 5 packets/s of 1000-byte frames for ${TRICKLE_SECONDS:-30}s, --blockage_sec=1 --fileage_sec=10"
# A slow link retires nearly empty blocks every second; stenotype writes
# only their used part (sparse files), so the disk space (du) should be
# near the packet bytes while the file length (ls) stays a block multiple.
TRICKLE_PCAP="$WORK/trickle.pcap"
python3 - "$TRICKLE_PCAP" "$((5 * ${TRICKLE_SECONDS:-30}))" <<'PY'
import struct, sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "wb") as f:
    f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
    for i in range(n):
        frame = bytes.fromhex("020000000001020000000002" "0800") + bytes([0x45, 0]) + struct.pack(">H", 986)
        frame += bytes(4) + bytes([64, 17, 0, 0]) + bytes([10, 9, 0, 1, 10, 9, 0, 2])
        frame += struct.pack(">HHHH", 40000, 9999, 966, 0) + struct.pack(">I", i)
        frame += bytes((i + j) & 0xff for j in range(1000 - len(frame)))
        f.write(struct.pack("<IIII", 1700000000 + i, 0, len(frame), len(frame)) + frame)
PY
trickle_run() {
  local bin="$1" label="$2" d
  d="$(outdir "trickle-$label")"
  ip netns exec "$NS_CAP" "$bin" --iface="$IF_CAP" --dir="$d" --threads=1 --blocks=64 --blockage_sec=1 \
    --fileage_sec=10 --stats_sec=1 >"$WORK/trickle-$label.log" 2>&1 &
  STENO_PID=$!
  for _ in $(seq 300); do grep -q "STATS thread=0" "$WORK/trickle-$label.log" && break; sleep 0.1; done
  ip netns exec "$NS_SND" tcpreplay -i "$IF_SND" --pps=5 "$TRICKLE_PCAP" >"$WORK/trickle-replay.log" 2>&1 || true
  sleep 3   # the last block retires
  kill -TERM "$STENO_PID"; wait "$STENO_PID" || echo "   stenotype exited with status $?"
  STENO_PID=
  local pkts bytes files len alloc
  pkts=$(stat_field "$WORK/trickle-$label.log" packets)
  bytes=$(stat_field "$WORK/trickle-$label.log" bytes)
  files=$(find "$d/PKT0" -maxdepth 1 -type f ! -name '.*' | wc -l)
  len=$(find "$d/PKT0" -maxdepth 1 -type f ! -name '.*' -printf '%s\n' | awk '{s += $1} END {print s + 0}')
  alloc=$(find "$d/PKT0" -maxdepth 1 -type f ! -name '.*' -printf '%b\n' | awk '{s += $1 * 512} END {print s + 0}')
  awk -v l="$label" -v b="$bin" -v p="$pkts" -v by="$bytes" -v f="$files" -v len="$len" -v a="$alloc" 'BEGIN {
    printf "   [%s] %s: %d packets, %d frame bytes in %d files; length (ls) %.1f MiB, on disk (du, st_blocks) %.2f MiB = %.1fx the frame bytes\n",
      l, b, p, by, f, len / 1048576, a / 1048576, by ? a / by : 0 }'
}
trickle_run "$BIN/stenotype" this
# (An if, not a && list: as the script's last command a false test would
# be its exit status and fail `make bench`.)
if [[ -n "${BENCH_BASE_STENOTYPE:-}" ]]; then
  trickle_run "$BENCH_BASE_STENOTYPE" base
fi
