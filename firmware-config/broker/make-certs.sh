#!/usr/bin/env bash
# Create the maskwatch broker's TLS material with openssl: a private CA and a server certificate
# whose subjectAltName lists every name/IP the kiosks use to reach the broker; optionally client
# certificates (for `require_certificate true` in mosquitto.conf).
#
#   make-certs.sh [-d DIR] [--days N] HOST [HOST...]     CA (kept if it exists) + server cert
#   make-certs.sh [-d DIR] [--days N] --client NAME      a client cert signed by the same CA
#
# DIR defaults to $MASKWATCH_BROKER_DIR/certs, else /etc/mosquitto/maskwatch/certs.
# Files: ca.key (keep it off the broker if you can), ca.crt (copy to every kiosk as tls.ca),
# server.key, server.crt, client-NAME.key, client-NAME.crt. Keys are EC P-256, mode 600.
# An existing CA is reused so that re-issuing the server certificate does not break the kiosks.
set -euo pipefail

usage() {
    sed -n '2,12s/^# \{0,1\}//p' "$0" >&2
    exit 2
}

die() {
    echo "make-certs.sh: error: $*" >&2
    exit 1
}

dir="${MASKWATCH_BROKER_DIR:-/etc/mosquitto/maskwatch}/certs"
days=825
client=""
hosts=()
while [ $# -gt 0 ]; do
    case "$1" in
        -d|--dir) [ $# -ge 2 ] || usage; dir="$2"; shift 2 ;;
        --days) [ $# -ge 2 ] || usage; days="$2"; shift 2 ;;
        --client) [ $# -ge 2 ] || usage; client="$2"; shift 2 ;;
        -h|--help) usage ;;
        -*) echo "make-certs.sh: unknown option $1" >&2; usage ;;
        *) hosts+=("$1"); shift ;;
    esac
done
[[ "$days" =~ ^[0-9]+$ ]] || die "--days must be a number of days"
if [ -n "$client" ]; then
    [ ${#hosts[@]} -eq 0 ] || die "--client takes no host names"
    [[ "$client" =~ ^[A-Za-z0-9_.-]+$ ]] || die "client name '$client': use letters, digits, . _ -"
else
    [ ${#hosts[@]} -gt 0 ] || usage
fi
command -v openssl >/dev/null || die "openssl is not installed"

mkdir -p "$dir"
umask 077
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

cat >"$tmp/openssl.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = maskwatch
[v3_ca]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
CNF

newkey() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
    chmod 600 "$1"
}

# sign NAME CN EXTENSIONS-TEXT: NAME.key/NAME.crt signed by the CA
sign() {
    local name="$1" cn="$2" ext="$3"
    newkey "$dir/$name.key"
    openssl req -new -key "$dir/$name.key" -subj "/O=maskwatch/CN=$cn" -out "$tmp/$name.csr" \
        -config "$tmp/openssl.cnf"
    printf '[ext]\n%s\n' "$ext" >"$tmp/$name.ext"
    openssl x509 -req -in "$tmp/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
        -set_serial "0x$(openssl rand -hex 16)" -days "$days" -sha256 \
        -extfile "$tmp/$name.ext" -extensions ext -out "$dir/$name.crt" 2>/dev/null
    chmod 644 "$dir/$name.crt"
}

if [ ! -s "$dir/ca.key" ] || [ ! -s "$dir/ca.crt" ]; then
    newkey "$dir/ca.key"
    openssl req -x509 -new -key "$dir/ca.key" -subj "/O=maskwatch/CN=maskwatch broker CA" \
        -days 3650 -sha256 -config "$tmp/openssl.cnf" -extensions v3_ca -out "$dir/ca.crt"
    chmod 644 "$dir/ca.crt"
    echo "created CA $dir/ca.crt" >&2
else
    echo "reusing CA $dir/ca.crt" >&2
fi

common="basicConstraints = critical,CA:FALSE
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer"

if [ -n "$client" ]; then
    sign "client-$client" "$client" "$common
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth"
    echo "created client certificate $dir/client-$client.crt (key $dir/client-$client.key)" >&2
    exit 0
fi

san=""
for h in "${hosts[@]}"; do
    if [[ "$h" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || [[ "$h" == *:* ]]; then
        san+="${san:+,}IP:$h"
    elif [[ "$h" =~ ^[A-Za-z0-9*]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]]; then
        san+="${san:+,}DNS:$h"
    else
        die "'$h' is neither a host name nor an IP address"
    fi
done
sign server "${hosts[0]}" "$common
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $san"
# mosquitto drops root privileges before it reads the key: let its group read it.
if [ "$(id -u)" -eq 0 ] && getent group mosquitto >/dev/null 2>&1; then
    chgrp mosquitto "$dir/server.key" && chmod 640 "$dir/server.key"
fi
echo "created server certificate $dir/server.crt for $san" >&2
openssl verify -CAfile "$dir/ca.crt" "$dir/server.crt" >&2
