"""What `edge-export convert --int8-granularity auto` would choose for a bundle's Keras model, without converting
it: the same calibration draw as `convert` (300 training crops of RUN's split, RandomState(0)).

    python benchmarks/int8_granularity_check.py models/default --run work/runs/v6 --crops work/crops112x.npz
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle")
    p.add_argument("--run", required=True, help="the run whose training split calibrates int8")
    p.add_argument("--crops", required=True)
    p.add_argument("--representative", type=int, default=300)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    model_path = Path(a.bundle) / "model_fp32.keras"
    if not model_path.is_file():
        print("int8_granularity_check: %s: no model_fp32.keras in the bundle" % a.bundle, file=sys.stderr)
        return 2
    try:
        import keras
    except ImportError:
        print("int8_granularity_check: needs TensorFlow (scripts/setup.sh edge,export)", file=sys.stderr)
        return 2

    from export.cli import calibration_crops
    from export.convert import _resize, int8_granularity_auto
    from export.crops import load as load_crops
    from export.train import predict

    model = keras.models.load_model(str(model_path), compile=False)
    size = int(model.input_shape[1])
    rep = _resize(calibration_crops(Path(a.run), load_crops(Path(a.crops)), a.representative), size)
    record, _ = int8_granularity_auto(model, rep, predict(model, rep, size).argmax(1))
    out = {"bundle": a.bundle, "run": a.run, **record}
    print(json.dumps(out))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
