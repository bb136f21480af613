#!/usr/bin/env bash
# scripts/run_fleet.sh — what `make run-fleet` runs: stenofleet in front of
# the sensor `make run` started (scripts/run_local.sh), in the foreground.
#
# It reads the sensor's run/config (Port, Host, CertPath) and keeps its own
# files under run/fleet/:
#
#   run/fleet/stenofleet.yaml   the config, written at every start (the
#                               sensor's port may have changed)
#   run/fleet/certs/            the analysts' CA, stenofleet's server
#                               certificate and an analyst's client
#                               certificate (stenokeys.sh), kept
#   run/fleet/passwords         user "analyst" with a generated password,
#                               printed once when made, kept; delete the
#                               file for a new password
#   run/fleet/spool/            the job spool
#
# Ctrl-C stops it. Environment: STENO_REPO (the checkout: build/bin and
# scripts; default this script's), STENO_RUN (default $STENO_REPO/run),
# STENOFLEET_PORT (default 9443, or the next free one).
set -euo pipefail

prog=${0##*/}
die() { echo "$prog: $*" >&2; exit 1; }
say() { echo "$prog: $*"; }

repo=${STENO_REPO:-$(cd "$(dirname "$0")/.." && pwd)}
run=${STENO_RUN:-$repo/run}
sensor_config=$run/config
fleet=$run/fleet
bin=$repo/build/bin/stenofleet

[ "$(id -u)" -eq 0 ] || die "run as root, as make run (the sensor's client key is root:stenographer)"
[ -x "$bin" ] || die "$bin missing: run make build (make run-fleet does)"
[ -r "$sensor_config" ] || die "no sensor config at $sensor_config: start the sensor first with make run (in another shell)"
for t in jq openssl ss; do
  command -v "$t" >/dev/null || die "$t not found: run make deps"
done

sensor_port=$(jq -er '.Port' "$sensor_config") || die "$sensor_config: no Port"
sensor_host=$(jq -er '.Host // "127.0.0.1"' "$sensor_config") || die "$sensor_config: bad Host"
case $sensor_host in 0.0.0.0 | :: | "") sensor_host=127.0.0.1 ;; esac
sensor_certs=$(jq -er '.CertPath // "/etc/stenographer/certs"' "$sensor_config") || die "$sensor_config: bad CertPath"
for f in ca_cert.pem client_cert.pem client_key.pem; do
  [ -r "$sensor_certs/$f" ] || die "cannot read $sensor_certs/$f: start the sensor once with make run (it makes them)"
done

port_free() { [ -z "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }
if port_free "$sensor_port"; then
  say "warning: nothing listens on port $sensor_port yet: queries fail until the sensor runs (make run)"
fi
port=${STENOFLEET_PORT:-}
if [ -z "$port" ]; then
  port=9443
  while ! port_free "$port"; do
    port=$((port + 1))
    [ "$port" -lt 9500 ] || die "no free port in 9443..9499 (set STENOFLEET_PORT)"
  done
fi
[[ $port =~ ^[0-9]+$ ]] || die "STENOFLEET_PORT=$port is not a port number"

install -d -m 0755 "$fleet"
install -d -m 0750 "$fleet/spool"
# stenofleet runs as root here, so root holds its server key.
STENOGRAPHER_CONFIG=$sensor_config "$repo/scripts/stenokeys.sh" root root "$fleet/certs" |
  grep -v 'kept existing' || true

passwords=$fleet/passwords
password=
if [ -s "$passwords" ]; then
  say "keeping $passwords (user analyst, the password printed when it was made; delete the file for a new one)"
else
  password=$(openssl rand -base64 18 | tr -d '/+=\n')
  line=$(printf '%s\n' "$password" | "$bin" --hash-password --user analyst) || die "stenofleet --hash-password failed"
  (umask 077 && printf '%s\n' "$line" >"$passwords.tmp")
  mv -f "$passwords.tmp" "$passwords"
fi

config=$fleet/stenofleet.yaml
cat >"$config.tmp" <<YAML
# Written by scripts/run_fleet.sh at every start: edits are lost.
# The sensor make run started ($sensor_config).
stenographer_instances:
  - { host: $sensor_host, sensor: local, port: $sensor_port, key: $sensor_certs/client_key.pem, cert: $sensor_certs/client_cert.pem, ca: $sensor_certs/ca_cert.pem, server_name: 127.0.0.1 }
LISTEN: 127.0.0.1:$port
TLS_CERT: $fleet/certs/server_cert.pem
TLS_KEY: $fleet/certs/server_key.pem
CLIENT_CA: $fleet/certs/ca_cert.pem
PASSWORD_FILE: $passwords
SPOOL_DIR: $fleet/spool
EXPIRE_TIME: 24h
YAML
mv -f "$config.tmp" "$config"
"$bin" --check-config --config "$config" >/dev/null || die "$config: not accepted (above)"

c=$fleet/certs
cat <<MSG

  stenofleet is starting in front of the sensor on $sensor_host:$sensor_port; Ctrl-C stops it.

    page:   https://127.0.0.1:$port/   (the CA to trust: $c/ca_cert.pem)
MSG
if [ -n "$password" ]; then
  cat <<MSG
    login:  user analyst, password $password
            (shown once; stored hashed in $passwords)
MSG
else
  echo "    login:  user analyst (the password printed when $passwords was made)"
fi
cat <<MSG
    query:  curl -sS --cacert $c/ca_cert.pem --cert $c/client_cert.pem --key $c/client_key.pem \\
              --data-binary 'after 5m ago and port 53' https://127.0.0.1:$port/query | tcpdump -nr -
    Docket: the same curl options with https://127.0.0.1:$port/pcap/port/53/after/5m/

MSG
exec "$bin" --config "$config"
