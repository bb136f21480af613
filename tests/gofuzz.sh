#!/usr/bin/env bash
# Runs one Go fuzz target for a bounded time: tests/gofuzz.sh SECONDS TARGET PACKAGE.
# Fails on any failing input. Go 1.26's fuzz coordinator can also fail a
# clean run at the -fuzztime deadline with a bare "context deadline
# exceeded" and no input (golang/go#75804, fixed in Go 1.27): a run that
# ends so, having written no failing input under testdata/fuzz, is retried
# once and reported, not taken for a crash.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=$1 target=$2 pkg=$3
corpus="$pkg/testdata/fuzz/$target"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for attempt in 1 2; do
  before=$(find "$corpus" -type f 2>/dev/null | sort || true)
  if go test -run '^$' -fuzz "^$target\$" -fuzztime "${secs}s" "$pkg" >"$log" 2>&1; then
    tail -2 "$log"; exit 0
  fi
  after=$(find "$corpus" -type f 2>/dev/null | sort || true)
  if [ "$before" != "$after" ] || ! grep -q '^    context deadline exceeded$' "$log"; then
    cat "$log"; echo "gofuzz: $target FAILED (failing input under $corpus)"; exit 1
  fi
  echo "gofuzz: $target: Go's fuzz coordinator stopped with 'context deadline exceeded' and no failing input (golang/go#75804); attempt $attempt"
done
cat "$log"; echo "gofuzz: $target FAILED twice at the deadline"; exit 1
