#!/usr/bin/env bash
# Runs the parser fuzzer for a bounded time (default 60 s) from a seed
# corpus of real frames: every packet of the shared corpus when it is beside
# the checkout, else a few built-in frames. Fails on any crash.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
fuzzer=build/fuzz/parser_fuzz
seeds=build/fuzz/seeds
shared=${STENO_SHARED:-../shared}
rm -rf "$seeds" && mkdir -p "$seeds"
if [ -d "$shared/pcaps" ]; then
  python3 tests/pcap_frames.py "$seeds" "$shared"/pcaps/*.pcap
elif [ "${STENO_REQUIRE_SHARED:-0}" = 1 ]; then
  echo "fuzz_smoke: shared corpus missing (STENO_REQUIRE_SHARED=1)" >&2; exit 1
else
  echo "fuzz_smoke: shared corpus not found; using built-in seeds"
  printf '\xff\x00\x01\x02\x03\x04\x05\x00\x06\x07\x08\x09\x0a\x08\x00\x45\x00\x00\x28\x00\x00\x00\x00\x40\x06\x00\x00\x0a\x00\x00\x01\x0a\x00\x00\x02\x00\x50\x04\xd2' > "$seeds/v4tcp"
  printf '\xff\x00\x01\x02\x03\x04\x05\x00\x06\x07\x08\x09\x0a\x81\x00\x00\x64\x88\x47\x00\x01\xd1\x40\x45\x00' > "$seeds/vlan_mpls"
fi
echo "fuzz_smoke: $(ls "$seeds" | wc -l) seeds, ${secs}s"
mkdir -p build/fuzz/work
"$fuzzer" -max_total_time="$secs" -print_final_stats=1 -max_len=4096 -timeout=10 \
  -artifact_prefix=build/fuzz/ build/fuzz/work "$seeds" > build/fuzz/log 2>&1 || {
  tail -40 build/fuzz/log; echo "fuzz_smoke: FAILED (crash input in build/fuzz/)"; exit 1; }
grep -E '^(#[0-9]+.*DONE|Done|stat::number_of_executed_units)' build/fuzz/log | tail -3
echo "fuzz_smoke: no crash"
