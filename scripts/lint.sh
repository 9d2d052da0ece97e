#!/usr/bin/env bash
# The static checks CI runs before the tests (configured in pyproject.toml): ruff lint + format check, mypy on
# the device and control-room code, vermin (edge/ must run on Python 3.8).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh edge,export,dev,controlroom >/dev/null
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/vermin --no-tips --violations -t=3.8- --eval-annotations --backport typing --backport enum edge >/dev/null || {
  .venv/bin/vermin --no-tips --violations -t=3.8- --eval-annotations --backport typing --backport enum edge; exit 1; }
echo "lint: ruff, ruff format, mypy, vermin 3.8: ok"
