"""The Keras rows of edge-bench: how the seed notebooks ran the model, for comparison.

Kept in export/ because it needs TensorFlow; edge/bench.py imports it only when present.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np


def _load(bundle):
    import keras

    v = bundle.variants.get("keras_fp32")
    if v is None:
        raise FileNotFoundError("bundle has no keras_fp32 variant")
    return keras.models.load_model(str(bundle.checked_file(v)))


def bench_keras(a, bundle, batches, measure, Result, rss_mb) -> List[Any]:
    import tensorflow as tf

    base = dict(kind="classifier", backend="keras", precision="fp32")
    try:
        t0 = time.perf_counter()
        model = _load(bundle)
    except (FileNotFoundError, ImportError) as exc:
        return [Result(name="keras fp32 predict", skipped=str(exc), **base)]
    init = (time.perf_counter() - t0) * 1000.0
    h, w = bundle.input_size
    fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    out = []
    rng = np.random.RandomState(0)
    for b in batches:
        x = rng.randint(0, 255, (b, h, w, 3)).astype(np.float32)
        for name, call in (
            ("keras fp32 predict", lambda x=x: model.predict(x, verbose=0)),
            ("keras fp32 compiled call", lambda x=x: fn(x).numpy()),
        ):
            t = time.perf_counter()
            call()
            first = (time.perf_counter() - t) * 1000.0
            st = measure(call, warmup=max(2, a.warmup // 5), runs=max(10, a.runs // 5), min_time=a.min_time)
            out.append(
                Result(
                    name=name,
                    batch=b,
                    init_ms=round(init, 2),
                    first_ms=round(first, 3),
                    per_image_ms=round(st["p50_ms"] / b, 4),
                    model_bytes=(bundle.path / "model_fp32.keras").stat().st_size,
                    rss_mb=rss_mb(),
                    **base,
                    **st,
                )
            )
    return out


def seed_pipeline(a, bundle_path: Path, clip: Path) -> Dict[str, Any]:
    """Detector on every frame and `model.predict` per face, as the seed notebooks did."""
    import cv2

    from edge.bundle import load_bundle
    from edge.crop import crop_faces, fit_box  # the device's own crop, so the seed loop cuts the same faces
    from edge.detector import DetectorOptions, load_detector

    bundle = load_bundle(bundle_path)
    model = _load(bundle)
    det = load_detector(Path(a.detector_dir) if a.detector_dir else None, DetectorOptions(mode="single"))
    cap = cv2.VideoCapture(str(clip))
    frames = 0
    t0 = time.perf_counter()
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames += 1
        for f in det.detect(img):
            if min(f.box[2] - f.box[0], f.box[3] - f.box[1]) < 40:
                continue
            box = fit_box(f.box, bundle.box_fit)  # no fit: the box as it is
            x = crop_faces(img, [box], bundle.crop_margin, bundle.input_size).astype(np.float32)
            model.predict(x, verbose=0)
    seconds = time.perf_counter() - t0
    cap.release()
    return {"frames": frames, "seconds": seconds, "fps": frames / seconds}
