#!/usr/bin/env bash
# Give a control-room consumer (edge-alerts) its broker account: it may read maskwatch/# and
# publish nothing. Idempotent; --rotate issues a new password. Give every consumer its own account
# (names without a ".", so they never clash with "<site>.<device>"): the broker forces each client's
# id to its user name (use_username_as_clientid), so two instances on one account would evict each other.
#
#   add-controlroom.sh [-d DIR] [-H BROKER_HOST] [--rotate] [--ha] [NAME]   (NAME default: controlroom)
#
# DIR: the broker's maskwatch directory (default $MASKWATCH_BROKER_DIR, else /etc/mosquitto/maskwatch).
# --ha: also read/write homeassistant/# (Home Assistant's own account, or edge-alerts --ha-discovery).
# Prints the edge-alerts command line on stdout.
set -euo pipefail
# shellcheck source=SCRIPTDIR/accounts.sh
source "$(dirname "${BASH_SOURCE[0]}")/accounts.sh"

usage() { acct_usage 10; }

dir="$BROKER_DIR_DEFAULT"
host="$BROKER_HOST_DEFAULT"
rotate=0
ha=0
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        -d|--dir) [ $# -ge 2 ] || usage; dir="$2"; shift 2 ;;
        -H|--host) [ $# -ge 2 ] || usage; host="$2"; shift 2 ;;
        --rotate) rotate=1; shift ;;
        --ha) ha=1; shift ;;
        -h|--help) usage ;;
        -*) echo "add-controlroom.sh: unknown option $1" >&2; usage ;;
        *) args+=("$1"); shift ;;
    esac
done
[ ${#args[@]} -le 1 ] || usage
user="${args[0]:-controlroom}"
[[ "$user" =~ ^[A-Za-z0-9_-]{1,64}$ ]] || die "'$user': use letters, digits, _ and - (no '.')"
host="$(acct_host "$host")"

acct_init "$dir"
acct_password "$user" "$rotate"
rules=("topic read maskwatch/#")
if [ "$ha" -eq 1 ]; then
    rules+=("topic readwrite homeassistant/#")
fi
acct_acl "$user" "${rules[@]}"
if [ "$ha" -eq 1 ] && ! grep -qxF "topic readwrite homeassistant/#" "$dir/acl"; then
    echo "note: $user's existing ACL block has no homeassistant/# rule: add 'topic readwrite homeassistant/#' to it" >&2
fi
acct_finish

extra=""
if [ "$ha" -eq 1 ]; then
    extra=" --ha-discovery"
fi
echo "edge-alerts --host $host --ca $dir/certs/ca.crt --username $user --password-file $ACCT_SECRET$extra"
