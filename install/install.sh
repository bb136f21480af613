#!/usr/bin/env bash
# install/install.sh [--start] [--no-deps] [--no-build] [--prefix DIR]
# install/install.sh --uninstall [--prefix DIR]
#
# Installs stenographer on Debian or Ubuntu, as root, from this checkout:
#
#   1. Debian packages the build needs (make deps) and the build (make build)
#      unless --no-deps / --no-build;
#   2. the system user and group stenographer;
#   3. binaries to PREFIX/bin (PREFIX defaults to /usr, which is what the
#      default config's StenotypePath says): stenographer, stenotype,
#      stenoquery, stenodump, and stenogrpc when built; stenotype gets
#      cap_net_raw,cap_net_admin,cap_ipc_lock so it captures without root;
#   4. the scripts stenoread, stenocurl, stenokeys.sh to PREFIX/bin;
#   5. /etc/stenographer/config from configs/steno.conf, only when there is
#      none (an existing config is never touched);
#   6. certificates in the config's CertPath with
#      `stenokeys.sh stenographer stenographer` (existing ones are kept);
#   7. the config's thread directories, owned by stenographer (mode 0750);
#   8. the systemd units stenographer.service and stenographer@.service, and
#      /etc/security/limits.d/stenographer.conf; `systemctl daemon-reload`
#      when systemd is running;
#   9. stenofleet, the multi-sensor front end, when built: the system user
#      stenofleet (in group stenographer, to read the sensor's client key),
#      /etc/stenofleet/config.yaml from configs/stenofleet.yaml (pointed at
#      this sensor's Port and CertPath) only when there is none, certificates
#      for analysts in /etc/stenofleet/certs (stenokeys.sh stenofleet
#      stenofleet), the spool /var/spool/stenofleet owned by stenofleet
#      (mode 0750) and the unit stenofleet.service (not started);
#  10. with --start: `systemctl enable --now stenographer`.
#
# Running it again updates binaries, scripts and units and keeps the config,
# certificates and data.
#
# --uninstall stops and disables the units (when systemd runs) and removes
# what steps 3, 4, 8 and 9 installed (programs, units, limits); it keeps the
# configs, certificates, data, spool and users, and says how to remove them.
#
# DESTDIR=/some/root installs every file under that root instead (for
# packaging or a trial run); users, capabilities and ownership are still set
# (the user is created on this machine), systemctl is not called.
set -euo pipefail

prog=${0##*/}
die() { echo "$prog: $*" >&2; exit 1; }
say() { echo "$prog: $*"; }

# ensure_user NAME HOME COMMENT: a system user NAME with a group NAME.
ensure_user() {
  if ! getent group "$1" >/dev/null; then
    say "creating group $1"
    groupadd --system "$1"
  fi
  if ! id -u "$1" >/dev/null 2>&1; then
    say "creating user $1"
    useradd --system --gid "$1" --home-dir "$2" --no-create-home \
      --shell /usr/sbin/nologin --comment "$3" "$1"
  fi
}

# publish_new TMP FILE NAME NOTE: the new file TMP becomes FILE (NAME in
# messages) unless FILE exists; ln fails rather than replace it, so an
# operator's file is never overwritten, even by a racing run.
publish_new() {
  if ln "$1" "$2" 2>/dev/null; then
    say "created $3 ($4)"
  else
    say "kept existing $3"
  fi
  rm -f "$1"
}

start=0 deps=1 build=1 uninstall=0
prefix=${PREFIX:-/usr}
while [ $# -gt 0 ]; do
  case $1 in
    --start) start=1 ;;
    --no-deps) deps=0 ;;
    --no-build) build=0 ;;
    --uninstall) uninstall=1 ;;
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix=$2; shift ;;
    --prefix=*) prefix=${1#*=} ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (try --help)" ;;
  esac
  shift
done
destdir=${DESTDIR:-}
destdir=${destdir%/}
[ "$(id -u)" -eq 0 ] || die "run as root (it creates a user, sets capabilities and writes /etc)"
[[ $prefix == /* ]] || die "--prefix must be absolute: $prefix"
if [ -n "$destdir" ] && [ "$start" -eq 1 ]; then
  die "--start makes no sense with DESTDIR"
fi

src=$(cd "$(dirname "$0")/.." && pwd)
bindir=$prefix/bin
etc=/etc/stenographer
config=$etc/config
user=stenographer group=stenographer
binaries=(stenographer stenotype stenoquery stenodump stenogrpc stenofleet)
scripts=(stenoread stenocurl stenokeys.sh)
units=(stenographer.service stenographer@.service stenofleet.service)
fleet_etc=/etc/stenofleet
fleet_config=$fleet_etc/config.yaml
fleet_spool=/var/spool/stenofleet
fleet_user=stenofleet
systemd_up=0
[ -z "$destdir" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null && systemd_up=1

if [ "$uninstall" -eq 1 ]; then
  if [ "$systemd_up" -eq 1 ]; then
    systemctl disable --now stenographer.service 'stenographer@*.service' stenofleet.service 2>/dev/null || true
  fi
  for f in "${binaries[@]/#/$bindir/}" "${scripts[@]/#/$bindir/}" "${units[@]/#//etc/systemd/system/}" \
    /etc/security/limits.d/stenographer.conf "$prefix/share/doc/stenographer/README.md"; do
    if [ -e "$destdir$f" ]; then
      rm -f -- "$destdir$f"
      say "removed $f"
    fi
  done
  rmdir "$destdir$prefix/share/doc/stenographer" 2>/dev/null || true
  [ "$systemd_up" -eq 1 ] && systemctl daemon-reload
  say "kept $etc (config, certificates), the data directories and the user $user; to remove them:"
  say "  rm -r $etc; rm -r <the Threads directories of the config>; userdel $user"
  if [ -e "$destdir$fleet_etc" ] || [ -e "$destdir$fleet_spool" ]; then
    say "kept $fleet_etc (config, certificates, passwords), $fleet_spool and the user $fleet_user; to remove them:"
    say "  rm -r $fleet_etc $fleet_spool; userdel $fleet_user"
  fi
  exit 0
fi

# 1. dependencies and build
if [ "$deps" -eq 1 ]; then
  command -v apt-get >/dev/null || die "apt-get not found: install the packages listed in DEB_PACKAGES of $src/Makefile yourself, then use --no-deps"
  command -v make >/dev/null || { say "installing make"; apt-get update -qq && apt-get install -y -qq make >/dev/null; }
  say "installing dependencies (make deps)"
  make -s -C "$src" deps
fi
if [ "$build" -eq 1 ]; then
  say "building (make build)"
  make -s -C "$src" build >/dev/null
fi
for b in stenographer stenotype; do
  [ -x "$src/build/bin/$b" ] || die "$src/build/bin/$b not built (run make build, or drop --no-build)"
done
for t in setcap jq openssl; do
  command -v "$t" >/dev/null || die "$t not found (make deps installs it)"
done

# 2. user and group
ensure_user "$user" /var/lib/stenographer "stenographer packet capture"

# 3./4. binaries and scripts. install(1) replaces a file by renaming a new
# one over it, so a running binary is not disturbed.
install -d -m 0755 "$destdir$bindir"
for b in "${binaries[@]}"; do
  [ -x "$src/build/bin/$b" ] || continue
  install -m 0755 "$src/build/bin/$b" "$destdir$bindir/$b"
  say "installed $bindir/$b"
done
# Only the group may run the capture binary: it holds capture capabilities.
chgrp "$group" "$destdir$bindir/stenotype"
chmod 0750 "$destdir$bindir/stenotype"
setcap cap_net_raw,cap_net_admin,cap_ipc_lock=ep "$destdir$bindir/stenotype" ||
  die "setcap failed on $destdir$bindir/stenotype (file system without extended attributes?)"
say "set $(getcap "$destdir$bindir/stenotype" | sed 's/^[^ ]* //') on $bindir/stenotype"
for s in "${scripts[@]}"; do
  install -m 0755 "$src/scripts/$s" "$destdir$bindir/$s"
  say "installed $bindir/$s"
done

# 5. config, never overwritten
install -d -m 0755 "$destdir$etc"
if [ -e "$destdir$config" ]; then
  say "kept existing $config"
else
  tmp=$(mktemp "$destdir$etc/.config.XXXXXX")
  jq --arg p "$bindir/stenotype" '.StenotypePath = $p' "$src/configs/steno.conf" >"$tmp"
  chmod 0644 "$tmp"
  publish_new "$tmp" "$destdir$config" "$config" "edit Interface and the thread directories, then restart"
fi

# 6. certificates in CertPath
certpath=$(jq -er '.CertPath // "/etc/stenographer/certs"' "$destdir$config") ||
  die "$destdir$config: cannot read CertPath (not valid JSON?)"
STENOGRAPHER_CONFIG=$destdir$config "$src/scripts/stenokeys.sh" "$user" "$group" "$destdir$certpath" |
  sed "s|^|$prog: |; s|: stenokeys.sh: |: |"

# 7. thread directories
jq -r '.Threads[] | .PacketsDirectory, .IndexDirectory' "$destdir$config" | while read -r d; do
  [ -n "$d" ] || continue
  if [ -d "$destdir$d" ]; then
    say "kept existing $d"
  else
    install -d -m 0750 -o "$user" -g "$group" "$destdir$d"
    say "created $d (owner $user:$group)"
  fi
done

# 9. stenofleet, when built: before the units, whose stenofleet.service
# names its user and spool.
fleet=0
[ -x "$src/build/bin/stenofleet" ] && fleet=1
if [ "$fleet" -eq 1 ]; then
  ensure_user "$fleet_user" "$fleet_spool" "stenofleet multi-sensor front end"
  # The sensor's client key is root:stenographer 0640.
  if ! id -nG "$fleet_user" | tr ' ' '\n' | grep -qx "$group"; then
    usermod -aG "$group" "$fleet_user"
    say "added $fleet_user to group $group (reads $certpath/client_key.pem)"
  fi
  install -d -m 0755 "$destdir$fleet_etc"
  if [ -e "$destdir$fleet_config" ]; then
    say "kept existing $fleet_config"
  else
    port=$(jq -er '.Port // 1234' "$destdir$config") || die "$destdir$config: cannot read Port"
    tmp=$(mktemp "$destdir$fleet_etc/.config.XXXXXX")
    sed "s|/etc/stenographer/certs/|${certpath%/}/|g; s|port: 1234,|port: $port,|" "$src/configs/stenofleet.yaml" >"$tmp"
    chgrp "$fleet_user" "$tmp"
    chmod 0640 "$tmp"
    publish_new "$tmp" "$destdir$fleet_config" "$fleet_config" \
      "one sensor: this one, port $port; add yours, then check it with stenofleet --check-config"
  fi
  STENOGRAPHER_CONFIG=$destdir$config "$src/scripts/stenokeys.sh" "$fleet_user" "$fleet_user" "$destdir$fleet_etc/certs" |
    sed "s|^|$prog: |; s|: stenokeys.sh: |: |"
  if [ -d "$destdir$fleet_spool" ]; then
    say "kept existing $fleet_spool"
  else
    install -d -m 0750 -o "$fleet_user" -g "$fleet_user" "$destdir$fleet_spool"
    say "created $fleet_spool (owner $fleet_user:$fleet_user)"
  fi
else
  say "build/bin/stenofleet not built: skipped stenofleet"
fi

# 8. units and limits; the units name PREFIX/bin
install -d -m 0755 "$destdir/etc/systemd/system" "$destdir/etc/security/limits.d"
for u in "${units[@]}"; do
  [ "$u" != stenofleet.service ] || [ "$fleet" -eq 1 ] || continue
  sed "s|/usr/bin/steno|$bindir/steno|g" "$src/configs/$u" >"$destdir/etc/systemd/system/.$u.tmp"
  chmod 0644 "$destdir/etc/systemd/system/.$u.tmp"
  mv -f "$destdir/etc/systemd/system/.$u.tmp" "$destdir/etc/systemd/system/$u"
  say "installed /etc/systemd/system/$u"
done
install -m 0644 "$src/configs/limits.conf" "$destdir/etc/security/limits.d/stenographer.conf"
say "installed /etc/security/limits.d/stenographer.conf"
install -d -m 0755 "$destdir$prefix/share/doc/stenographer"
install -m 0644 "$src/README.md" "$destdir$prefix/share/doc/stenographer/README.md"

if [ -n "$destdir" ]; then
  say "DESTDIR set: not calling systemctl"
elif [ "$systemd_up" -eq 1 ]; then
  systemctl daemon-reload
  say "systemctl daemon-reload done"
else
  say "systemd is not running here: skipped daemon-reload; start the daemon as the unit would:"
  say "  setpriv --reuid=$user --regid=$group --init-groups $bindir/stenographer --config $config"
fi

# 10. start
if [ "$start" -eq 1 ]; then
  [ "$systemd_up" -eq 1 ] || die "--start needs systemd, which is not running here"
  systemctl enable --now stenographer
  say "started: systemctl status stenographer; journalctl -u stenographer"
else
  cat <<EOF
$prog: done. Next:
  1. edit $config (Interface, thread directories; Flags such as --blocks=256 on small machines)
  2. systemctl enable --now stenographer    (or run $prog --start)
  3. usermod -aG $group ANALYST    (lets ANALYST read the client key, so query)
  4. stenoread 'port 53' -n
EOF
  if [ "$fleet" -eq 1 ]; then
    cat <<EOF
  5. stenofleet: edit $fleet_config (sensors; PASSWORD_FILE for browsers:
     stenofleet --hash-password --user NAME >>$fleet_etc/passwords), check it with
     stenofleet --check-config --config $fleet_config, then
     systemctl enable --now stenofleet    (https://127.0.0.1:9443/ by default;
     analysts' client certificate: $fleet_etc/certs/client_cert.pem)
EOF
  fi
fi
