"""edge-maskd: the on-device daemon and the tools around it.

edge-maskd run --config FILE          the daemon (events to MQTT, or stdout without a broker)
edge-maskd scan PATH...               detector + classifier on images/videos, JSON lines
edge-maskd classify PATH...           classifier on images that are already face crops
edge-maskd assets fetch               fetch + sha256-verify the res10 detector files
edge-maskd check-config FILE          validate a config (exit 78 on error)
edge-maskd demo [--out clip.mp4]      make the demo entrance clip
edge-maskd build-engine               build the TensorRT engine on this Jetson (once)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from . import __version__
from .argtypes import at_least
from .config import DETECTOR_BACKENDS, DETECTOR_MODES, SCAN, DetectorConfig, build
from .datasets_io import IMAGE_EXTS, MAX_PIXELS, expand_folders
from .errors import EX_TEMPFAIL, EX_UNAVAILABLE, EX_USAGE, MaskwatchError, SourceError

_D = DetectorConfig()

log = logging.getLogger("edge-maskd")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


# -- run ---------------------------------------------------------------------------------------------------
def cmd_run(a) -> int:
    from .capture import FrameSource
    from .config import load_config, mqtt_password
    from .pipeline import Pipeline, device_name, state_dir
    from .publish import MqttPublisher, Publisher, StdoutPublisher
    from .spool import Spool

    overrides: Dict[str, Any] = {}
    if a.source is not None:
        overrides.setdefault("source", {})["url"] = a.source
    if a.max_frames is not None:
        overrides.setdefault("source", {})["max_frames"] = a.max_frames
    cfg = load_config(a.config, overrides)
    _setup_logging(a.log_level or cfg.log_level)
    s = cfg.source
    assert s.url is not None  # required: load_config refuses a config without it
    source = FrameSource(
        s.url,
        s.type,
        width=s.width,
        height=s.height,
        fps=s.fps,
        loop=s.loop,
        realtime=s.realtime,
        drop_late=s.drop_late,
        reconnect_initial_s=s.reconnect_initial_s,
        reconnect_max_s=s.reconnect_max_s,
        max_frames=s.max_frames,
    )
    source.open()  # a missing or unreadable file fails here, before anything is announced
    m = cfg.mqtt
    expected_user = "%s.%s" % (cfg.site, device_name(cfg))
    if m.host and m.username and m.username != expected_user:
        log.warning(
            "mqtt.username is %r but the shipped broker ACL lets only %r publish under %s/%s/%s/; "
            "events may be refused",
            m.username,
            expected_user,
            m.topic_prefix,
            cfg.site,
            device_name(cfg),
        )
    publisher: Publisher
    if m.host:
        spool_path = Path(cfg.spool.path) if cfg.spool.path else state_dir(cfg) / "spool.db"
        publisher = MqttPublisher(
            host=m.host,
            port=m.port,
            site=cfg.site,
            device=device_name(cfg),
            spool=Spool(spool_path, cfg.spool.max_events, cfg.spool.policy, max_bytes=cfg.spool.max_bytes),
            prefix=m.topic_prefix,
            client_id=m.client_id,
            username=m.username,
            password=mqtt_password(cfg),
            tls=m.tls,
            keepalive=m.keepalive,
            qos=m.qos,
            protocol=m.protocol,
            inflight=m.inflight,
        )
    else:
        publisher = StdoutPublisher()
        log.info("no mqtt.host configured: events go to stdout")
    pipe = Pipeline(cfg, publisher)
    log.info(
        "maskwatch %s: %s/%s, source %s (%s), detector %s, classifier %s",
        __version__,
        pipe.site,
        pipe.device,
        source.name,
        source.kind,
        cfg.detector.mode,
        pipe.backend_name,
    )

    def stop(signum, frame):
        log.info("signal %d: stopping", signum)
        pipe.stop_event.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        pipe.run(source)
    finally:
        source.close()
        publisher.close(pipe.status_payload("stopped", camera=None))
    log.info("stopped after %d frames, %d events", pipe.frames, pipe.events)
    # the publisher has said how many messages stay in the spool and where; a batch run over a file that did not
    # deliver them has not finished its job: say so in the exit status
    if publisher.spool_depth() and source.kind == "file":
        return EX_TEMPFAIL
    return 0


# -- scan / classify ---------------------------------------------------------------------------------------
def _iter_frames(path: Path, every: int, max_pixels: Optional[int] = None) -> Iterator[Tuple[int, Any]]:
    import cv2

    from .datasets_io import read_image, unreadable_reason

    if path.suffix.lower() in IMAGE_EXTS or path.is_dir() or not path.exists():
        img = read_image(path, max_pixels)
        if img is None:
            raise SourceError(unreadable_reason(path))
        yield 0, img
        return
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SourceError("%s is neither a readable image nor a video" % path)
    i = 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        if i % every == 0:
            yield i, img
        i += 1
    cap.release()
    if i == 0:
        raise SourceError("%s has no readable frames" % path)


def _detector_from_args(a, cfg=None):
    """scan's detector: the kiosk config's detector section when `cfg` (the loaded --config) is given."""
    from .detector import DetectorOptions, load_detector

    if cfg is not None:
        d = cfg.detector
        opts = DetectorOptions.from_config(d)
        model_dir = d.model_dir
    else:
        sizes = tuple(a.tile_size)
        opts = DetectorOptions(
            confidence=a.confidence,
            mode=a.mode,
            upscale=a.upscale,
            tile_size=sizes[0],
            tile_sizes=sizes,
            tile_max_face=a.tile_max_face,
            min_face_px=a.min_face_px,
            backend=a.backend,
            precision=a.precision,
            fallback=False,
            converted_dir=a.converted_dir,
        )
        model_dir = None
    return load_detector(Path(model_dir) if model_dir else None, opts)


def _classifier_from_args(a, no_face_threshold: Optional[float] = None):
    """The bundle's classifier; `no_face_threshold` replaces its operating point's (a detector setting's own)."""
    import dataclasses

    from .bundle import load_bundle
    from .classifier import MaskClassifier
    from .pipeline import default_bundle_path

    bundle = load_bundle(Path(a.bundle) if a.bundle else default_bundle_path())
    if no_face_threshold is not None and bundle.operating_point.no_face_threshold is not None:
        bundle.operating_point = dataclasses.replace(bundle.operating_point, no_face_threshold=no_face_threshold)
    return MaskClassifier(bundle, a.variant, {"threads": a.threads})


def _check_scan_args(a) -> None:
    """Out-of-range --confidence / --no-face-threshold / --min-face-px / --upscale / --tile-max-face / --tile-size
    are refused in one line, before any config or model loads: by the kiosk config's own limits for the same
    keys (edge.config: one schema)."""
    from .config import SCHEMA, TILE_SIZE_LIMITS, tile_size_ok

    for flag, section, key in (
        ("--confidence", "detector", "confidence"),
        ("--no-face-threshold", "classifier", "no_face_threshold"),
        ("--min-face-px", "detector", "min_face_px"),
        ("--upscale", "detector", "upscale"),
        ("--tile-max-face", "detector", "tile_max_face"),
    ):
        value = getattr(a, key)
        err = SCHEMA[section][key].check(value)
        if err:
            raise MaskwatchError("%s %s: %s (as %s.%s in a config)" % (flag, value, err, section, key), EX_USAGE)
    bad = [t for t in a.tile_size if not tile_size_ok(t)]
    if bad:
        raise MaskwatchError("--tile-size %s: each must be %d-%d pixels" % (bad[0], *TILE_SIZE_LIMITS), EX_USAGE)


def scan_models(a) -> Tuple[Any, Any]:
    """(detector, classifier) of `edge-maskd scan` for its parsed arguments `a` (build_parser), the kiosk config's
    detector and rejector threshold with --config: the scan a benchmark measures is the one a user runs."""
    from .config import load_config

    _check_scan_args(a)
    cfg = load_config(a.config, {"source": {"url": "unused"}}) if a.config else None
    # the rejector threshold: the kiosk config's (or the bundle's) with --config, else --no-face-threshold
    no_face_threshold = cfg.classifier.no_face_threshold if cfg is not None else float(a.no_face_threshold)
    return _detector_from_args(a, cfg), _classifier_from_args(a, no_face_threshold)


def cmd_scan(a) -> int:
    import dataclasses

    det, clf = scan_models(a)
    failures = 0
    drawn: Dict[str, int] = {}  # a stem met again (photo.jpg in two folders) draws to photo-2-*.png, not over it
    for path in expand_folders(a.paths):  # a folder: the photos in it and below it, in name order
        drawn[path.stem] = drawn.get(path.stem, 0) + 1
        stem = path.stem if drawn[path.stem] == 1 else "%s-%d" % (path.stem, drawn[path.stem])
        try:
            for idx, img in _iter_frames(path, a.every, a.max_pixels):
                found = det.detect(img)
                faces = [
                    dataclasses.replace(f, box=clf.face_box(d.box, img.shape))
                    for f, d in zip(clf.classify(img, found), found)
                ]
                if not a.rejected:  # what the rejector calls not a face is no face, as in the daemon
                    keep = [i for i, f in enumerate(faces) if f.label != "no_face"]
                    faces, found = [faces[i] for i in keep], [found[i] for i in keep]
                if a.draw:
                    _draw(img, faces, Path(a.draw) / ("%s-%06d.png" % (stem, idx)))
                for f, d in zip(faces, found):
                    print(
                        json.dumps(
                            {
                                "file": str(path),
                                "frame": idx,
                                "box": list(f.box),
                                "detector_box": list(d.box),
                                "label": f.label,
                                "score": round(f.score, 4),
                                "probs": f.probs,
                                "no_face": f.no_face,
                                "det_score": round(f.det_score, 4),
                            }
                        ),
                        flush=True,
                    )
                if not faces and a.verbose:
                    print(json.dumps({"file": str(path), "frame": idx, "faces": 0}), flush=True)
        except SourceError as exc:
            print("edge-maskd scan: %s" % exc, file=sys.stderr)
            failures += 1
    return 1 if failures else 0


LABEL_COLOURS = {
    "with_mask": (60, 180, 60),
    "without_mask": (40, 40, 220),
    "mask_weared_incorrect": (0, 165, 255),
    "no_face": (160, 160, 160),
}


def _draw(img, faces, out: Path) -> None:
    """A copy of the frame with each face's box and verdict, for a person to look at."""
    import cv2

    out.parent.mkdir(parents=True, exist_ok=True)
    canvas = img.copy()
    for f in faces:
        colour = LABEL_COLOURS.get(f.label, (200, 200, 200))
        x1, y1, x2, y2 = f.box
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, 2)
        text = "%s %.2f" % (f.label.replace("mask_weared_incorrect", "incorrect").replace("_", " "), f.score)
        cv2.putText(canvas, text, (x1, max(10, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1, cv2.LINE_AA)
    if not cv2.imwrite(str(out), canvas):
        raise SourceError("cannot write %s" % out)


MIN_CROP_PX = 12  # classify: smaller images are refused (the detector keeps faces from 20 px by default)


def cmd_classify(a) -> int:
    from .crop import photo_face
    from .datasets_io import read_image, unreadable_reason
    from .detector import PHOTO_FACE_CONFIDENCE, load_detector, photo_face_options

    clf = _classifier_from_args(a)
    # images are face crops, classified whole; with --find-face each is a photo of one person whose face is found
    # and cut as the folder-per-class training photos were (edge.crop.photo_face). Not the default: on a tight
    # crop res10 finds a part of the face (the mask, the chin) and that part alone would be classified
    det = load_detector(None, photo_face_options(fallback=False)) if a.find_face else None
    failures = 0
    for p in expand_folders(a.paths):  # a folder: the photos in it and below it, in name order
        try:
            img = read_image(p, a.max_pixels)
        except SourceError as exc:
            print("edge-maskd classify: error: %s" % exc, file=sys.stderr)
            failures += 1
            continue
        if img is None:
            print("edge-maskd classify: %s" % unreadable_reason(p), file=sys.stderr)
            failures += 1
            continue
        if min(img.shape[:2]) < MIN_CROP_PX:
            # a few pixels hold no face; upscaled to the model's input they were called confidently anyway
            print(
                "edge-maskd classify: %s is %d x %d px, too small for a face crop (at least %d px a side)"
                % (p, img.shape[1], img.shape[0], MIN_CROP_PX),
                file=sys.stderr,
            )
            failures += 1
            continue
        faces = det.detect(img) if det is not None else []
        crop, box, how = photo_face(img, faces, clf.margin, clf.size, clf.bundle.box_fit, PHOTO_FACE_CONFIDENCE)
        # a found face is seen as scan and the daemon see it (the operating point's views of its box, of which
        # the first is `crop`); a whole image has nothing around it to take other views from
        views = clf.preprocess_views(img, [box], detector=True) if how == "detector" else crop[None]
        v = clf.postprocess(clf.probs(views))[0]
        out = {
            "file": str(p),
            "label": v.label,
            "score": round(v.score, 4),
            "probs": v.probs,
            "alert": v.alert,
            "face": how,  # detector: res10 found the face and it was cut out; whole: the image as it is
            "box": list(clf.face_box(box, img.shape) if how == "detector" else box),
        }
        if "no_face" in clf.output_labels:
            out["no_face"] = v.no_face
        print(json.dumps(out), flush=True)
    return 1 if failures else 0


# -- assets, config, demo, engine ----------------------------------------------------------------------------
def cmd_assets(a) -> int:
    from . import assets

    cache = Path(a.dir) if a.dir else assets.default_cache_dir()
    names = [x.name for x in assets.DETECTOR_ASSETS] + (["astronaut.png"] if a.demo else [])
    if a.action == "verify":
        for n in names:
            if not (cache / n).exists():
                raise MaskwatchError("%s is missing; run `edge-maskd assets fetch`" % (cache / n), EX_UNAVAILABLE)
            assets.verify_file(assets.ALL_ASSETS[n], cache / n)
            print("%s: ok" % (cache / n))
        return 0
    paths = assets.fetch_all(
        names,
        cache,
        timeout=a.timeout,
        local_dir=Path(a.from_dir) if a.from_dir else None,
        allow_network=not a.offline,
        progress=lambda m: print(m, file=sys.stderr),
    )
    for p in paths:
        print(p)
    return 0


def cmd_check_config(a) -> int:
    from .config import load_config

    cfg = load_config(a.config)
    print("%s: ok (site %s, source %s, mqtt %s)" % (a.config, cfg.site, cfg.source.url, cfg.mqtt.host or "stdout"))
    return 0


def cmd_demo(a) -> int:
    from . import assets, demo

    cache = assets.default_cache_dir()
    face = assets.fetch(assets.DEMO_FACE, cache, timeout=a.timeout)
    out = demo.make_clip(face, Path(a.out), fps=a.fps, seconds=a.seconds)
    print(out)
    return 0


def cmd_build_engine(a) -> int:
    import numpy as np

    from .backends import BackendUnavailable
    from .backends.tensorrt import build_engine
    from .bundle import load_bundle
    from .config import load_config
    from .pipeline import default_bundle_path, engine_path

    cfg = load_config(a.config, {"source": {"url": "unused"}}) if a.config else None
    if a.detector:
        return _build_detector_engine(a, cfg)
    bpath = (
        Path(a.bundle)
        if a.bundle
        else (Path(cfg.classifier.bundle) if cfg and cfg.classifier.bundle else default_bundle_path())
    )
    bundle = load_bundle(bpath)
    onnx = bundle.variant("onnx")
    onnx_file = bundle.checked_file(onnx)
    out = (
        Path(a.out) if a.out else engine_path(cfg or build({"source": {"url": "unused"}}), bundle.model_id, a.precision)
    )
    calib = None
    if a.precision == "int8":
        if not a.calib_dir:
            raise MaskwatchError(
                "int8 needs --calib-dir with face crops (a few hundred, from this camera ideally)", EX_USAGE
            )
        from .crop import resize_rgb  # the one crop rule, as the device classifies
        from .datasets_io import read_image

        files = sorted(p for p in Path(a.calib_dir).iterdir() if p.suffix.lower() in IMAGE_EXTS)[: a.calib_count]
        imgs = [read_image(p) for p in files]
        calib = np.stack([resize_rgb(i, bundle.input_size) for i in imgs if i is not None])
    try:
        build_engine(
            onnx_file,
            out,
            a.precision,
            max_batch=a.max_batch,
            calib_images=calib,
            calib_cache=out.with_suffix(".calib") if calib is not None else None,
        )
    except BackendUnavailable as exc:
        raise MaskwatchError("cannot build a TensorRT engine on this machine: %s" % exc, EX_UNAVAILABLE)
    print(out)
    return 0


def _build_detector_engine(a, cfg) -> int:
    """res10 TensorRT engine on the Jetson: from the ONNX rebuilt from the Caffe weights (made here if absent)."""
    from .assets import detector_paths
    from .backends import BackendUnavailable
    from .backends.tensorrt import build_engine
    from .detector_bundle import checked_variant, export_onnx, find_dir, read
    from .pipeline import detector_engine_path

    cfg = cfg or build({"source": {"url": "unused"}})
    d = cfg.detector
    proto, weights = detector_paths(Path(d.model_dir) if d.model_dir else None)
    conv = find_dir(weights, Path(d.converted_dir) if d.converted_dir else None)
    if "onnx_fp32" not in (read(conv).get("variants") or {}):
        export_onnx(conv, proto, weights)
    onnx_file, _ = checked_variant(conv, "onnx_fp32", weights)
    size = int(a.input_size or d.input_size)
    out = Path(a.out) if a.out else (Path(d.engine) if d.engine else detector_engine_path(cfg, size, a.precision))
    if a.precision == "int8":
        raise MaskwatchError(
            "the detector engine is built fp16 or fp32 (int8 calibration of res10 is the TFLite "
            "path: edge-export detector --int8)",
            EX_USAGE,
        )
    try:
        build_engine(onnx_file, out, a.precision, input_shape=(1, 3, size, size))
    except BackendUnavailable as exc:
        raise MaskwatchError("cannot build a TensorRT engine on this machine: %s" % exc, EX_UNAVAILABLE)
    print(out)
    return 0


def cmd_detector_export(a) -> int:
    """The device step of the detector conversion: res10 -> ONNX beside the originals (no TensorFlow)."""
    from .assets import detector_paths
    from .detector_bundle import export_onnx, find_dir

    proto, weights = detector_paths(Path(a.model_dir) if a.model_dir else None)
    out = export_onnx(find_dir(weights, Path(a.out) if a.out else None), proto, weights)
    print(out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-maskd", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--version", action="version", version="maskwatch %s" % __version__)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("run", help="run the daemon")
    s.add_argument("--config", required=True)
    s.add_argument("--source", default=None, help="override source.url")
    s.add_argument("--max-frames", type=at_least(1), default=None)
    s.add_argument("--log-level", default=None)
    s.set_defaults(fn=cmd_run)

    def model_args(s):
        s.add_argument("--bundle", default=None, help="model bundle directory (default: the shipped one)")
        s.add_argument("--variant", default=None, help="manifest variant (default: tflite_int8)")
        s.add_argument("--threads", type=at_least(1), default=2)
        s.add_argument(
            "--max-pixels",
            type=int,
            default=MAX_PIXELS,
            help="refuse photos whose header declares more pixels (default %d: a decompression "
            "bomb is never decoded)" % MAX_PIXELS,
        )

    s = sub.add_parser("scan", help="detect + classify faces in images/videos; JSON lines on stdout")
    s.add_argument("paths", nargs="+")
    model_args(s)
    s.add_argument(
        "--config",
        default=None,
        help="take the detector settings and classifier.no_face_threshold from a kiosk config instead",
    )
    s.add_argument(
        "--mode",
        choices=DETECTOR_MODES,
        default=SCAN.mode,
        help="detector passes (default %s: one pass at the photo's own resolution, and the tiles too when it shows "
        "small faces or no sure one; native: never the tiles; tiles: always)" % SCAN.mode,
    )
    s.add_argument(
        "--confidence",
        type=float,
        default=SCAN.confidence,
        help="res10's score floor (default %s: with the no_face rejector, the best over all faces of held-out "
        "real scenes; the kiosk config uses its own)" % SCAN.confidence,
    )
    s.add_argument(
        "--no-face-threshold",
        type=float,
        default=SCAN.no_face_threshold,
        help="a detection whose P(no_face) reaches this is not a face (default %s, chosen with --confidence %s; "
        "the bundle's own value is for face crops)" % (SCAN.no_face_threshold, SCAN.confidence),
    )
    s.add_argument(
        "--rejected",
        action="store_true",
        help="also print the detections the no_face rejector took for not a face (label no_face)",
    )
    s.add_argument("--upscale", type=float, default=_D.upscale)
    s.add_argument(
        "--tile-size",
        type=int,
        nargs="+",
        default=list(SCAN.tile_sizes),
        help="with --mode tiles or auto: tile size(s) in pixels (default %s: the best tiles on the "
        "validation crowd photos, ~1 s per photo on 2 cores; 300 is ~7x faster)" % " ".join(map(str, SCAN.tile_sizes)),
    )
    s.add_argument(
        "--tile-max-face",
        type=float,
        default=_D.tile_max_face,
        help="in magnified tiles keep faces up to this fraction of the tile side",
    )
    s.add_argument(
        "--min-face-px",
        type=int,
        default=SCAN.min_face_px,
        help="drop smaller faces (default %d; the kiosk config keeps its own)" % SCAN.min_face_px,
    )
    s.add_argument(
        "--backend",
        default=_D.backend,
        choices=DETECTOR_BACKENDS,
        help="face-detector runtime (converted files from detector-export / edge-export detector)",
    )
    s.add_argument("--precision", default=_D.precision, choices=("fp32", "int8"), help="litert detector: fp32 or int8")
    s.add_argument("--converted-dir", default=None, help="converted res10 files (default <asset dir>/res10-converted)")
    s.add_argument("--every", type=at_least(1), default=1, help="videos: every Nth frame")
    s.add_argument(
        "--draw",
        default=None,
        metavar="DIR",
        help="also write each scanned frame with boxes and verdicts into DIR, to look at",
    )
    s.add_argument("-v", "--verbose", action="store_true", help="also print frames with no face")
    s.set_defaults(fn=cmd_scan)

    s = sub.add_parser("classify", help="classify images that are already face crops (or, --find-face, photos)")
    s.add_argument("paths", nargs="+")
    model_args(s)
    s.add_argument(
        "--find-face",
        action="store_true",
        help="each image is a photo of one person (head and shoulders, a selfie): classify the face res10 finds in "
        "it, cut as the training photos were, or the whole image where it finds none",
    )
    s.set_defaults(fn=cmd_classify)

    s = sub.add_parser("assets", help="fetch or verify the res10 face detector files")
    s.add_argument("action", choices=("fetch", "verify"))
    s.add_argument("--dir", default=None, help="cache directory (default $MASKWATCH_CACHE or ~/.cache/maskwatch)")
    s.add_argument("--from", dest="from_dir", default=None, help="take the files from this folder first")
    s.add_argument("--offline", action="store_true", help="no network: only --from and the cache")
    s.add_argument("--timeout", type=at_least(0.1, float), default=10.0)
    s.add_argument("--demo", action="store_true", help="also the demo portrait")
    s.set_defaults(fn=cmd_assets)

    s = sub.add_parser("check-config", help="validate a kiosk config")
    s.add_argument("config")
    s.set_defaults(fn=cmd_check_config)

    s = sub.add_parser("demo", help="make the demo entrance clip")
    s.add_argument("--out", default="demo/entrance.mp4")
    s.add_argument("--fps", type=at_least(1.0, float), default=15.0)
    s.add_argument("--seconds", type=at_least(1.0, float), default=18.0)
    s.add_argument("--timeout", type=at_least(0.1, float), default=10.0)
    s.set_defaults(fn=cmd_demo)

    s = sub.add_parser("build-engine", help="build the TensorRT engine from the bundle's ONNX (on the Jetson)")
    s.add_argument("--config", default=None)
    s.add_argument("--bundle", default=None)
    s.add_argument("--precision", choices=("fp16", "int8", "fp32"), default="fp16")
    s.add_argument("--out", default=None)
    s.add_argument("--max-batch", type=at_least(1), default=8)
    s.add_argument("--calib-dir", default=None)
    s.add_argument("--calib-count", type=at_least(1), default=500)
    s.add_argument("--detector", action="store_true", help="build the res10 face detector's engine instead")
    s.add_argument(
        "--input-size", type=int, default=None, help="--detector: square input (default detector.input_size)"
    )
    s.set_defaults(fn=cmd_build_engine)

    s = sub.add_parser(
        "detector-export",
        help="convert res10 to ONNX beside the Caffe files (for the onnxruntime "
        "and tensorrt detector backends; no TensorFlow needed)",
    )
    s.add_argument("--model-dir", default=None, help="folder with deploy.prototxt + caffemodel (default: asset cache)")
    s.add_argument("--out", default=None, help="converted files folder (default <asset dir>/res10-converted)")
    s.set_defaults(fn=cmd_detector_export)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    # OpenCV and FFmpeg print a warning on every failed camera reconnect; our own log says it once.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    args = build_parser().parse_args(argv)
    if args.cmd != "run":
        _setup_logging("WARNING")
    try:
        return int(args.fn(args) or 0)
    except MaskwatchError as exc:
        print("edge-maskd: error: %s" % exc, file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
