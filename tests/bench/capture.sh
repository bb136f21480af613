#!/usr/bin/env bash
# Capture cost benchmark (in `make bench`): what capturing costs the capture
# process, in CPU seconds per million packets (user and system apart), and
# what it loses (kernel drops), for stenotype with one and two threads
# (fanout) on each write engine (--io_engine=aio|uring), with the live
# index stenographer turns on (--live_index_ms=1000), next to
# `tcpdump -w` on the same replay.
#
# Each configuration captures alone: a veth pair between two private
# network namespaces, the capturer on one end, tcpreplay sending the same
# packet set from the other, preloaded (-K) and looped, once at a fixed
# rate and once at top speed. The capture process runs under GNU time, so
# its CPU includes every thread (io_uring workers too) and the shutdown
# (last files synced and indexed); what it spent before the replay
# (ring setup) is taken off. Not counted anywhere: the kernel's receive
# path, which on a veth runs in the sender's context.
#
# With STENO_OLD_STENOTYPE=<binary> the fast configuration (one thread, top
# speed) runs that binary too (an older build, default flags: libaio),
# for a before/after comparison.
#
# Environment: STENO_SHARED (corpus, default <repo>/../shared),
# CAPTURE_PCAP (default mercury-emix.pcap of the corpus; without a corpus
# a generated one), CAPTURE_PPS (fixed rate, default 100000),
# CAPTURE_LOOPS (loops at the fixed rate, default 140),
# CAPTURE_TOP_LOOPS (loops at top speed, default 500),
# CAPTURE_BLOCKS (ring blocks of 1 MiB per thread, default 256; tcpdump
# gets the same buffer), CAPTURE_REPEAT (rounds, default 1; figures are
# medians over rounds), CAPTURE_ONLY (an extended regular expression: only
# the configurations whose label matches, e.g. 'uring|1t aio'),
# CAPTURE_NS_PREFIX (names of the namespaces and veths, default stt-<pid>).
# In the table, files counts packet and index files.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="$ROOT/build/bin"
SHARED="${STENO_SHARED:-$(dirname "$ROOT")/shared}"
PPS="${CAPTURE_PPS:-100000}"
LOOPS="${CAPTURE_LOOPS:-140}"
TOP_LOOPS="${CAPTURE_TOP_LOOPS:-500}"
BLOCKS="${CAPTURE_BLOCKS:-256}"
REPEAT="${CAPTURE_REPEAT:-1}"
OLD="${STENO_OLD_STENOTYPE:-}"
ONLY="${CAPTURE_ONLY:-}"
P="${CAPTURE_NS_PREFIX:-stt-$$}"  # tests/internal/netns's scheme: a crashed run's leftovers are swept
NS_CAP="$P-cost-cap" NS_SND="$P-cost-snd"
IF_P="${P//-/}"
IF_CAP="${IF_P:0:11}cc" IF_SND="${IF_P:0:11}cs"

# shellcheck source=SCRIPTDIR/lib.sh
source "$ROOT/tests/bench/lib.sh"

die() { echo "capture bench: $*" >&2; exit 1; }
[[ -x "$BIN/stenotype" ]] || die "$BIN/stenotype not built (make build)"
[[ -z "$OLD" || -x "$OLD" ]] || die "STENO_OLD_STENOTYPE=$OLD is not an executable"
[[ $(id -u) == 0 ]] || die "needs root (network namespaces)"
for t in ip tcpreplay tcpdump python3 /usr/bin/time; do command -v "$t" >/dev/null || die "$t not found (make deps)"; done

WORK="$(mktemp -d "${BENCH_TMP:-/var/tmp}/steno-capture.XXXXXX")"
chmod 755 "$WORK"
CAP_PID=
cleanup() {
  set +e
  [[ -n "$CAP_PID" ]] && kill -KILL "$CAP_PID" 2>/dev/null
  ip netns del "$NS_CAP" 2>/dev/null
  ip netns del "$NS_SND" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

PCAP="${CAPTURE_PCAP:-$SHARED/pcaps/mercury-emix.pcap}"
if [[ ! -f "$PCAP" ]]; then
  echo "no $PCAP: replaying 7000 generated UDP frames of 64 to 1514 bytes instead"
  PCAP="$WORK/generated.pcap"
  python3 - "$PCAP" <<'GEN'
import struct, sys
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
    for i in range(7000):
        n = 64 + (i * 97) % 1451
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, n - 14, i & 0xffff, 0, 64, 17, 0,
                         bytes([10, 7, i % 200, 1]), bytes([10, 8, 0, 1 + i % 50]))
        udp = struct.pack(">HHHH", 1024 + i % 3000, 53 + i % 7, n - 34, 0)
        frame = bytes.fromhex("020000000001020000000002" "0800") + ip + udp
        frame += bytes((i + j) & 0xff for j in range(n - len(frame)))
        f.write(struct.pack("<IIII", 1700000000 + i // 1000, (i % 1000) * 1000, n, n) + frame)
GEN
fi

bench_netns "$NS_CAP"
bench_netns "$NS_SND"
ip link add "$IF_CAP" netns "$NS_CAP" mtu 9000 type veth peer name "$IF_SND" netns "$NS_SND" mtu 9000
ip -n "$NS_CAP" link set "$IF_CAP" up
ip -n "$NS_SND" link set "$IF_SND" up

TCK=$(getconf CLK_TCK)
ROWS="$WORK/rows"
: >"$ROWS"

# ticks PID: user and system clock ticks of a process, all its threads.
ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }

# measure LABEL MODE READY CMD...: one capture of one replay. CMD runs in
# the capture namespace under GNU time; READY is a line its log prints
# once it captures. Appends a row to $ROWS.
measure() {
  local label=$1 mode=$2 ready=$3 log="$WORK/cap.log" tfile="$WORK/cap.time" child u0 s0 rate_args loops
  shift 3
  [[ -z "$ONLY" || $label =~ $ONLY ]] || return 0
  rm -rf "$WORK/out" && mkdir -p "$WORK/out" && chown nobody:nogroup "$WORK/out"
  ip netns exec "$NS_CAP" /usr/bin/time -f '%U %S' -o "$tfile" "$@" >"$log" 2>&1 &
  CAP_PID=$!
  for _ in $(seq 300); do grep -q "$ready" "$log" && break; sleep 0.1; done
  grep -q "$ready" "$log" || { tail -20 "$log"; die "$label did not start"; }
  child=$(pgrep -P "$CAP_PID" | head -1)
  read -r u0 s0 < <(ticks "$child")
  if [[ $mode == fixed ]]; then rate_args=(--pps="$PPS"); loops=$LOOPS; else rate_args=(--topspeed); loops=$TOP_LOOPS; fi
  ip netns exec "$NS_SND" tcpreplay -q -i "$IF_SND" -K "${rate_args[@]}" --loop="$loops" "$PCAP" >"$WORK/replay.log" 2>&1 || true
  sleep 2  # the last ring blocks retire (--blockage_sec=1)
  kill -TERM "$child"
  wait "$CAP_PID" || echo "   $label exited with status $?"
  CAP_PID=
  local sent secs user sys pkts drops bytes files
  sent=$(sed -n 's/.*Successful packets: *\([0-9]*\).*/\1/p' "$WORK/replay.log")
  secs=$(sed -n 's/^Actual: .* sent in \([0-9.]*\) seconds.*/\1/p' "$WORK/replay.log")
  read -r user sys < <(awk -v u0="$u0" -v s0="$s0" -v t="$TCK" 'END {print $1 - u0 / t, $2 - s0 / t}' "$tfile")
  if [[ $label == tcpdump* ]]; then
    pkts=$(sed -n 's/^\([0-9]*\) packets captured.*/\1/p' "$log")
    drops=$(sed -n 's/^\([0-9]*\) packets dropped by kernel.*/\1/p' "$log")
  else
    pkts=$(stat_field "$log" packets)
    drops=$(stat_field "$log" drops)
  fi
  bytes=$(du -s -B1 "$WORK/out" | cut -f1)  # allocated: a sparse block counts its written part
  files=$(find "$WORK/out" -type f ! -name '.*' | wc -l)
  echo "$label $mode ${sent:-0} ${secs:-0} ${pkts:-0} ${drops:-0} $user $sys $bytes $files" >>"$ROWS"
  printf '   %-22s %-5s sent %9s in %6ss, captured %9s, drops %8s, user %6.2f s, sys %6.2f s\n' \
    "$label" "$mode" "${sent:-?}" "${secs:-?}" "${pkts:-?}" "${drops:-?}" "$user" "$sys"
}

steno() {
  local label=$1 mode=$2 bin=$3 threads=$4
  shift 4
  measure "$label" "$mode" "STATS thread=$((threads - 1))" "$bin" --iface="$IF_CAP" --dir="$WORK/out" \
    --threads="$threads" --blocks="$BLOCKS" --blockage_sec=1 --stats_sec=1 "$@"
}

tcpdump_w() {
  measure "tcpdump -w" "$1" "listening on" tcpdump -i "$IF_CAP" -w "$WORK/out/td.pcap" -s 0 -B $((BLOCKS * 1024)) -n
}

echo "== capture cost: CPU of the capture process per million packets, drops"
echo "host: $(uname -sr), $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(free -g | awk '/Mem:/ {print $2}') GiB RAM"
echo "output: $(df -T "$WORK" | awk 'NR==2 {print $2, $1}') (O_DIRECT for stenotype; tcpdump through the page cache)"
echo "replay: $PCAP, $(python3 -c 'import sys,struct
f=open(sys.argv[1],"rb"); h=f.read(24); e="<" if h[:4]==b"\xd4\xc3\xb2\xa1" or h[:4]==b"\x4d\x3c\xb2\xa1" else ">"
n=b=0
while True:
    r=f.read(16)
    if len(r)<16: break
    incl=struct.unpack(e+"IIII",r)[2]; f.seek(incl,1); n+=1; b+=incl
print(n,"packets,",b,"bytes per loop")' "$PCAP"); fixed rate $PPS packets/s x $LOOPS loops, top speed x $TOP_LOOPS loops"
echo "capture: veth MTU 9000; stenotype --blocks=$BLOCKS (1 MiB each, per thread) --blockage_sec=1, files in $WORK;"
echo "         tcpdump -w -s 0 -B $((BLOCKS * 1024)); one capturer at a time; $REPEAT round(s), medians"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

for ((r = 1; r <= REPEAT; r++)); do
  echo "-- round $r of $REPEAT (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  for mode in fixed top; do
    steno "stenotype 1t aio" "$mode" "$BIN/stenotype" 1 --io_engine=aio
    steno "stenotype 1t uring" "$mode" "$BIN/stenotype" 1 --io_engine=uring
    steno "stenotype 2t aio" "$mode" "$BIN/stenotype" 2 --io_engine=aio
    steno "stenotype 2t uring" "$mode" "$BIN/stenotype" 2 --io_engine=uring
    # What stenographer runs by default: a delta index every second.
    steno "stenotype 1t aio live" "$mode" "$BIN/stenotype" 1 --io_engine=aio --live_index_ms=1000
    steno "stenotype 2t aio live" "$mode" "$BIN/stenotype" 2 --io_engine=aio --live_index_ms=1000
    tcpdump_w "$mode"
    [[ -n "$OLD" && $mode == top ]] && steno "old stenotype 1t" "$mode" "$OLD" 1
  done
done
echo

python3 - "$ROWS" <<'PY'
import statistics, sys
rows = {}
order = []
for line in open(sys.argv[1]):
    f = line.split()
    key = (" ".join(f[:-9]), f[-9])  # label (several words), rate mode
    if key not in rows:
        rows[key] = []
        order.append(key)
    rows[key].append([float(x) for x in f[-8:]])
med = lambda xs: statistics.median(xs)
print("== medians (%s round(s)); CPU s per million captured packets" % max(len(v) for v in rows.values()))
print("%-22s %-5s %10s %8s %10s %9s %8s %8s %8s %8s %8s %9s %6s" % (
    "configuration", "rate", "sent", "secs", "captured", "drops", "user s", "sys s",
    "user/M", "sys/M", "total/M", "MiB", "files"))
for key in sorted(order, key=lambda k: (k[1] != "fixed", order.index(k))):
    v = rows[key]
    col = lambda i: med([r[i] for r in v])
    sent, secs, pkts, drops, user, sys_, byts, files = (col(i) for i in range(8))
    per = lambda x: x * 1e6 / pkts if pkts else float("nan")
    print("%-22s %-5s %10d %8.2f %10d %9d %8.2f %8.2f %8.3f %8.3f %8.3f %9.1f %6d" % (
        key[0], key[1], sent, secs, pkts, drops, user, sys_, per(user), per(sys_), per(user + sys_),
        byts / 1048576, files))
PY
