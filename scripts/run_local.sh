#!/usr/bin/env bash
# run_local.sh [IFACE]: capture on IFACE (default: the interface of the
# default route, else lo) into ./run/data in the foreground, as `make run`
# does. Until the stenographer daemon lands this runs stenotype alone;
# query what it wrote with stenoquery (printed below).
set -euo pipefail
cd "$(dirname "$0")/.."
iface=${1:-}
if [ -z "$iface" ]; then
  iface=$(ip -o route show default 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "dev") {print $(i + 1); exit}}')
  iface=${iface:-lo}
fi
mkdir -p run/data
echo "capturing on $iface into $PWD/run/data (Ctrl-C to stop; files appear every minute)"
echo "try:  build/bin/stenoquery --dir $PWD/run/data 'port 53' | tcpdump -nr -"
exec build/bin/stenotype --iface="$iface" --dir="$PWD/run/data" --uid=0 --gid=0 --stats_sec=30 --fileage_sec=60 --blocks=256
