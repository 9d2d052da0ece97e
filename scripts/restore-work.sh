#!/usr/bin/env bash
# Rebuild work/ on a machine that lost it, without training (README "Reproducing the shipped model"): the crops
# files, the shipped ensemble's four member runs with their splits (taken out of models/default and checked
# against the split its manifest records; since session 40 they are refits, restored under the names v4, v6, v7
# and p10b, their train.json saying so), v4's box fit, the extended crops and the common split that
# compare_bundles.py, kiosk_setting.py and walkers.py score on. A step whose output is there is skipped (outputs
# are written whole or not at all), so the script can be run again after an interruption.
# Usage: scripts/restore-work.sh [DATA_DIR]   (default ../shared/data; about 15 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/data}"
if [ ! -d "$data" ]; then
  echo "restore-work.sh: error: no data directory $data (pass the folder that holds SOURCES.md)" >&2
  exit 66
fi
scripts/setup.sh edge,export >/dev/null
x=.venv/bin/edge-export
py=.venv/bin/python
step() { echo "restore-work: $*" >&2; }

for size in 112 96; do
  if [ ! -f "work/crops$size.npz" ]; then
    step "cutting the $size px crops (edge-export prepare)"
    "$x" -q prepare --data "$data" --size "$size" --out "work/crops$size.npz"
  fi
done
if [ ! -f work/runs/v4/model.keras ]; then
  step "member 0 (v4) and its split, out of models/default"
  "$py" benchmarks/restore_members.py models/default --crops work/crops112.npz --split-run work/runs/v4 \
    --members work/runs/v4 - - -
fi
if [ ! -f work/runs/v4/box_fit.json ]; then
  step "v4's box fit (edge-export box-fit)"
  "$x" -q box-fit --run work/runs/v4 --crops work/crops112.npz
fi
if [ ! -f work/crops112x.npz ] || [ ! -f work/runs/v6/split.npz ]; then
  step "the extended crops and v6's split (edge-export extend)"
  "$x" -q extend --crops work/crops112.npz --run work/runs/v4 --box-fit work/runs/v4/box_fit.json \
    --mode native --confidence 0.05 --out-crops work/crops112x.npz --out-run work/runs/v6
fi
if [ ! -f work/runs/v6/model.keras ] || [ ! -f work/runs/v7/model.keras ] || [ ! -f work/runs/p10b/model.keras ]; then
  step "members 1, 2 and 3 (v6, v7, p10b) on v6's split, out of models/default"
  "$py" benchmarks/restore_members.py models/default --crops work/crops112x.npz --member-split-from work/runs/v6 \
    --members - work/runs/v6 work/runs/v7 work/runs/p10b
fi
if [ ! -f work/runs/common/split.npz ]; then
  step "the common split (benchmarks/common_split.py)"
  "$py" benchmarks/common_split.py work/crops96.npz work/runs/v4 --out work/runs/common
fi
step "done: work/crops{96,112,112x}.npz, work/runs/{v4,v6,v7,p10b,common}"
