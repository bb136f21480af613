#!/usr/bin/env bash
# File-count benchmark (called by `make bench` after query.sh; issue 11
# part 3, the measurement before any change): the same packets stored as
# about 100 files and as more than 20,000, and the same queries over both,
# so that what a query costs per index file it opens shows apart from what
# it costs per packet it returns.
#
# One capture is made from the corpus (tests/bench/mkbig, copies shifted in
# address, stamped at a constant BYTE_RATE so that it spans many hours) and
# imported twice with small blocks: with --fileage_sec=1 every block starts
# a file of its own (stenotype rotates on the packets' own time, and a block
# of the smallest frames still spans more than a second at BYTE_RATE), and
# with --fileage_sec set to a hundredth of the span. Each query runs warm
# (median of WARM runs after a warm-up) and cold (page cache dropped before
# each of COLD runs). The cold runs drop the whole machine's page cache.
#
# Then filecount_daemon.sh asks the same queries of the real stenographer
# over HTTPS, on both stores, with and without summaries.
#
# BENCH_FILECOUNT_DIR keeps the work directory afterwards; with BENCH_REUSE=1
# as well, stores already built there are reused.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="${BENCH_BIN:-$ROOT/build/bin}"
SHARED="${STENO_SHARED:-$(dirname "$ROOT")/shared}"
WORK="${BENCH_FILECOUNT_DIR:-/var/tmp/steno-filecount-$$}"
WARM="${BENCH_WARM_RUNS:-5}"
COLD="${BENCH_COLD_RUNS:-3}"
MIN_BYTES="${BENCH_FILECOUNT_BYTES:-250000000}"
BYTE_RATE=6000 # packet bytes per second of packet time
BLOCK_KB=16    # 20,000 blocks of the default 1 MiB would be 20 GB
MANY_MIN=20000
# A host of mercury-capture2.pcap seen in 3 packets of the corpus; mkbig's
# address shift keeps it to the first copy.
RARE_HOST=137.99.56.10
QUERIES=("host $RARE_HOST" "port 443" "net 192.168.0.0/16 and port 53")
export PATH=/usr/local/go/bin:$PATH
# shellcheck source=SCRIPTDIR/lib.sh
source "$ROOT/tests/bench/lib.sh"
[[ -d "$SHARED/pcaps" ]] || { echo "filecount bench: corpus not found at $SHARED/pcaps" >&2; exit 1; }
[[ $(id -u) == 0 ]] || { echo "filecount bench: must run as root (drops the page cache)" >&2; exit 1; }
mkdir -p "$WORK"
[[ -n "${BENCH_FILECOUNT_DIR:-}" ]] || trap 'rm -rf "$WORK"' EXIT

echo "== file-count benchmark =="
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
if [[ "${BENCH_REUSE:-0}" == 1 && -f "$WORK/few/.complete" && -f "$WORK/many/.complete" ]]; then
  echo "reusing the stores in $WORK (BENCH_REUSE=1)"
else
  (cd "$ROOT" && go run ./tests/bench/mkbig -o "$WORK/big.pcap" -min_bytes "$MIN_BYTES" -byte_rate "$BYTE_RATE" "$SHARED"/pcaps/*.pcap) | tee "$WORK/mkbig.log"
  span=$(sed -n 's/.* over \([0-9]*\) s$/\1/p' "$WORK/mkbig.log")
  [[ -n "$span" ]] || { echo "filecount bench: no span in mkbig's output" >&2; exit 1; }
  for s in few many; do
    age=1
    [[ $s == few ]] && age=$(( (span + 99) / 100 ))
    rm -rf "${WORK:?}/$s" && mkdir -p "$WORK/$s"
    t0=$(date +%s.%N)
    "$BIN/stenotype" --pcap_in="$WORK/big.pcap" --dir="$WORK/$s" --fileage_sec="$age" --blocksize_kb="$BLOCK_KB" --uid=0 --gid=0 -q
    printf 'imported into %s: --fileage_sec=%s, %.1f s\n' "$s" "$age" "$(echo "$(date +%s.%N)-$t0" | bc -l)"
    touch "$WORK/$s/.complete"
  done
  rm -f "$WORK/big.pcap"
fi

declare -A FILES
for s in few many; do
  FILES[$s]=$(find "$WORK/$s/PKT0" -maxdepth 1 -type f | wc -l)
  printf 'store %-4s: %6d files, %6.1f MB packet files, %6.1f MB index files\n' "$s" "${FILES[$s]}" \
    "$(echo "$(du -sb "$WORK/$s/PKT0" | cut -f1)/1000000" | bc -l)" "$(echo "$(du -sb --exclude=.summary "$WORK/$s/IDX0" | cut -f1)/1000000" | bc -l)"
done
# Summary tables (issue 11 part 3), built as the daemon builds them in the
# background; the "many" rows read without them (--no_summaries), the
# "sum" rows with them, each table checked against a stat of each index
# (as the daemon does; stenoquery's default), and the "ino" rows with them
# checked by inode number alone (--stat_files=false: no stat per file).
rm -rf "$WORK/many/IDX0/.summary"
t0=$(date +%s.%N)
/usr/bin/time -f '%U %S %M' -o "$WORK/sum.time" "$BIN/stenoquery" --dir "$WORK/many" --blocksize_kb="$BLOCK_KB" --summarize 2>"$WORK/sum.log"
read -r su ss sm <"$WORK/sum.time"
printf 'summaries of many: %s tables (%.1f MB) built in %.1f s (CPU %s user + %s system s, max RSS %d MB)\n' \
  "$(find "$WORK/many/IDX0/.summary" -name '*.sum' | wc -l)" "$(echo "$(du -sb "$WORK/many/IDX0/.summary" | cut -f1)/1000000" | bc -l)" \
  "$(echo "$(date +%s.%N)-$t0" | bc -l)" "$su" "$ss" "$(( sm / 1024 ))"
if (( FILES[many] < MANY_MIN )); then
  echo "filecount bench: FAIL: the many-file store has ${FILES[many]} files, fewer than $MANY_MIN" >&2
  exit 1
fi
dev=$(df --output=source "$WORK" | tail -1)
blk=$(basename "$(readlink -f "$dev")")
rota=$(cat "/sys/class/block/$blk/queue/rotational" 2>/dev/null || cat "/sys/class/block/$blk/../queue/rotational" 2>/dev/null || echo '?')
echo "kernel $(uname -r); $(df --output=fstype "$WORK" | tail -1 | tr -d ' ') on $dev (rotational=$rota); $(nproc) CPUs; --blocksize_kb=$BLOCK_KB; load average before $load_before"
echo "warm: median of $WARM runs after one warm-up; cold: median of $COLD runs, page cache dropped before each"

printf '%-32s %-4s %6s %8s %7s %9s %7s %8s | %8s %8s | %8s %8s %8s\n' query store files packets opened idx_KB sum_KB query_ms warm_ms cpu_ms cold_ms cpu_ms disk_KB
# Process start alone, for the share of the cold figures that is loading
# stenoquery itself.
read -r wm wc cm cc ck _ < <(measure "$BIN/stenoquery" --version)
printf '%-32s %-4s %6s %8s %7s %9s %7s %8s | %8s %8s | %8s %8s %8s\n' "(stenoquery --version)" - - - - - - - "$wm" "$wc" "$cm" "$cc" "$ck"
fail=0
for q in "${QUERIES[@]}"; do
  declare -A N=()
  for s in few many sum ino; do
    d=$s opt=(--no_summaries)
    [[ $s == sum ]] && d=many opt=()
    [[ $s == ino ]] && d=many opt=(--stat_files=false)
    # query_ms: the query alone, after the listing of the files (which
    # the daemon does in the background, not per query); warm.
    "$BIN/stenoquery" --dir "$WORK/$d" --blocksize_kb="$BLOCK_KB" "${opt[@]}" --stats -w /dev/null "$q" 2>"$WORK/stats"
    st=$(grep '^stats:' "$WORK/stats")
    field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$st"; }
    N[$s]=$(field packets)
    read -r wm wc cm cc ck _ < <(measure "$BIN/stenoquery" --dir "$WORK/$d" --blocksize_kb="$BLOCK_KB" "${opt[@]}" -w /dev/null "$q")
    printf '%-32s %-4s %6d %8d %7d %9d %7d %8.1f | %8s %8s | %8s %8s %8s\n' "$q" "$s" "${FILES[$d]}" "${N[$s]}" \
      "$(field files_opened)" "$(( $(field index_bytes_read) / 1024 ))" "$(( $(field summary_bytes_read) / 1024 ))" \
      "$(echo "$(field query_us)/1000" | bc -l)" "$wm" "$wc" "$cm" "$cc" "$ck"
  done
  if ! [[ "${N[few]}" == "${N[many]}" && "${N[few]}" == "${N[sum]}" && "${N[few]}" == "${N[ino]}" ]]; then
    echo "filecount bench: FAIL: '$q' returned ${N[few]} packets from the few-file store, ${N[many]} from the many-file one, ${N[sum]} / ${N[ino]} with summaries" >&2
    fail=1
  fi
done
echo "(opened: index files the query opened; idx_KB: index bytes its lookups read; sum_KB: summary bytes it read; query_ms: the query after the file listing, one warm run; disk_KB: what the cold run read from disk, packets included)"
echo "load average after $(cut -d' ' -f1-3 /proc/loadavg)"
# The same queries asked of the daemon, which lists the files in the
# background (needs the tables built above).
"$ROOT/tests/bench/filecount_daemon.sh" "$WORK" || fail=1
exit "$fail"
