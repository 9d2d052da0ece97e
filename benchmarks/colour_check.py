#!/usr/bin/env python3
"""Where the daemon's grey-camera threshold comes from (edge/colour.py), measured on real scene photos.

    .venv/bin/python benchmarks/colour_check.py --data ../shared/data --out benchmarks/results/colour-check.json

Every scene photo of the real VOC sources (andrewmvd, ilc2021) is scored by `edge.colour.chroma` as published
(a few are black-and-white photos), and
as a grey camera would send it: its luma in all three channels, through JPEG (quality 70) and through mp4v (a
lossy video codec, which decodes grey with a slight uniform tint), and with a tint that grows with brightness
(5 % more blue, what some infrared lamps give). The report counts, at the daemon's threshold, the photos taken
for grey as published (it names them, and the lowest ones above: look at them) and the grey copies taken for
colour (missed warnings). It also gives each photo's `edge.colour.light`, against the daemon's "camera sees almost
nothing" level: the darkest real photos say how far from it a dim scene with faces stays.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def through_mp4v(image: np.ndarray, tmp: Path) -> np.ndarray:
    """The frame written to and read back from a one-frame mp4v clip (even size, as the codec wants)."""
    import cv2

    h, w = image.shape[:2]
    image = image[: h - h % 2, : w - w % 2]
    path = tmp / "one.mp4"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 5.0, (image.shape[1], image.shape[0]))
    out.write(image)
    out.release()
    cap = cv2.VideoCapture(str(path))
    ok, frame = cap.read()
    cap.release()
    if not ok:
        raise RuntimeError("OpenCV cannot read back its own mp4v clip")
    return frame


def main() -> int:
    import cv2

    from edge.bench import machine
    from edge.colour import DARK_LEVEL, GreyWatch, chroma, light

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--every", type=int, default=1, help="score every n-th photo (1: all)")
    ap.add_argument("--out", default="benchmarks/results/colour-check.json")
    a = ap.parse_args()

    data = Path(a.data)
    files = sorted((data / "andrewmvd-train" / "images").glob("*.png")) + sorted(
        (data / "ilc2021-jolignier" / "images").glob("*.jp*g")
    )
    if not files:
        print("colour_check: no scene photos under %s (andrewmvd-train/images, ilc2021-jolignier/images)" % data)
        return 66
    files = files[:: max(1, a.every)]
    limit = GreyWatch().max_chroma
    scores: Dict[str, List[float]] = {"as_published": [], "grey_jpeg": [], "grey_mp4v": [], "grey_tinted": []}
    names: List[str] = []
    levels: List[float] = []  # edge.colour.light of each photo as published: how far from the daemon's "dark"
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        for f in files:
            img = cv2.imread(str(f))
            if img is None:
                continue
            names.append(str(f.relative_to(data)))
            scores["as_published"].append(chroma(img))
            levels.append(light(img))
            grey = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
            ok, jpg = cv2.imencode(".jpg", grey, [cv2.IMWRITE_JPEG_QUALITY, 70])
            scores["grey_jpeg"].append(chroma(cv2.imdecode(jpg, cv2.IMREAD_COLOR)))
            scores["grey_mp4v"].append(chroma(through_mp4v(grey, tmp)))
            tinted = np.clip(grey.astype(np.float32) * np.array([1.05, 1.0, 1.0], np.float32), 0, 255)
            scores["grey_tinted"].append(chroma(tinted.astype(np.uint8)))
    out = {
        "what": "edge.colour.chroma on real scene photos and on grey copies of them; the daemon warns at <= %.1f"
        % limit,
        "threshold": limit,
        "photos": len(names),
        "machine": machine(),
    }
    for k, v in scores.items():
        arr = np.asarray(v)
        grey_side = arr <= limit
        out[k] = {
            "percentiles": {str(p): round(float(np.percentile(arr, p)), 2) for p in (0, 1, 5, 50, 95, 99, 100)},
            "called_grey": int(grey_side.sum()),
            "share_called_grey": round(float(grey_side.mean()), 4),
        }
    order = np.argsort(scores["as_published"])
    # the photos the daemon would take for grey, and the next few above the threshold (look at them: the ones
    # below are black-and-white photos in the data)
    low = [i for i in order if scores["as_published"][i] <= limit] + [
        i for i in order if scores["as_published"][i] > limit
    ][:3]
    out["lowest_photos"] = [{"file": names[i], "chroma": round(scores["as_published"][i], 3)} for i in low]
    above = [v for v in scores["as_published"] if v > limit]
    out["lowest_above_threshold"] = round(min(above), 2) if above else None
    lv = np.asarray(levels)
    out["dark"] = {
        "what": "edge.colour.light (95th percentile of the luma) of each photo as published; the daemon says the "
        "camera sees almost nothing at <= %.0f" % DARK_LEVEL,
        "threshold": DARK_LEVEL,
        "percentiles": {str(p): round(float(np.percentile(lv, p)), 1) for p in (0, 1, 5, 50)},
        "called_dark": int((lv <= DARK_LEVEL).sum()),
        "darkest_photos": [{"file": names[i], "light": round(float(lv[i]), 1)} for i in np.argsort(lv)[:5]],
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    for k in scores:
        print("%-12s called grey %5d of %d  %s" % (k, out[k]["called_grey"], len(names), out[k]["percentiles"]))
    print(
        "light        called dark %5d of %d  %s" % (out["dark"]["called_dark"], len(names), out["dark"]["percentiles"])
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
