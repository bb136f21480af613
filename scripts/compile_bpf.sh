#!/usr/bin/env bash
# compile_bpf.sh: turn a tcpdump filter expression into the hex string that
# `stenotype --filter=` takes (16 hex digits per BPF instruction: code,
# jt, jf, k). stenotype also accepts the expression itself with
# --filter_expr; this script is for configs that carry the compiled form.
#
#   compile_bpf.sh IFACE FILTER...     the reference's order: eth0 udp port 53
#   compile_bpf.sh 'FILTER' [IFACE]    the older order, still taken when the
#                                      last word names an interface
#   compile_bpf.sh 'FILTER'            compiled for Ethernet
#
#   stenotype --filter="$(scripts/compile_bpf.sh eth0 not port 22)" ...
set -euo pipefail
usage() {
  echo "usage: $0 IFACE FILTER...  |  $0 'FILTER' [IFACE]" >&2
  exit 2
}
is_iface() { [ -n "$1" ] && [ -e "/sys/class/net/$1" ]; }
[ $# -ge 1 ] || usage
if [ $# -eq 1 ]; then
  iface='' expr=$1
elif [ $# -eq 2 ] && ! is_iface "$1" && is_iface "$2"; then
  iface=$2 expr=$1
else
  # The reference's order. The first word is the interface even when it
  # does not exist here: tcpdump then says so, rather than compiling the
  # interface name as part of the filter.
  iface=$1
  shift
  expr="$*"
fi
[ -n "$expr" ] || usage
args=(-ddd)
# For the interface's link type; without one, for Ethernet.
if [ -n "$iface" ]; then args+=(-i "$iface"); else args+=(-y EN10MB -i lo); fi
errf=$(mktemp)
trap 'rm -f "$errf"' EXIT
if ! prog=$(tcpdump "${args[@]}" "$expr" 2>"$errf"); then
  echo "$0: tcpdump ${args[*]} '$expr' failed:" >&2
  cat "$errf" >&2
  exit 1
fi
# The first line is the instruction count.
tail -n +2 <<<"$prog" | while read -r code jt jf k; do
  printf '%04x%02x%02x%08x' "$code" "$jt" "$jf" "$k"
done
echo
