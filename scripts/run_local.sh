#!/usr/bin/env bash
# scripts/run_local.sh [IFACE] — what `make run` runs (after `make build`).
#
# Captures on IFACE (default: the interface of the default route, else lo)
# with a self-contained setup under ./run:
#
#   run/config             the stenographer config (SPEC §9), Port 1234 or
#                          the next free one, Host 127.0.0.1
#   run/certs/             certificates from stenokeys.sh
#   run/thread0/packets/   packet files, owned by the stenographer user
#   run/thread0/index/     index files
#
# then runs build/bin/stenographer in the foreground (Ctrl-C stops it and
# stenotype cleanly). stenotype drops privileges to the stenographer user,
# created here when missing. A second run keeps the config and certificates
# (a new config only when IFACE changed or the port is taken) and the data.
set -euo pipefail

prog=${0##*/}
die() { echo "$prog: $*" >&2; exit 1; }
say() { echo "$prog: $*"; }

cd "$(dirname "$0")/.."
repo=$PWD
run=$repo/run
config=$run/config
certs=$run/certs
user=stenographer group=stenographer

[ "$(id -u)" -eq 0 ] || die "run as root: capture needs CAP_NET_RAW (sudo make run)"
for b in stenographer stenotype; do
  [ -x "build/bin/$b" ] || die "build/bin/$b missing: run make build (make run does)"
done
for t in jq openssl ip ss; do
  command -v "$t" >/dev/null || die "$t not found: run make deps"
done

iface=${1:-}
if [ -z "$iface" ]; then
  iface=$(ip -o route show default 2>/dev/null |
    awk '{for (i = 1; i < NF; i++) if ($i == "dev") {print $(i + 1); exit}}')
  iface=${iface:-lo}
fi
ip link show dev "$iface" >/dev/null 2>&1 ||
  die "no interface $iface (choose one of: $(ip -o link show | awk -F': ' '{printf "%s ", $2}'))"

# The user stenotype runs as, as install/install.sh creates it.
if ! getent group "$group" >/dev/null; then
  groupadd --system "$group"
  say "created group $group"
fi
if ! id -u "$user" >/dev/null 2>&1; then
  useradd --system --gid "$group" --home-dir /var/lib/stenographer --no-create-home \
    --shell /usr/sbin/nologin --comment "stenographer packet capture" "$user"
  say "created user $user"
fi

install -d -m 0755 "$run"
install -d -m 0755 "$run/thread0"
for d in packets index; do
  install -d -m 0750 -o "$user" -g "$group" "$run/thread0/$d"
  chown "$user:$group" "$run/thread0/$d" # also when it existed (e.g. made by an older run)
done
# stenotype writes as stenographer: every parent of the checkout must be
# searchable by it. If not, keep stenotype as root rather than fail.
drop=("--uid=$user" "--gid=$group")
if ! setpriv --reuid="$user" --regid="$group" --clear-groups test -w "$run/thread0/packets" 2>/dev/null; then
  say "warning: user $user cannot reach $run/thread0 (a parent directory is not searchable);"
  say "         stenotype will keep running as root"
  drop=(--uid=0 --gid=0)
fi

# One daemon per ./run: a second would share the data directories.
for pid in $(pgrep -x stenographer 2>/dev/null || true); do
  if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--config $config "; then
    die "stenographer is already running with $config (pid $pid); stop it first"
  fi
done

port_free() { [ -z "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }

keep=0
if [ -r "$config" ]; then
  old_iface=$(jq -r '.Interface // ""' "$config" 2>/dev/null || true)
  old_port=$(jq -r '.Port // ""' "$config" 2>/dev/null || true)
  if [ "$old_iface" != "$iface" ]; then
    say "interface changed ($old_iface -> $iface): writing a new $config"
  elif ! [[ $old_port =~ ^[0-9]+$ ]] || ! port_free "$old_port"; then
    say "port ${old_port:-?} is taken (another stenographer running?): writing a new $config"
  else
    keep=1
  fi
fi
if [ "$keep" -eq 1 ]; then
  say "keeping $config (Interface $iface, Port $old_port)"
else
  port=1234
  while ! port_free "$port"; do
    port=$((port + 1))
    [ "$port" -lt 1300 ] || die "no free port in 1234..1299"
  done
  flags=("${drop[@]}" --blocks=256 --fileage_sec=30 --stats_sec=30)
  jq -n --arg dir "$run/thread0" --arg stenotype "$repo/build/bin/stenotype" --arg iface "$iface" \
    --argjson port "$port" --arg certs "$certs" --arg flags "$(printf '%s\n' "${flags[@]}")" '{
      Threads: [{PacketsDirectory: ($dir + "/packets"), IndexDirectory: ($dir + "/index"),
                 DiskFreePercentage: 10, MaxDirectoryFiles: 30000}],
      StenotypePath: $stenotype, Interface: $iface, Port: $port, Host: "127.0.0.1",
      Flags: ($flags | rtrimstr("\n") | split("\n")), CertPath: $certs
    }' >"$config.tmp"
  mv -f "$config.tmp" "$config"
  say "wrote $config (Interface $iface, Port $port)"
fi

STENOGRAPHER_CONFIG=$config scripts/stenokeys.sh "$user" "$group" | grep -v 'kept existing' || true

cat <<EOF

  stenographer is starting on $iface; Ctrl-C stops it. Files become
  queryable once stenotype rotates them (every 30 s) and stenographer picks
  them up (every 15 s). In another shell, as root:

    STENOGRAPHER_CONFIG=$config scripts/stenoread 'port 53' -n
    STENOGRAPHER_CONFIG=$config scripts/stenoread 'after 5m ago' -w /tmp/last5m.pcap
    STENOGRAPHER_CONFIG=$config scripts/stenocurl /debug/stats
    STENOGRAPHER_CONFIG=$config scripts/stenocurl /metrics | grep ^stenographer_

EOF
exec build/bin/stenographer --config "$config"
