#!/usr/bin/env bash
# stenokeys.sh USER GROUP [DIR]
#
# Creates the certificates stenographer's HTTPS API uses for mutual TLS:
#
#   ca_key.pem      ca_cert.pem       a private CA (CA:TRUE, keyCertSign)
#   server_key.pem  server_cert.pem   the daemon's (extendedKeyUsage serverAuth)
#   client_key.pem  client_cert.pem   the analysts' (extendedKeyUsage clientAuth)
#
# in DIR, which defaults to CertPath of the config at $STENOGRAPHER_CONFIG
# (default /etc/stenographer/config). The server certificate names
# 127.0.0.1, ::1, localhost, this host's name and the config's Host.
#
# Access is POSIX permissions: the server key is readable by USER only
# (USER, 0400), the client key by GROUP (root:GROUP, 0640, so adding an
# analyst to GROUP grants access), the CA key by root only (0600), the
# certificates by everyone (0644).
#
# An existing file is never overwritten or modified: run it twice and nothing
# changes; delete the files to rotate keys; copy in certificates from your own
# CA and they are kept. Keys are ECDSA P-256, certificates valid for
# $STENOKEYS_DAYS days (default 3650).
set -euo pipefail

prog=${0##*/}
die() { echo "$prog: $*" >&2; exit 1; }

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  echo "usage: $prog USER GROUP [DIR]   (DIR defaults to CertPath in \${STENOGRAPHER_CONFIG:-/etc/stenographer/config})" >&2
  exit 2
fi
user=$1 group=$2 dir=${3:-}
days=${STENOKEYS_DAYS:-3650}
config=${STENOGRAPHER_CONFIG:-/etc/stenographer/config}

command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"
id -u "$user" >/dev/null 2>&1 || die "no such user: $user"
getent group "$group" >/dev/null || die "no such group: $group"

# Host from the config goes into the server certificate; CertPath is the
# default directory.
host=
if [ -r "$config" ]; then
  command -v jq >/dev/null || die "jq not found (apt-get install jq); needed to read $config"
  host=$(jq -er '.Host // empty' "$config" 2>/dev/null) || host=
  if [ -z "$dir" ]; then
    # A missing CertPath means the daemon's default.
    dir=$(jq -er '.CertPath // "/etc/stenographer/certs"' "$config") || die "$config is not valid JSON"
  fi
elif [ -z "$dir" ]; then
  die "cannot read config $config (set STENOGRAPHER_CONFIG or give DIR as the third argument)"
fi

if [ ! -d "$dir" ]; then
  (umask 022 && mkdir -p -- "$dir") || die "cannot create $dir"
fi
cd -- "$dir"

# Files are built under a temporary name with their final owner and mode,
# then published with ln, which fails rather than replace an existing file.
tmpfiles=()
cleanup() { [ ${#tmpfiles[@]} -eq 0 ] || rm -f -- "${tmpfiles[@]}"; }
trap cleanup EXIT
newtmp() { # newtmp VAR: a new empty 0600 file, its name in VAR
  local _nt
  _nt=$(mktemp ".stenokeys.XXXXXX")
  tmpfiles+=("$_nt")
  printf -v "$1" '%s' "$_nt"
}
publish() { # publish TMP NAME
  if ln -- "$1" "$2" 2>/dev/null; then
    echo "$prog: created $dir/$2"
  else
    echo "$prog: kept existing $dir/$2"
  fi
  rm -f -- "$1"
}

# make_key NAME OWNER GROUP MODE: a new private key, unless NAME exists.
make_key() {
  local name=$1 owner=$2 grp=$3 mode=$4 t
  [ -e "$name" ] && { echo "$prog: kept existing $dir/$name"; return; }
  newtmp t
  chmod 0600 "$t"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$t" 2>/dev/null ||
    die "openssl genpkey failed for $name"
  chown "$owner:$grp" "$t" 2>/dev/null || die "cannot give $dir/$name to $owner:$grp (run as root)"
  chmod "$mode" "$t"
  publish "$t" "$name"
}

hostname=$(hostname 2>/dev/null || true)
is_ip() { [[ $1 =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ || $1 == *:* ]]; }
san_list() {
  local -a names=(IP:127.0.0.1 IP:::1 DNS:localhost)
  local h
  for h in "$hostname" "$host"; do
    h=${h#[}; h=${h%]}
    case $h in "" | 0.0.0.0 | :: | 127.0.0.1 | ::1 | localhost) continue ;; esac
    if is_ip "$h"; then names+=("IP:$h"); else names+=("DNS:$h"); fi
  done
  # de-duplicate, keep order
  printf '%s\n' "${names[@]}" | awk '!seen[$0]++' | paste -sd, -
}

# make_cert NAME KEY SUBJECT EXTENSIONS: a certificate for KEY signed by the
# CA (or self-signed for the CA itself), unless NAME exists.
make_cert() {
  local name=$1 key=$2 subject=$3 ext=$4 t extf serial
  [ -e "$name" ] && { echo "$prog: kept existing $dir/$name"; return; }
  [ -r "$key" ] || die "cannot create $dir/$name: $dir/$key is missing"
  newtmp t
  newtmp extf
  # A minimal config so that the system openssl.cnf adds nothing.
  printf '[req]\ndistinguished_name=dn\n[dn]\n[v3]\n%s\n' "$ext" >"$extf"
  serial=0x$(openssl rand -hex 16)
  if [ "$name" = ca_cert.pem ]; then
    openssl req -new -x509 -key "$key" -subj "$subject" -days "$days" -sha256 \
      -set_serial "$serial" -config "$extf" -extensions v3 -out "$t" ||
      die "openssl req failed for $name"
  else
    [ -r ca_key.pem ] || die "cannot sign $dir/$name: $dir/ca_key.pem is missing (an existing CA without its key cannot issue certificates; put your own $name there instead)"
    [ -r ca_cert.pem ] || die "cannot sign $dir/$name: $dir/ca_cert.pem is missing"
    local csr
    newtmp csr
    openssl req -new -key "$key" -subj "$subject" -config "$extf" -out "$csr" ||
      die "openssl req (CSR) failed for $name"
    openssl x509 -req -in "$csr" -CA ca_cert.pem -CAkey ca_key.pem -set_serial "$serial" \
      -days "$days" -sha256 -extfile "$extf" -extensions v3 -out "$t" 2>/dev/null ||
      die "openssl x509 failed to sign $name"
  fi
  chmod 0644 "$t"
  publish "$t" "$name"
}

me=$(id -un)
make_key ca_key.pem "$me" "$(id -gn)" 0600
make_key server_key.pem "$user" "$(id -gn)" 0400
make_key client_key.pem "$me" "$group" 0640

make_cert ca_cert.pem ca_key.pem "/O=stenographer/CN=stenographer CA ${hostname:-localhost}" \
  "basicConstraints=critical,CA:TRUE,pathlen:0
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash"
make_cert server_cert.pem server_key.pem "/O=stenographer/CN=${hostname:-localhost}" \
  "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
subjectAltName=$(san_list)"
make_cert client_cert.pem client_key.pem "/O=stenographer/CN=stenographer client" \
  "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid"
