"""The kiosk's YAML config, validated at start (as Frigate validates its config).

Unknown keys are rejected (a typo must not silently fall back to a default), and
every error names the file, the line, the key path, the value and what is allowed.
A config error exits with status 78 (EX_CONFIG), which the systemd unit lists in
RestartPreventExitStatus so a broken config does not restart-loop.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import yaml

from .errors import ConfigError


@dataclass
class F:
    """One config field: allowed type(s), default, and limits."""

    types: Tuple[type, ...]
    default: Any = None
    choices: Optional[Sequence[Any]] = None
    min: Optional[float] = None
    max: Optional[float] = None
    help: str = ""
    nullable: bool = True


def f(types, default=None, **kw) -> F:
    return F(types if isinstance(types, tuple) else (types,), default, **kw)


NUM = (int, float)
BACKENDS = ("litert", "edgetpu", "onnxruntime", "tensorrt")

SCHEMA: Dict[str, Any] = {
    "site": f(str, "site", nullable=False, help="site name, a topic level: maskwatch/<site>/<device>/"),
    "device": f(str, None, help="device name (default: the host name)"),
    "state_dir": f(str, None, help="spool, engine cache (default: $STATE_DIRECTORY or ~/.local/state/maskwatch)"),
    "log_level": f(str, "INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR")),
    "source": {
        "url": f((str, int), None, nullable=False,
                 help="video file, camera index, /dev/videoN, rtsp:// or http:// URL, or a GStreamer pipeline"),
        "type": f(str, "auto", choices=("auto", "file", "camera", "v4l2", "rtsp", "http", "gstreamer", "csi")),
        "width": f(int, None, min=16), "height": f(int, None, min=16), "fps": f(NUM, None, min=0.1),
        "loop": f(bool, False, help="restart a file source at its end (demos)"),
        "realtime": f(bool, False, help="play a file source at its frame rate (demos, replay tests)"),
        "drop_late": f(bool, False, help="with realtime: skip frames the pipeline is too slow for, like a camera"),
        "reconnect_initial_s": f(NUM, 1.0, min=0.05), "reconnect_max_s": f(NUM, 30.0, min=0.1),
        "max_frames": f(int, None, min=1, help="stop after this many frames (tests, benchmarks)"),
    },
    "detector": {
        "model_dir": f(str, None, help="folder with deploy.prototxt + caffemodel (default: the asset cache)"),
        "confidence": f(NUM, 0.5, min=0.05, max=1.0),
        "mode": f(str, "single", choices=("single", "native", "tiles")),
        "input_size": f(int, 300, min=64, max=1024),
        "upscale": f(NUM, 1.0, min=0.25, max=4.0),
        "tile_size": f(int, 300, min=64), "tile_overlap": f(NUM, 0.25, min=0.0, max=0.75),
        "tile_sizes": f(list, None, help="several tile sizes in pixels, e.g. [200, 100] (overrides tile_size)"),
        "tile_max_face": f(NUM, 0.25, min=0.05, max=1.0,
                           help="in magnified tiles keep faces up to this fraction of the tile side"),
        "min_face_px": f(int, 20, min=0),
        "roi": f(list, None, help="[x1, y1, x2, y2] doorway region, fractions of the frame (0..1)"),
        "backend": f(str, "opencv", choices=("opencv", "cpu", "opencv-cuda", "cuda", "onnxruntime", "litert",
                                             "edgetpu", "tensorrt"),
                     help="res10 runtime (cpu = opencv, cuda = opencv-cuda); the others load converted files"),
        "precision": f(str, "fp32", choices=("fp32", "int8"), help="litert: the converted file of that precision"),
        "converted_dir": f(str, None, help="converted res10 files + detector-manifest.json (default: "
                                           "<asset dir>/res10-converted)"),
        "engine": f(str, None, help="tensorrt: engine file (default <state_dir>/engines/res10-<W>x<H>-fp16.engine)"),
        "fallback_to_cpu": f(bool, True, help="a missing detector runtime falls back to opencv on the CPU"),
        "every_n_frames": f(int, 1, min=1, help="run the detector on every Nth frame; the tracker carries faces"),
    },
    "motion": {
        "enabled": f(bool, True),
        "threshold": f(int, 25, min=1, max=255, help="grey-level difference that counts as change"),
        "min_area": f(NUM, 0.002, min=0.0, max=1.0, help="fraction of the frame that must change"),
        "downscale_width": f(int, 160, min=32),
        "max_idle_frames": f(int, 30, min=1, help="run the detector at least this often even without motion"),
        "decided_stride": f(int, 2, min=1, max=10,
                            help="with motion but only decided people in view, run the detector every Nth frame"),
    },
    "classifier": {
        "bundle": f(str, None, help="model bundle directory (default: the one shipped in models/)"),
        "variant": f(str, None, help="variant key from the manifest (default: the manifest's default_variant)"),
        "backend": f(str, None, choices=BACKENDS, help="override the variant's runtime"),
        "threads": f(int, 2, min=1, max=64),
        "no_face_threshold": f(NUM, None, min=0.05, max=1.0,
                               help="reject detections with P(no_face) >= this (default: the bundle's operating point)"),
        "batch": f(int, 8, min=1, max=64),
        "fallback_to_cpu": f(bool, True),
        "engine": f(str, None, help="TensorRT engine path (default: <state_dir>/engines/<model_id>-<engine_precision>.engine)"),
        "engine_precision": f(str, "fp16", choices=("fp16", "int8", "fp32"),
                              help="which engine `edge-maskd build-engine --precision` made"),
        "onnx_providers": f(list, None),
        "edgetpu_device": f(str, None),
    },
    "tracker": {
        "iou": f(NUM, 0.3, min=0.0, max=1.0),
        "max_missed": f(int, 15, min=1, help="frames a track survives without a detection"),
        "votes": f(int, 5, min=1, help="classified frames needed before a verdict"),
        "min_agreement": f(NUM, 0.6, min=0.0, max=1.0, help="share of votes the winning class must have"),
        "min_confidence": f(NUM, 0.5, min=0.0, max=1.0, help="mean probability of the winning class"),
        "decide_on_exit": f(bool, True, help="a person who leaves before enough votes still gets a verdict"),
        "min_votes_on_exit": f(int, 2, min=1),
        "max_votes": f(int, 0, min=0, help="decide after this many good views even if unclear (0: 3 x votes)"),
        "margin": f(NUM, 0.2, min=0.0, max=0.5,
                    help="an early verdict needs the person's mean P(alert) this far from the threshold"),
        "border_px": f(int, 3, min=0, help="a face this close to the frame edge is cut: it casts no vote"),
        "min_vote_px": f(int, None, min=0, help="faces narrower than this cast no vote (default detector.min_face_px)"),
        "full_quality_px": f(int, 80, min=1, help="faces this wide weigh fully; smaller ones in proportion"),
    },
    "counts": {"interval_s": f(NUM, 60.0, min=1.0)},
    "stats": {"interval_s": f(NUM, 30.0, min=1.0)},
    "mqtt": {
        "host": f(str, None, help="broker host; empty: events go to stdout"),
        "port": f(int, 1883, min=1, max=65535),
        "client_id": f(str, None), "topic_prefix": f(str, "maskwatch"),
        "username": f(str, None), "password": f(str, None),
        "password_file": f(str, None, help="file with the password (systemd LoadCredential=)"),
        "password_env": f(str, "MASKWATCH_MQTT_PASSWORD"),
        "keepalive": f(int, 30, min=5), "qos": f(int, 1, choices=(0, 1, 2)),
        "protocol": f(str, "3.1.1", choices=("3.1.1", "5")),
        "tls": {"enabled": f(bool, False), "ca": f(str, None), "cert": f(str, None), "key": f(str, None),
                "insecure": f(bool, False)},
        "inflight": f(int, 20, min=1, max=1000),
    },
    "spool": {
        "path": f(str, None, help="SQLite file (default <state_dir>/spool.db)"),
        "max_events": f(int, 100000, min=10),
        "policy": f(str, "drop_oldest", choices=("drop_oldest", "refuse_new")),
    },
    "privacy": {
        "snapshots": f(bool, False, help="attach a small face snapshot to each event (off: no image leaves)"),
        "snapshot_blur": f(bool, True), "snapshot_px": f(int, 64, min=16, max=256),
    },
    "watchdog": {"stall_s": f(NUM, 10.0, min=1.0, help="no processed frame for this long stops WATCHDOG=1 pings")},
}


def defaults(schema: Dict[str, Any] = SCHEMA) -> Dict[str, Any]:
    return {k: (defaults(v) if isinstance(v, dict) else v.default) for k, v in schema.items()}


def _mark(node) -> str:
    return "line %d" % (node.start_mark.line + 1) if node is not None and node.start_mark else "?"


def _construct(node) -> Any:
    """The Python value of a YAML node (safe constructors only)."""
    return yaml.SafeLoader("").construct_object(node, deep=True)


def _validate(node, schema: Dict[str, Any], path: str, fname: str, out: Dict[str, Any], errors: List[str]) -> None:
    if not isinstance(node, yaml.MappingNode):
        errors.append("%s:%s: %s must be a mapping of keys" % (fname, _mark(node), path or "the top level"))
        return
    for knode, vnode in node.value:
        key = knode.value
        kp = "%s.%s" % (path, key) if path else key
        if key not in schema:
            allowed = ", ".join(sorted(schema))
            errors.append("%s:%s: unknown key %s (allowed here: %s)" % (fname, _mark(knode), kp, allowed))
            continue
        spec = schema[key]
        if isinstance(spec, dict):
            if isinstance(vnode, yaml.ScalarNode) and vnode.tag.endswith(":null"):
                continue
            _validate(vnode, spec, kp, fname, out[key], errors)
            continue
        value = _construct(vnode)
        err = check_value(spec, value)
        if err:
            errors.append("%s:%s: %s = %r: %s" % (fname, _mark(vnode), kp, value, err))
        else:
            out[key] = value


def check_value(spec: F, value: Any) -> Optional[str]:
    if value is None:
        return None if spec.nullable else "a value is required"
    ok = isinstance(value, spec.types) and not (isinstance(value, bool) and bool not in spec.types)
    if not ok and float in spec.types and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        return "expected %s" % " or ".join(t.__name__ for t in spec.types)
    if spec.choices is not None and value not in spec.choices:
        return "allowed: %s" % ", ".join(str(c) for c in spec.choices)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if spec.min is not None and value < spec.min:
            return "must be >= %s" % spec.min
        if spec.max is not None and value > spec.max:
            return "must be <= %s" % spec.max
    return None


def load_config(path: Union[str, Path], overrides: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Read, validate and fill defaults; raise ConfigError listing every problem found."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError("config file %s not found (create it from firmware-config/kiosk.example.yaml)" % path)
    except OSError as exc:
        raise ConfigError("config file %s cannot be read: %s" % (path, exc.strerror or exc))
    try:
        node = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = "line %d" % (mark.line + 1) if mark else "?"
        raise ConfigError("%s:%s: not valid YAML (%s)" % (path, where, getattr(exc, "problem", exc)))
    cfg = defaults()
    errors: List[str] = []
    if node is not None:
        _validate(node, SCHEMA, "", str(path), cfg, errors)
    if overrides:
        merge(cfg, overrides)
    errors += semantic_errors(cfg, str(path))
    if errors:
        raise ConfigError("; ".join(errors) if len(errors) < 2 else "%d problems: %s" % (len(errors), "; ".join(errors)))
    return cfg


def merge(cfg: Dict[str, Any], overrides: Dict[str, Any]) -> None:
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            merge(cfg[k], v)
        else:
            cfg[k] = v


def semantic_errors(cfg: Dict[str, Any], fname: str) -> List[str]:
    errors = []
    if cfg["source"]["url"] is None:
        errors.append("%s: source.url is required (a video file, camera index, device or URL)" % fname)
    roi = cfg["detector"]["roi"]
    if roi is not None:
        if (len(roi) != 4 or not all(isinstance(v, (int, float)) for v in roi)
                or not (0 <= roi[0] < roi[2] <= 1 and 0 <= roi[1] < roi[3] <= 1)):
            errors.append("%s: detector.roi = %r: expected [x1, y1, x2, y2] fractions with 0 <= x1 < x2 <= 1"
                          % (fname, roi))
    ts = cfg["detector"]["tile_sizes"]
    if ts is not None and (not ts or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 32 for v in ts)):
        errors.append("%s: detector.tile_sizes = %r: expected a list of tile sizes in pixels (integers >= 32), "
                      "e.g. [200, 100]" % (fname, ts))
    tls = cfg["mqtt"]["tls"]
    for key in ("ca", "cert", "key"):  # ${CREDENTIALS_DIRECTORY}/client.key etc. work too
        if tls[key]:
            tls[key] = os.path.expandvars(tls[key])
    for key in ("ca", "cert", "key"):
        if tls[key] and not Path(tls[key]).exists():
            errors.append("%s: mqtt.tls.%s = %r: file not found" % (fname, key, tls[key]))
    if bool(tls["cert"]) != bool(tls["key"]):
        errors.append("%s: mqtt.tls.cert and mqtt.tls.key go together" % fname)
    pf = cfg["mqtt"]["password_file"]
    if pf and not Path(os.path.expandvars(pf)).exists():
        errors.append("%s: mqtt.password_file = %r: file not found" % (fname, pf))
    for k in ("site", "device"):
        v = cfg.get(k)
        if v is not None and any(c in str(v) for c in "/+#"):
            errors.append("%s: %s = %r: must not contain / + or # (it is an MQTT topic level)" % (fname, k, v))
    return errors


def mqtt_password(cfg: Dict[str, Any]) -> Optional[str]:
    """Password from the config, else the systemd credential (LoadCredential=mqtt-password), else
    `password_file`, else the environment. An empty file means no password."""
    m = cfg["mqtt"]
    if m["password"]:
        return m["password"]
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    cred = Path(cred_dir) / "mqtt-password" if cred_dir else None
    if cred is not None and cred.exists():
        return cred.read_text().strip() or None
    if m["password_file"]:
        path = Path(os.path.expandvars(m["password_file"]))
        try:
            return path.read_text().strip() or None
        except OSError as exc:
            raise ConfigError("mqtt.password_file = %r cannot be read (%s); under systemd pass it with "
                              "LoadCredential=mqtt-password:%s and drop password_file" % (
                                  m["password_file"], exc.strerror or exc, path))
    env = m["password_env"]
    return (os.environ.get(env) or None) if env else None
