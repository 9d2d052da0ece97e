#!/usr/bin/env bash
# Give one kiosk its broker account: user "<SITE>.<DEVICE>", which may publish only under
# maskwatch/<SITE>/<DEVICE>/# (and read nothing). Idempotent: run it again to print the snippet
# again; --rotate issues a new password.
#
#   add-device.sh [-d DIR] [-H BROKER_HOST] [-p PORT] [--kiosk-dir DIR] [--rotate] SITE DEVICE
#
# DIR: the broker's maskwatch directory (default $MASKWATCH_BROKER_DIR, else /etc/mosquitto/maskwatch).
# BROKER_HOST: the name in the server certificate (default $MASKWATCH_BROKER_HOST, else hostname -f).
# --kiosk-dir: where the kiosk keeps mqtt-password and broker-ca.crt (default /etc/maskwatch).
# Prints the kiosk's config snippet (site, device, mqtt:) on stdout; what to copy where on stderr.
set -euo pipefail
# shellcheck source=SCRIPTDIR/accounts.sh
source "$(dirname "${BASH_SOURCE[0]}")/accounts.sh"

usage() { acct_usage 12; }

dir="$BROKER_DIR_DEFAULT"
host="$BROKER_HOST_DEFAULT"
port=8883
kiosk_dir=/etc/maskwatch
rotate=0
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        -d|--dir) [ $# -ge 2 ] || usage; dir="$2"; shift 2 ;;
        -H|--host) [ $# -ge 2 ] || usage; host="$2"; shift 2 ;;
        -p|--port) [ $# -ge 2 ] || usage; port="$2"; shift 2 ;;
        --kiosk-dir) [ $# -ge 2 ] || usage; kiosk_dir="$2"; shift 2 ;;
        --rotate) rotate=1; shift ;;
        -h|--help) usage ;;
        --) shift; args+=("$@"); break ;;
        -*) echo "add-device.sh: unknown option $1" >&2; usage ;;
        *) args+=("$1"); shift ;;
    esac
done
[ ${#args[@]} -eq 2 ] || usage
site="${args[0]}"
device="${args[1]}"
# Each is one MQTT topic level and half of the user name "<site>.<device>": no "/", "+", "#" or ".".
for v in "$site" "$device"; do
    [[ "$v" =~ ^[A-Za-z0-9_-]{1,64}$ ]] || die "'$v': site and device names use letters, digits, _ and - only"
done
[[ "$port" =~ ^[0-9]+$ ]] || die "port must be a number"
host="$(acct_host "$host")"
user="$site.$device"

acct_init "$dir"
acct_password "$user" "$rotate"
acct_acl "$user" "topic write maskwatch/$site/$device/#"
acct_finish

cat <<SNIPPET
# maskwatch kiosk $site/$device: merge into the kiosk's edge-maskd config
site: $site
device: $device
mqtt:
  host: $host
  port: $port
  username: $user
  password_file: $kiosk_dir/mqtt-password
  tls:
    enabled: true
    ca: $kiosk_dir/broker-ca.crt
SNIPPET
cat >&2 <<HINT
copy to the kiosk:
  $ACCT_SECRET  ->  $kiosk_dir/mqtt-password   (mode 600, readable by edge-maskd only)
  $dir/certs/ca.crt  ->  $kiosk_dir/broker-ca.crt
HINT
