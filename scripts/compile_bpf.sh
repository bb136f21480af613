#!/usr/bin/env bash
# compile_bpf.sh: turn a tcpdump filter expression into the hex string that
# `stenotype --filter=` takes (16 hex digits per BPF instruction: code,
# jt, jf, k). stenotype also accepts the expression itself with
# --filter_expr; this script is for configs that carry the compiled form.
#
#   stenotype --filter="$(scripts/compile_bpf.sh 'not port 22')" ...
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 'tcpdump expression' [interface]" >&2
  exit 2
fi
expr=$1
iface=${2:-}
args=(-ddd)
# Compile for Ethernet; with an interface, for that interface's link type.
if [ -n "$iface" ]; then args+=(-i "$iface"); else args+=(-y EN10MB -i lo); fi
tcpdump "${args[@]}" "$expr" 2>/dev/null | tail -n +2 | while read -r code jt jf k; do
  printf '%04x%02x%02x%08x' "$code" "$jt" "$jf" "$k"
done
echo
