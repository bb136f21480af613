# shellcheck shell=bash
# shellcheck disable=SC2034  # its variables are results for the sourcing script
# Shared by the daemon, fleet and file-count benchmarks (sourced, not run):
# the store they serve, the private namespace their daemons run in,
# starting a real stenographer on part of the store, and the timing helpers
# of the inner part (the one that runs inside the namespace).
#
# The sourcing script sets ROOT, BIN, SHARED and WORK first.

# bench_store NAME: makes sure $WORK/store holds the query benchmark's
# store (query.sh's, reused when complete, else built from the corpus with
# tests/bench/mkbig). Sets BENCH_BUILT=1 when it built one.
bench_store() {
  BENCH_BUILT=0
  if [[ -f "$WORK/store/.complete" && -d "$WORK/store/PKT0" ]]; then
    echo "reusing the store in $WORK"
    return
  fi
  [[ -d "$SHARED/pcaps" ]] || { echo "$1: corpus not found at $SHARED/pcaps" >&2; exit 1; }
  BENCH_BUILT=1
  mkdir -p "$WORK"
  (cd "$ROOT" && go run ./tests/bench/mkbig -o "$WORK/big.pcap" -min_bytes "${BENCH_MIN_BYTES:-2200000000}" "$SHARED"/pcaps/*.pcap)
  rm -rf "$WORK/store" && mkdir -p "$WORK/store"
  "$BIN/stenotype" --pcap_in="$WORK/big.pcap" --dir="$WORK/store" --uid=0 --gid=0 --fileage_sec=3600 -q
  rm -f "$WORK/big.pcap"
  touch "$WORK/store/.complete"
}

# bench_need NAME BINARY...: every binary built, every tool the daemons and
# clients need present, and root (network namespaces).
bench_need() {
  local name=$1 b tool
  shift
  for b in "$@"; do
    [[ -x "$b" ]] || { echo "$name: $b not built (make build)" >&2; exit 1; }
  done
  for tool in ip curl jq openssl bc; do
    command -v "$tool" >/dev/null || { echo "$name: $tool not found (make deps)" >&2; exit 1; }
  done
  [[ $(id -u) == 0 ]] || { echo "$name: needs root (network namespace)" >&2; exit 1; }
}

# store_size DIR: sets PKT_BYTES, IDX_BYTES and FILES for the store in DIR.
store_size() {
  PKT_BYTES=$(du -cbL "$1"/PKT0/* | tail -1 | cut -f1)
  IDX_BYTES=$(du -cbL "$1"/IDX0/* | tail -1 | cut -f1)
  FILES=$(find "$1/PKT0" -maxdepth 1 -type f ! -name '.*' | wc -l)
}

# stat_field FILE NAME: the last value of a STATS field in a stenotype
# log, summed over its threads.
stat_field() {
  awk -v k="$2" '/STATS thread=/ { for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "thread") t = kv[2]; if (kv[1] == k) v[t] = kv[2] } }
    END { s = 0; for (t in v) s += v[t]; print s }' "$1"
}

# bench_netns NS: a namespace with lo up and IPv6 off (so the idle veths
# see no router solicitations and nothing is captured).
bench_netns() {
  ip netns add "$1"
  ip netns exec "$1" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n "$1" link set lo up
}

# daemon_config FILE STORE IFACE PORT CERTS [EXTRA]: a stenographer config
# serving STORE (PKT0, IDX0) on 127.0.0.1:PORT, its stenotype on IFACE (an
# idle veth of its own, made here inside $NS); EXTRA is more JSON members.
# DAEMON_FLAGS, when set, replaces stenotype's Flags (a JSON list's body).
daemon_config() {
  local file=$1 store=$2 iface=$3 port=$4 certs=$5 extra=${6:+,$6}
  local flags=${DAEMON_FLAGS:-'"--fileage_sec=86400", "--stats_sec=5", "--blocks=16", "--uid=0", "--gid=0"'}
  ip -n "$NS" link add "$iface" type veth peer name "${iface}p"
  ip -n "$NS" link set "$iface" up && ip -n "$NS" link set "${iface}p" up
  cat >"$file" <<EOF
{
  "Threads": [{"PacketsDirectory": "$store/PKT0", "IndexDirectory": "$store/IDX0"}],
  "StenotypePath": "$BIN/stenotype", "Interface": "$iface",
  "Port": $port, "Host": "127.0.0.1", "CertPath": "$certs",
  "Flags": [$flags]$extra
}
EOF
}

# https_ns CERTS CURL_ARGS...: curl with the client certificate in
# CERTS, inside $NS.
https_ns() {
  local certs=$1
  shift
  ip netns exec "$NS" curl -sS --fail --cert "$certs/client_cert.pem" --key "$certs/client_key.pem" \
    --cacert "$certs/ca_cert.pem" "$@"
}

# start_daemon CONFIG LOG CERTS PORT STORE QUERY [ARGS...]: starts
# stenographer (with ARGS) in $NS and waits until it serves the whole of
# STORE (QUERY's answer has the bytes stenoquery finds there: its first
# sync has seen every file). Sets DAEMON_PID; on failure prints the log
# and exits.
start_daemon() {
  local config=$1 log=$2 certs=$3 port=$4 store=$5 query=$6 want got up=0
  shift 6
  ip netns exec "$NS" "${STENO_DAEMON_BIN:-$BIN/stenographer}" --config="$config" "$@" >"$log" 2>&1 &
  DAEMON_PID=$!
  want=$("$BIN/stenoquery" --dir "$store" "$query" | wc -c)
  for _ in $(seq 1 900); do
    # Not yet listening is a failed pipeline: under set -e and pipefail
    # it must not end the script.
    got=$(https_ns "$certs" --data-raw "$query" "https://127.0.0.1:$port/query" 2>/dev/null | wc -c) || got=0
    [[ $got == "$want" ]] && { up=1; break; }
    kill -0 "$DAEMON_PID" 2>/dev/null || break
    sleep 0.2
  done
  if [[ $up != 1 ]]; then
    echo "stenographer on port $port did not come up serving $store ('$query': $want bytes expected); its log:" >&2
    tail -30 "$log" >&2
    exit 1
  fi
}

# stop_pid PID: SIGTERM, up to 30 s to exit, then SIGKILL.
stop_pid() {
  [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null || return 0
  kill -TERM "$1"
  for _ in $(seq 1 300); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null
}

# remove_new_files STORE START_US: removes the files the idle stenotype
# made in STORE (named after START_US or later); the store's own are
# named by 2025 packet times.
remove_new_files() {
  local d f n
  for d in "$1/PKT0" "$1/IDX0"; do
    for f in "$d"/* "$d"/.[0-9]*; do
      n=${f##*/}
      n=${n#.}
      [[ -e "$f" && $n =~ ^[0-9]+$ && $n -ge $2 ]] && rm -f -- "$f"
    done
  done
  return 0
}

# bench_teardown START_US STORE...: stops $DAEMON_PID, deletes $NS,
# removes the files the idle stenotype made in each STORE since START_US
# and the run directory $RUN (for an EXIT trap: never fails).
bench_teardown() {
  local since=$1 s
  shift
  stop_pid "$DAEMON_PID" || true
  ip netns del "$NS" 2>/dev/null || true
  for s in "$@"; do remove_new_files "$s" "$since"; done
  rm -rf "$RUN"
}

# problems_in NAME LOG...: fails when a log reports a race or a panic.
problems_in() {
  local name=$1
  shift
  if grep -q 'DATA RACE\|panic' "$@"; then
    echo "$name: a log reports a problem:" >&2
    grep -m5 'DATA RACE\|panic' "$@" >&2
    exit 1
  fi
}

# ---- inner part helpers ----

# times_us N CMD...: prints N wall times in microseconds, one per line
# (bash's clock: no process per reading), after one unmeasured warm-up run.
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

# pct P: the P-th percentile (nearest rank) of numbers on stdin.
pct() { sort -n | awk -v p="$1" '{a[NR] = $1} END {i = int((NR * p + 99) / 100); if (i < 1) i = 1; print a[i]}'; }

# proc_ticks PID: user + system CPU clock ticks of a process.
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# https_query_cmd CERTS PORT QUERY: sets HTTPS_QUERY to the curl command
# line of a /query over HTTPS, as stenocurl asks for it (for a timer that
# runs a command, not a shell function).
https_query_cmd() {
  HTTPS_QUERY=(curl -sS --fail --cert "$1/client_cert.pem" --key "$1/client_key.pem" --cacert "$1/ca_cert.pem"
    -H 'Content-Type: text/plain' --data-raw "$3" -o - "https://127.0.0.1:$2/query")
}

# https_query CERTS PORT QUERY: the PCAP answer of that /query.
https_query() {
  https_query_cmd "$@"
  "${HTTPS_QUERY[@]}"
}

# measure CMD...: runs CMD once unmeasured, WARM times, then COLD times
# with the page cache dropped before each, and prints "warm_ms warm_cpu_ms
# cold_ms cold_cpu_ms cold_disk_kb", each a median (cpu and disk of the
# CMD process, from its rusage, so other work on the machine does not add
# to them). With MEASURE_PID set it adds "srv_warm_cpu_ms srv_cold_cpu_ms
# srv_cold_disk_kb": the same of that process (the daemon answering CMD),
# from /proc/PID/stat and /proc/PID/io.
measure() {
  python3 - "$WARM" "$COLD" "${MEASURE_PID:-}" "$@" <<'PY'
import os, resource, subprocess, sys, time
warm, cold, pid, cmd = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4:]
tck = os.sysconf("SC_CLK_TCK")
def server():
    if not pid:
        return 0.0, 0
    with open("/proc/%s/stat" % pid) as f:
        st = f.read().rsplit(")", 1)[1].split()
    with open("/proc/%s/io" % pid) as f:
        io = dict(l.split(": ") for l in f.read().splitlines())
    return (int(st[11]) + int(st[12])) * 1000.0 / tck, int(io["read_bytes"])
def once(drop):
    if drop:
        subprocess.run(["sync"], check=True)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    r0, s0 = resource.getrusage(resource.RUSAGE_CHILDREN), server()
    t = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    w = time.monotonic() - t
    r1, s1 = resource.getrusage(resource.RUSAGE_CHILDREN), server()
    cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
    return w * 1000, cpu * 1000, (r1.ru_inblock - r0.ru_inblock) / 2, s1[0] - s0[0], (s1[1] - s0[1]) / 1024
def med(xs):
    xs = sorted(xs)
    return xs[(len(xs) - 1) // 2]
once(False)
w = [once(False) for _ in range(warm)]
c = [once(True) for _ in range(cold)]
out = "%.1f %.1f %.1f %.1f %.0f" % (med(x[0] for x in w), med(x[1] for x in w),
      med(x[0] for x in c), med(x[1] for x in c), med(x[2] for x in c))
if pid:
    out += " %.1f %.1f %.0f" % (med(x[3] for x in w), med(x[3] for x in c), med(x[4] for x in c))
print(out)
PY
}
