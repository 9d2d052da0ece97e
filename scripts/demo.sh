#!/usr/bin/env bash
# README command 1: set up, make the demo entrance clip, run the daemon on it (events as JSON lines on stdout).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh edge
.venv/bin/edge-maskd demo --out demo/entrance.mp4 >/dev/null
exec .venv/bin/edge-maskd run --config firmware-config/demo.yaml "$@"
