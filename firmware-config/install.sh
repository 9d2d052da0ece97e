#!/usr/bin/env bash
# Install maskwatch on a kiosk (Jetson, Raspberry Pi, any Debian/Ubuntu box): a venv with the package,
# the model bundle, the config, the systemd units, the detector files; then start the service.
#
#   sudo firmware-config/install.sh [options]
#
# Idempotent: run it again (from a newer checkout or release) to upgrade. Two runs with the same
# inputs leave the same files. /etc/maskwatch/config.yaml is written only when it does not exist;
# when the shipped example changed since the last install, the new one lands next to yours as
# config.yaml.new. See docs/flashing-a-kiosk.md.
#
# Options:
#   --prefix DIR         where the venv, models and docs go (default /opt/maskwatch)
#   --destdir DIR        write everything under DIR instead of / (packaging, tests); never calls
#                        systemctl or udevadm, and needs no root
#   --config FILE        the kiosk config to install as /etc/maskwatch/config.yaml if there is none yet
#                        (default: firmware-config/kiosk.example.yaml)
#   --from-source DIR    pip install this maskwatch source tree (default: the tree holding this script)
#   --wheel-dir DIR      pip install maskwatch and its dependencies from the wheels in DIR, offline
#   --models DIR         model bundle to install as PREFIX/models/default (default: models/default of
#                        the tree holding this script)
#   --python EXE         interpreter for the venv (default python3; python3.8 on JetPack 4.6)
#   --extras LIST        pip extras (default: edge; edge,jetson on a Jetson)
#   --platform NAME      auto | jetson | pi | generic (default auto: detected on this machine)
#   --system-site-packages | --no-system-site-packages
#                        let the venv see apt's Python modules (default: yes on a Jetson, for TensorRT)
#   --system-opencv      use the distribution's OpenCV (built with GStreamer: Jetson CSI, libcamera)
#                        instead of the PyPI wheel; implies --system-site-packages (default: on a Jetson)
#   --engine | --no-engine
#                        enable the first-boot TensorRT engine build (default: yes on a Jetson)
#   --coral              install the Edge TPU udev rules (firmware-config/udev/99-coral-edgetpu.rules)
#   --assets-from DIR    take the detector files from DIR instead of downloading them (offline)
#   --skip-pip           create the venv but install nothing into it (tests; packaging that fills it)
#   --skip-assets        do not fetch the detector files (the daemon cannot start until they are there)
#   --no-systemctl       do not call systemctl or udevadm; print what to run instead
#   --uninstall          remove the units, the venv and PREFIX; keep /etc/maskwatch (config, password)
#                        and /var/lib/maskwatch (spool, engines, detector files)
#   --purge              with --uninstall: remove /etc/maskwatch and /var/lib/maskwatch as well
#   -h, --help
set -euo pipefail
umask 022

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TREE="$(cd "$HERE/.." && pwd)"

PREFIX=/opt/maskwatch
DESTDIR=
CONFIG_SRC="$HERE/kiosk.example.yaml"
SOURCE="$TREE"
WHEEL_DIR=
MODELS_SRC="$TREE/models/default"
PYTHON=python3
EXTRAS=
PLATFORM=auto
SYSTEM_SITE=
SYSTEM_OPENCV=
ENGINE=
CORAL=0
ASSETS_FROM=
SKIP_PIP=0
SKIP_ASSETS=0
SYSTEMCTL=1
UNINSTALL=0
PURGE=0

log() { printf 'install.sh: %s\n' "$*"; }
warn() { printf 'install.sh: warning: %s\n' "$*" >&2; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit "${1:-0}"; }

need_arg() { [ "$2" -ge 2 ] || die "$1 needs a value"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) need_arg "$1" $#; PREFIX="$2"; shift 2 ;;
        --destdir) need_arg "$1" $#; DESTDIR="$2"; shift 2 ;;
        --config) need_arg "$1" $#; CONFIG_SRC="$2"; shift 2 ;;
        --from-source) need_arg "$1" $#; SOURCE="$2"; shift 2 ;;
        --wheel-dir) need_arg "$1" $#; WHEEL_DIR="$2"; shift 2 ;;
        --models) need_arg "$1" $#; MODELS_SRC="$2"; shift 2 ;;
        --python) need_arg "$1" $#; PYTHON="$2"; shift 2 ;;
        --extras) need_arg "$1" $#; EXTRAS="$2"; shift 2 ;;
        --platform) need_arg "$1" $#; PLATFORM="$2"; shift 2 ;;
        --system-site-packages) SYSTEM_SITE=1; shift ;;
        --no-system-site-packages) SYSTEM_SITE=0; shift ;;
        --system-opencv) SYSTEM_OPENCV=1; shift ;;
        --engine) ENGINE=1; shift ;;
        --no-engine) ENGINE=0; shift ;;
        --coral) CORAL=1; shift ;;
        --assets-from) need_arg "$1" $#; ASSETS_FROM="$2"; shift 2 ;;
        --skip-pip) SKIP_PIP=1; shift ;;
        --skip-assets) SKIP_ASSETS=1; shift ;;
        --no-systemctl) SYSTEMCTL=0; shift ;;
        --uninstall) UNINSTALL=1; shift ;;
        --purge) PURGE=1; shift ;;
        -h|--help) usage 0 ;;
        *) warn "unknown option: $1"; usage 2 >&2 ;;
    esac
done

# -- checks and derived paths ----------------------------------------------------------------------
case "$PREFIX" in
    /*) ;;
    *) die "--prefix must be an absolute path: $PREFIX" ;;
esac
PREFIX="${PREFIX%/}"
[[ "$PREFIX" =~ ^/[A-Za-z0-9._/+-]+$ ]] || die "--prefix may only use letters, digits and . _ - + / (it goes into unit files): $PREFIX"
case "$PREFIX" in
    /|/bin|/boot|/dev|/etc|/home|/lib|/opt|/proc|/root|/run|/sbin|/srv|/sys|/tmp|/usr|/usr/local|/var|/var/lib)
        die "--prefix $PREFIX would mix maskwatch with the system; use a directory of its own" ;;
esac
if [ -n "$DESTDIR" ]; then
    mkdir -p "$DESTDIR"
    DESTDIR="$(cd "$DESTDIR" && pwd)"
    [ "$DESTDIR" != / ] || DESTDIR=
fi
if [ -n "$DESTDIR" ]; then
    SYSTEMCTL=0  # a staged tree is not the running system
elif [ "$(id -u)" -ne 0 ]; then
    die "run as root (sudo $0 ...), or stage into a directory with --destdir"
fi
[ "$PURGE" = 0 ] || [ "$UNINSTALL" = 1 ] || die "--purge goes with --uninstall"

ROOT_PREFIX="$DESTDIR$PREFIX"
VENV="$ROOT_PREFIX/venv"
SHARE="$ROOT_PREFIX/share"
ETC="$DESTDIR/etc/maskwatch"
UNITDIR="$DESTDIR/etc/systemd/system"
UDEVDIR="$DESTDIR/etc/udev/rules.d"
STATE="$DESTDIR/var/lib/maskwatch"
UNITS=(maskwatch.service maskwatch-build-engine.service)
UDEV_RULES=99-coral-edgetpu.rules

detect_platform() {
    if [ -f /etc/nv_tegra_release ]; then
        echo jetson
    elif [ -r /proc/device-tree/model ] && grep -qa '^Raspberry Pi' /proc/device-tree/model; then
        echo pi
    else
        echo generic
    fi
}
if [ "$PLATFORM" = auto ]; then
    PLATFORM="$(detect_platform)"
fi
case "$PLATFORM" in
    jetson)
        : "${EXTRAS:=edge,jetson}" "${SYSTEM_OPENCV:=1}" "${ENGINE:=1}" ;;
    pi|generic)
        : "${EXTRAS:=edge}" "${SYSTEM_OPENCV:=0}" "${ENGINE:=0}" ;;
    *) die "--platform: expected auto, jetson, pi or generic, not $PLATFORM" ;;
esac
[ "$SYSTEM_OPENCV" = 0 ] || SYSTEM_SITE=1
if [ -z "$SYSTEM_SITE" ]; then
    if [ "$PLATFORM" = jetson ]; then SYSTEM_SITE=1; else SYSTEM_SITE=0; fi
fi

# run_systemctl ARGS...: call systemctl on the live system, or say what to run.
run_systemctl() {
    if [ "$SYSTEMCTL" = 1 ]; then
        systemctl "$@"
    else
        log "skipped (no systemctl): systemctl $*"
    fi
}

# write_file DEST MODE: stdin -> DEST with MODE. An identical DEST is left alone (status 1: unchanged).
write_file() {
    local dest="$1" mode="$2" tmp
    mkdir -p "$(dirname "$dest")"
    tmp="$(mktemp "$dest.XXXXXX")"
    cat >"$tmp"
    chmod "$mode" "$tmp"
    if [ -f "$dest" ] && [ ! -L "$dest" ] && cmp -s "$tmp" "$dest"; then
        rm -f "$tmp"
        chmod "$mode" "$dest"
        return 1
    fi
    mv -f "$tmp" "$dest"
    return 0
}

# copy_tree SRC DEST: DEST becomes an exact copy of SRC (symlinks followed, modes normalised);
# status 1 when DEST already was one.
copy_tree() {
    local src="$1" dest="$2" tmp
    tmp="$dest.new.$$"
    rm -rf "$dest".new.*
    mkdir -p "$tmp"
    cp -R -L "$src/." "$tmp/"
    chmod -R u=rwX,go=rX "$tmp"
    if [ -d "$dest" ] && diff -r -q "$tmp" "$dest" >/dev/null 2>&1; then
        rm -rf "$tmp"
        return 1
    fi
    rm -rf "$dest"
    mv "$tmp" "$dest"
    return 0
}

# -- uninstall -------------------------------------------------------------------------------------
uninstall() {
    local u
    if [ "$SYSTEMCTL" = 1 ]; then
        systemctl disable --now "${UNITS[@]}" 2>/dev/null || true
    fi
    for u in "${UNITS[@]}"; do
        rm -f "$UNITDIR/$u"
    done
    if [ -f "$UDEVDIR/$UDEV_RULES" ] && cmp -s "$UDEVDIR/$UDEV_RULES" "$HERE/udev/$UDEV_RULES"; then
        rm -f "$UDEVDIR/$UDEV_RULES"
        [ "$SYSTEMCTL" = 0 ] || udevadm control --reload-rules || true
    fi
    # Only what install.sh puts there: PREFIX itself goes only if nothing else is left in it.
    rm -rf "$VENV" "$ROOT_PREFIX/models/default" "$ROOT_PREFIX"/models/default.new.* "$SHARE"
    rmdir "$ROOT_PREFIX/models" 2>/dev/null || true
    if [ -d "$ROOT_PREFIX" ] && ! rmdir "$ROOT_PREFIX" 2>/dev/null; then
        warn "left $ROOT_PREFIX in place: it holds files maskwatch did not install"
    fi
    if [ "$PURGE" = 1 ]; then
        rm -rf "$ETC" "$UNITDIR/maskwatch.service.d" "$STATE" "$DESTDIR/var/lib/private/maskwatch"
        log "purged $ETC and $STATE"
    else
        log "kept $ETC (config, MQTT password) and $STATE (spool, engines, detector files); --purge removes them"
    fi
    run_systemctl daemon-reload
    log "maskwatch uninstalled"
}

if [ "$UNINSTALL" = 1 ]; then
    uninstall
    exit 0
fi

# -- install: inputs -------------------------------------------------------------------------------
[ -f "$CONFIG_SRC" ] || die "--config: no such file: $CONFIG_SRC"
[ -f "$MODELS_SRC/manifest.json" ] || die "no model bundle at $MODELS_SRC (a directory with manifest.json, made by \`edge-export convert\`); pass --models DIR"
for u in "${UNITS[@]}"; do
    [ -f "$TREE/systemd/$u" ] || die "missing $TREE/systemd/$u"
done
if [ "$SKIP_PIP" = 0 ]; then
    if [ -n "$WHEEL_DIR" ]; then
        [ -d "$WHEEL_DIR" ] || die "--wheel-dir: no such directory: $WHEEL_DIR"
    else
        [ -f "$SOURCE/pyproject.toml" ] || die "--from-source: $SOURCE is not a maskwatch source tree (no pyproject.toml)"
    fi
fi
if [ "$SKIP_ASSETS" = 0 ] && [ "$SKIP_PIP" = 1 ]; then
    die "fetching the detector files needs the installed package: add --skip-assets to --skip-pip"
fi
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (--python EXE; on Debian/Ubuntu: apt install python3 python3-venv)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 8))' ||
    die "$PYTHON is older than 3.8, which maskwatch needs (JetPack 4.6: apt install python3.8 python3.8-venv, then --python python3.8)"

MODEL_ID="$("$PYTHON" - "$MODELS_SRC/manifest.json" <<'PY'
import json, sys
print(json.load(open(sys.argv[1])).get("model_id") or "default")
PY
)"
[[ "$MODEL_ID" =~ ^[A-Za-z0-9._-]+$ ]] || die "model_id '$MODEL_ID' in $MODELS_SRC/manifest.json is not a plain file name"

log "platform $PLATFORM; prefix $PREFIX${DESTDIR:+; staged under $DESTDIR}"

# -- the venv --------------------------------------------------------------------------------------
make_venv() {
    local want opts=()
    if [ "$SYSTEM_SITE" = 1 ]; then want=true; else want=false; fi
    if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -I -c '' 2>/dev/null; then
        if grep -qx "include-system-site-packages = $want" "$VENV/pyvenv.cfg"; then
            log "venv $PREFIX/venv: present"
            return 0
        fi
        log "venv $PREFIX/venv: system-site-packages changes to $want, recreating it"
        opts+=(--clear)
    elif [ -e "$VENV" ]; then
        log "venv $PREFIX/venv: its interpreter is gone (Python upgraded?), recreating it"
        opts+=(--clear)
    fi
    [ "$SYSTEM_SITE" = 0 ] || opts+=(--system-site-packages)
    [ "$SKIP_PIP" = 0 ] || opts+=(--without-pip)
    mkdir -p "$ROOT_PREFIX"
    "$PYTHON" -m venv ${opts[@]+"${opts[@]}"} "$VENV" ||
        die "could not create the venv (Debian/Ubuntu: apt install python3-venv)"
    log "venv $PREFIX/venv: created with $("$VENV/bin/python" -I -c 'import sys; print(sys.version.split()[0])')"
}

pip_install() {
    local py="$VENV/bin/python" args=(--disable-pip-version-check --no-compile)
    "$py" -I -m pip --version >/dev/null 2>&1 || "$py" -I -m ensurepip --upgrade >/dev/null
    if [ "$SYSTEM_OPENCV" = 1 ]; then
        # apt's cv2 (and JetPack's TensorRT bindings) are built against NumPy 1.x.
        printf 'numpy<2\n' >"$WORK/constraints.txt"
        args+=(-c "$WORK/constraints.txt")
    fi
    if [ -n "$WHEEL_DIR" ]; then
        log "pip: maskwatch[$EXTRAS] from the wheels in $WHEEL_DIR"
        "$py" -I -m pip install "${args[@]}" --no-index --find-links "$WHEEL_DIR" --upgrade "maskwatch[${EXTRAS}]"
    else
        log "pip: maskwatch[$EXTRAS] from $SOURCE"
        "$py" -I -m pip install --disable-pip-version-check --quiet --upgrade pip ||
            warn "could not upgrade pip; continuing with $("$py" -I -m pip --version)"
        "$py" -I -m pip install "${args[@]}" "${SOURCE}[${EXTRAS}]"
    fi
    if [ "$SYSTEM_OPENCV" = 1 ]; then
        if "$py" -I -m pip show --quiet opencv-python-headless >/dev/null 2>&1; then
            "$py" -I -m pip uninstall --yes --quiet opencv-python-headless
        fi
        "$py" -I - <<'PY' || die "--system-opencv: the system's OpenCV is missing or built without" \
            "GStreamer (Jetson: apt install nvidia-opencv; Debian/Pi OS: apt install python3-opencv)"
import re, sys
try:
    import cv2
except ImportError:
    sys.exit(1)
sys.exit(0 if re.search(r"GStreamer:\s*YES", cv2.getBuildInformation()) else 1)
PY
        log "OpenCV: the system's $("$py" -I -c 'import cv2; print(cv2.__version__)'), with GStreamer"
    fi
    # Precompile with hash-based .pyc: the service cannot write the venv, and identical sources give
    # identical .pyc files, so a re-run leaves the same tree. -d: the paths recorded for tracebacks are
    # the installed ones, also when staging under DESTDIR.
    "$py" -I -m compileall -q -f --invalidation-mode checked-hash -d "$PREFIX/venv/lib" "$VENV/lib" >/dev/null ||
        warn "compileall reported errors (files that are not Python 3 in some package); harmless"
}

# Paths inside a venv built under DESTDIR point into DESTDIR; the installed system needs PREFIX.
fix_destdir_paths() {
    [ -n "$DESTDIR" ] || return 0
    "$PYTHON" - "$VENV" "$DESTDIR$PREFIX" "$PREFIX" <<'PY'
import os, sys
venv, old, new = sys.argv[1:]
paths = [os.path.join(venv, "pyvenv.cfg")]
paths += [os.path.join(venv, "bin", n) for n in sorted(os.listdir(os.path.join(venv, "bin")))]
for p in paths:
    if os.path.islink(p) or not os.path.isfile(p):
        continue
    with open(p, "rb") as f:
        data = f.read()
    if b"\0" in data or old.encode() not in data:
        continue
    mode = os.stat(p).st_mode
    with open(p, "wb") as f:
        f.write(data.replace(old.encode(), new.encode()))
    os.chmod(p, mode)
PY
}

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

make_venv
if [ "$SKIP_PIP" = 0 ]; then
    pip_install
else
    log "pip: skipped (--skip-pip); $PREFIX/venv has no maskwatch in it"
fi
HAVE_EDGE=0
if "$VENV/bin/python" -I -c 'import edge.cli' >/dev/null 2>&1; then
    HAVE_EDGE=1
fi
fix_destdir_paths

# -- model bundle, docs ----------------------------------------------------------------------------
if copy_tree "$MODELS_SRC" "$ROOT_PREFIX/models/default"; then
    log "model bundle $MODEL_ID -> $PREFIX/models/default"
else
    log "model bundle $MODEL_ID: unchanged"
fi
if [ "$HAVE_EDGE" = 1 ]; then
    "$VENV/bin/python" -I -c 'import sys; from edge.bundle import load_bundle; load_bundle(sys.argv[1], verify=True)' \
        "$ROOT_PREFIX/models/default" || die "the installed bundle fails its sha256 check"
fi
for doc in "$TREE/docs/flashing-a-kiosk.md" "$HERE"/platforms/*.md; do
    [ -f "$doc" ] || continue
    case "$doc" in
        "$HERE"/platforms/*) dest="$SHARE/doc/platforms/$(basename "$doc")" ;;
        *) dest="$SHARE/doc/$(basename "$doc")" ;;
    esac
    write_file "$dest" 0644 <"$doc" || true
done

# -- config ----------------------------------------------------------------------------------------
mkdir -p "$ETC"
chmod 0755 "$ETC"
SHIPPED="$SHARE/config.yaml.shipped"  # the example as last installed: did it change since?
if [ ! -e "$ETC/config.yaml" ]; then
    write_file "$ETC/config.yaml" 0644 <"$CONFIG_SRC" || true
    log "config: installed /etc/maskwatch/config.yaml from $(basename "$CONFIG_SRC"); edit it for this kiosk"
elif cmp -s "$ETC/config.yaml" "$CONFIG_SRC"; then
    log "config: /etc/maskwatch/config.yaml is the shipped one"
elif [ -f "$SHIPPED" ] && cmp -s "$SHIPPED" "$CONFIG_SRC"; then
    log "config: kept your /etc/maskwatch/config.yaml"
else
    if write_file "$ETC/config.yaml.new" 0644 <"$CONFIG_SRC"; then
        log "config: kept your /etc/maskwatch/config.yaml; the shipped config changed and is in" \
            "/etc/maskwatch/config.yaml.new: merge it (diff -u config.yaml config.yaml.new), then delete it"
    else
        log "config: kept your /etc/maskwatch/config.yaml; /etc/maskwatch/config.yaml.new still waits to be merged"
    fi
fi
write_file "$SHIPPED" 0644 <"$CONFIG_SRC" || true
if [ ! -e "$ETC/mqtt-password" ]; then
    # LoadCredential= fails the start when its file is missing; empty means "no password".
    write_file "$ETC/mqtt-password" 0600 </dev/null || true
    log "config: created an empty /etc/maskwatch/mqtt-password (root only); put the broker password there"
fi
if [ "$HAVE_EDGE" = 1 ]; then
    "$VENV/bin/python" -I -m edge.cli check-config "$ETC/config.yaml" ||
        warn "/etc/maskwatch/config.yaml does not validate: the service will not start until it does"
fi

# -- systemd units, udev ---------------------------------------------------------------------------
render_unit() {
    local text
    text="$(<"$TREE/systemd/$1")"
    text="${text//\/opt\/maskwatch/"$PREFIX"}"
    text="${text//@MODEL_ID@/"$MODEL_ID"}"
    if printf '%s\n' "$text" | write_file "$UNITDIR/$1" 0644; then
        log "unit: /etc/systemd/system/$1"
    fi
}
for u in "${UNITS[@]}"; do
    render_unit "$u"
done
if [ "$CORAL" = 1 ]; then
    if write_file "$UDEVDIR/$UDEV_RULES" 0644 <"$HERE/udev/$UDEV_RULES"; then
        log "udev: /etc/udev/rules.d/$UDEV_RULES"
    fi
    if [ "$SYSTEMCTL" = 1 ]; then
        if ! { udevadm control --reload-rules && udevadm trigger --subsystem-match=usb --subsystem-match=apex; }; then
            warn "udevadm could not reload the rules; replug the Edge TPU or reboot"
        fi
    fi
fi

# -- detector files --------------------------------------------------------------------------------
if [ "$SKIP_ASSETS" = 0 ]; then
    # Written as root before the first start; systemd moves /var/lib/maskwatch under /var/lib/private
    # and hands it to the service's dynamic user on that start.
    mkdir -p "$STATE/assets"
    fetch=(assets fetch --dir "$STATE/assets" --timeout 20)
    [ -z "$ASSETS_FROM" ] || fetch+=(--from "$ASSETS_FROM" --offline)
    "$VENV/bin/python" -I -m edge.cli "${fetch[@]}" >/dev/null ||
        die "could not fetch the detector files (no network? use --assets-from DIR with deploy.prototxt and res10_300x300_ssd_iter_140000.caffemodel)"
    log "detector files: /var/lib/maskwatch/assets (sha256 verified)"
else
    log "detector files: skipped (--skip-assets)"
fi

# -- start -----------------------------------------------------------------------------------------
run_systemctl daemon-reload
if [ "$ENGINE" = 1 ]; then
    log "TensorRT engine: /var/lib/maskwatch/engines/$MODEL_ID-fp16.engine, built by maskwatch-build-engine.service" \
        "(minutes on a Nano); the config uses it with classifier.variant: onnx, backend: tensorrt and that engine path"
    run_systemctl enable maskwatch-build-engine.service
    run_systemctl start maskwatch-build-engine.service || warn "the engine build failed (journalctl -u maskwatch-build-engine); maskwatch falls back to the CPU"
else
    run_systemctl disable maskwatch-build-engine.service 2>/dev/null || true
fi
# A unit that gave up after repeated failures (StartLimitBurst) refuses to start until reset.
[ "$SYSTEMCTL" = 0 ] || systemctl reset-failed maskwatch.service 2>/dev/null || true
if [ "$SYSTEMCTL" = 1 ] && systemctl is-active --quiet maskwatch.service; then
    systemctl enable maskwatch.service
    systemctl restart maskwatch.service
    log "maskwatch restarted"
else
    run_systemctl enable --now maskwatch.service
fi
log "done. Check: systemctl status maskwatch; journalctl -u maskwatch -f"
