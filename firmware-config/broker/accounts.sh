# shellcheck shell=bash
# Shared by add-device.sh and add-controlroom.sh (sourced, not run): broker accounts for maskwatch.
#
# Layout of the broker directory (default /etc/mosquitto/maskwatch, or $MASKWATCH_BROKER_DIR, or -d):
#   passwd              mosquitto password file (hashed; `password_file` in mosquitto.conf)
#   acl                 mosquitto ACL file (`acl_file`), started from this directory's `acl` template
#   secrets/USER.password   the clear-text password, to hand to the kiosk / control room (mode 600)
#   certs/              from make-certs.sh

ACCOUNTS_TEMPLATE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Defaults both scripts share; -d/--dir and -H/--host override them.
# shellcheck disable=SC2034  # read by the scripts that source this file
BROKER_DIR_DEFAULT="${MASKWATCH_BROKER_DIR:-/etc/mosquitto/maskwatch}"
# shellcheck disable=SC2034  # read by the scripts that source this file
BROKER_HOST_DEFAULT="${MASKWATCH_BROKER_HOST:-}"

# acct_usage LAST: print the calling script's header comment (lines 2..LAST) as its usage, exit 2.
acct_usage() {
    sed -n "2,${1}s/^# \{0,1\}//p" "$0" >&2
    exit 2
}

# acct_host HOST: HOST, or this machine's name when empty (the name clients check in the certificate).
acct_host() {
    if [ -n "$1" ]; then
        echo "$1"
    else
        hostname -f 2>/dev/null || hostname
    fi
}

die() {
    echo "${0##*/}: error: $*" >&2
    exit 1
}

# acct_init DIR: check tools, create the layout, take the lock (held until the script exits).
acct_init() {
    BROKER_DIR="$1"
    command -v mosquitto_passwd >/dev/null || die "mosquitto_passwd not found (apt-get install mosquitto)"
    mkdir -p "$BROKER_DIR"
    [ -w "$BROKER_DIR" ] || die "$BROKER_DIR is not writable (run as root?)"
    (umask 077 && mkdir -p "$BROKER_DIR/secrets")
    exec 9>"$BROKER_DIR/.accounts.lock"
    if command -v flock >/dev/null; then
        flock 9
    fi
    if [ ! -e "$BROKER_DIR/acl" ]; then
        cp "$ACCOUNTS_TEMPLATE_DIR/acl" "$BROKER_DIR/acl"
        echo "installed the ACL template as $BROKER_DIR/acl" >&2
    fi
}

# acct_password USER ROTATE(0|1): make sure USER has a password (kept unless ROTATE=1).
# Sets ACCT_SECRET to the clear-text password file.
acct_password() {
    local user="$1" rotate="$2" pw="" passwd="$BROKER_DIR/passwd"
    ACCT_SECRET="$BROKER_DIR/secrets/$user.password"
    local known=0
    if [ -e "$passwd" ] && awk -F: -v u="$user" '$1 == u { found = 1 } END { exit !found }' "$passwd"; then
        known=1
    fi
    if [ "$rotate" -eq 0 ] && [ -s "$ACCT_SECRET" ]; then
        pw="$(cat "$ACCT_SECRET")"
        if [ "$known" -eq 1 ]; then
            echo "$user already has credentials (keeping them; --rotate makes new ones)" >&2
            return 0
        fi
    else
        pw="$(openssl rand -hex 16 2>/dev/null || od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
        (umask 077 && printf '%s\n' "$pw" >"$ACCT_SECRET")
    fi
    if [ -e "$passwd" ]; then
        mosquitto_passwd -b "$passwd" "$user" "$pw"
    else
        (umask 027 && mosquitto_passwd -c -b "$passwd" "$user" "$pw")
    fi
    echo "credentials for $user written to $passwd (clear text in $ACCT_SECRET)" >&2
}

# acct_acl USER LINE...: append "user USER" + LINEs to the ACL unless USER already has a block.
acct_acl() {
    local user="$1" acl="$BROKER_DIR/acl"
    shift
    if grep -qxF "user $user" "$acl"; then
        echo "$acl already has a block for $user (unchanged)" >&2
        return 0
    fi
    {
        printf '\n# BEGIN %s\nuser %s\n' "$user" "$user"
        printf '%s\n' "$@"
        printf '# END %s\n' "$user"
    } >>"$acl"
    echo "ACL block for $user appended to $acl" >&2
}

# acct_finish: the broker (user mosquitto) must read passwd and acl; nobody else needs to.
acct_finish() {
    if [ "$(id -u)" -eq 0 ] && getent group mosquitto >/dev/null 2>&1; then
        chgrp mosquitto "$BROKER_DIR/passwd" "$BROKER_DIR/acl"
    fi
    chmod 640 "$BROKER_DIR/passwd" "$BROKER_DIR/acl"
    echo "now reload the broker: systemctl reload mosquitto (or kill -HUP its pid)" >&2
}
