"""The kiosk's YAML config, validated at start (as Frigate validates its config).

Unknown keys are rejected (a typo must not silently fall back to a default), and
every error names the file, the line, the key path, the value and what is allowed.
A config error exits with status 78 (EX_CONFIG), which the systemd unit lists in
RestartPreventExitStatus so a broken config does not restart-loop.

The schema is the frozen dataclasses below: each key's type is its annotation, its default the
dataclass default, its limits and help the `opt(...)` metadata. Nothing else in edge/ defaults a
config key (DetectorOptions and TrackerOptions take their defaults from here). Dataclasses, not
pydantic: the device stays free of a compiled dependency (pydantic-core) on Raspberry Pi / Jetson
images, and the loader keeps YAML line numbers for every error, which a dict-to-model validator loses.
"""

from __future__ import annotations

import copy
import os
import re
import reprlib
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import yaml

from .errors import ConfigError

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # a topic level: what kiosk.example.yaml promises
NAME_RULE = "1-64 letters, digits, _ or - (one MQTT topic level: no / + # $ . or spaces)"
MAX_NUMBER = 2**31 - 1
BACKENDS = ("litert", "edgetpu", "onnxruntime", "tensorrt")
DETECTOR_MODES = ("single", "native", "tiles", "auto")
TILED_MODES = ("tiles", "auto")  # the detector modes that may run tile passes (detector.tile_sizes, tile_max_face)
TILE_SIZE_LIMITS = (32, 4096)  # detector.tile_sizes: each a tile edge in pixels within these


IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")  # photo files, by name (edge.datasets_io)


def is_still_photo(url: Any) -> bool:
    """A local path to a photo (by its extension): not a source the daemon can read frames from."""
    return isinstance(url, str) and "://" not in url and Path(url).suffix.lower() in IMAGE_EXTS


def tile_size_ok(v: Any) -> bool:
    """One entry of detector.tile_sizes: a whole number of pixels within TILE_SIZE_LIMITS."""
    return isinstance(v, int) and not isinstance(v, bool) and TILE_SIZE_LIMITS[0] <= v <= TILE_SIZE_LIMITS[1]


DETECTOR_BACKENDS = ("opencv", "cpu", "opencv-cuda", "cuda", "onnxruntime", "litert", "edgetpu", "tensorrt")


def opt(
    default: Any = None,
    *,
    choices: Optional[Sequence[Any]] = None,
    min: Optional[float] = None,
    max: Optional[float] = None,
    help: str = "",
    required: bool = False,
) -> Any:
    """A config key: its default (the schema's one source), limits and help. The type is the annotation."""
    return field(
        default=default, metadata={"choices": choices, "min": min, "max": max, "help": help, "required": required}
    )


def section(cls: type) -> Any:
    return field(default_factory=cls, metadata={"section": True})


@dataclass(frozen=True)
class SourceConfig:
    url: Union[str, int, None] = opt(
        required=True, help="video file, camera index, /dev/videoN, rtsp:// or http:// URL, or a GStreamer pipeline"
    )
    type: str = opt("auto", choices=("auto", "file", "camera", "v4l2", "rtsp", "http", "gstreamer", "csi"))
    width: Optional[int] = opt(min=16)
    height: Optional[int] = opt(min=16)
    fps: Optional[float] = opt(min=0.1)
    loop: bool = opt(False, help="restart a file source at its end (demos)")
    realtime: bool = opt(False, help="play a file source at its frame rate (demos, replay tests)")
    drop_late: bool = opt(False, help="with realtime: skip frames the pipeline is too slow for, like a camera")
    reconnect_initial_s: float = opt(1.0, min=0.05)
    reconnect_max_s: float = opt(30.0, min=0.1)
    max_frames: Optional[int] = opt(min=1, help="stop after this many frames (tests, benchmarks)")


@dataclass(frozen=True)
class DetectorConfig:
    model_dir: Optional[str] = opt(help="folder with deploy.prototxt + caffemodel (default: the asset cache)")
    confidence: float = opt(0.5, min=0.05, max=1.0)
    mode: str = opt("single", choices=DETECTOR_MODES)
    input_size: int = opt(300, min=64, max=1024)
    upscale: float = opt(
        1.0,
        min=0.25,
        max=4.0,
        help="modes native and auto: their pass runs on the frame scaled by this (sides rounded to 32; at most "
        "1920 px): above 1, res10 sees small faces larger, at the square of the cost",
    )
    flip: bool = opt(
        False, help="also detect on the mirrored frame and merge (res10 misses some masked faces one way round)"
    )
    whole_pass: bool = opt(
        False,
        help="modes native and auto: also one pass of the whole frame at input_size, merged by NMS. res10 learned "
        "faces at 300x300: at a 640x480 frame's own scale it loses faces wider than ~250 px (a visitor close to "
        "the camera), which the whole-frame pass finds",
    )
    whole_pass_min_px: int = opt(
        160,
        min=0,
        help="whole_pass: keep its boxes from this size up (shorter side, frame pixels); the native pass sees the "
        "smaller faces better",
    )
    tile_size: int = opt(300, min=64)
    tile_overlap: float = opt(0.25, min=0.0, max=0.75)
    tile_sizes: Optional[List[int]] = opt(help="several tile sizes in pixels, e.g. [200, 100] (overrides tile_size)")
    # Measured on held-out crowd photos: the "faces" res10 finds filling a magnified tile are mostly texture
    # (bags, logos, wood grain, a dog), while real faces of that size are seen by the coarser passes.
    tile_max_face: float = opt(
        0.25, min=0.05, max=1.0, help="in magnified tiles keep faces up to this fraction of the tile side"
    )
    min_face_px: int = opt(20, min=0, help="drop faces smaller than this (shorter side, frame pixels)")
    small_faces_after_s: int = opt(
        20,
        min=0,
        help="the daemon's status says the faces are too small for a verdict (degraded) once the detector was sure "
        "(score >= 0.5) of faces under min_face_px in this many seconds with no face big enough in between: a camera "
        "too far from the door, zoomed out or knocked aside, which otherwise sends nothing and looks healthy; 0: never",
    )
    auto_tiles_below_px: int = opt(
        40,
        min=8,
        max=4096,
        help="mode auto: one native pass, and the tile passes too when a face it is sure of (score >= 0.5) is "
        "smaller than this, or it is sure of none (a crowd, a wide view)",
    )
    nms_containment: float = opt(
        0.8,
        min=0.3,
        max=1.0,
        help="a box whose overlap is this share of the smaller box's area merges into the higher-scoring one "
        "(res10's low-score boxes of half a face, or of a face and its neighbourhood)",
    )
    nms_own_share: float = opt(
        1.0,
        min=0.1,
        max=1.0,
        help="a box with more than this share of its own area inside a higher-scoring kept box merges into it "
        "(1.0: off). res10's offset boxes of half a face overlap the face's box by 30-60 per cent of themselves: on "
        "val scenes 0.3 halves the false alarms at confidence 0.03-0.1 but moves no chosen setting",
    )
    nms_decay: bool = opt(
        False,
        help="after NMS, sink weak boxes over stronger ones (Soft-NMS, linear): each box's score is multiplied by "
        "(1 - its overlap / the smaller box's area) with each stronger box kept, and dropped under `confidence`. "
        "res10's weak half-face and head boxes beside a face it is sure of overlap it by 40-70 per cent of the "
        "smaller box, under nms_containment; a strong second box is kept as it is. On val kiosk scenes (session 42) it "
        "halves the false alarms at confidence 0.1 but also sinks a few faces near the floor: moves no chosen setting",
    )
    max_aspect: float = opt(
        2.2,
        min=1.0,
        max=10.0,
        help="drop boxes taller than this many times their width, unless cut by a side edge of the frame: res10's ghost "
        "boxes trailing a moving face (2.5-3.6 measured), bodies and poles; a real face's narrow half-box on val "
        "scenes measured 2.09",
    )
    roi: Optional[List[float]] = opt(help="[x1, y1, x2, y2] doorway region, fractions of the frame (0..1)")
    backend: str = opt(
        "opencv",
        choices=DETECTOR_BACKENDS,
        help="res10 runtime (cpu = opencv, cuda = opencv-cuda); the others load converted files",
    )
    precision: str = opt("fp32", choices=("fp32", "int8"), help="litert: the converted file of that precision")
    converted_dir: Optional[str] = opt(
        help="converted res10 files + detector-manifest.json (default: <asset dir>/res10-converted)"
    )
    engine: Optional[str] = opt(help="tensorrt: engine file (default <state_dir>/engines/res10-<W>x<H>-fp16.engine)")
    fallback_to_cpu: bool = opt(True, help="a missing detector runtime falls back to opencv on the CPU")
    every_n_frames: int = opt(1, min=1, help="run the detector on every Nth frame; the tracker carries faces")


@dataclass(frozen=True)
class ScanSetting:
    """`edge-maskd scan`'s defaults: every face of a photo, of any size, not only the kiosk's. Mode auto (one
    native pass, plus 200 + 100 px tiles when the photo shows small faces or no sure one) at the setting chosen on
    the validation scenes of both real scene sources (best non-compliant F1 over all faces,
    benchmarks/results/choices-val/allfaces-ens3-val-auto-d12.json, by the rule written before it in that folder's
    README) and measured once on test (benchmarks/results/allfaces-auto-d12.json, which tests/test_scan.py holds
    these to). Faces down to 12 px: 13 % of the non-compliant faces of those scenes are narrower than 20 px, and
    the magnified tiles find them; at that floor res10's own default score (0.5) with the rejector at 0.6 did best."""

    mode: str = "auto"  # native for close photos; the tiles as well for crowds and wide views
    tile_sizes: Tuple[int, ...] = (200, 100)
    confidence: float = 0.5  # res10's score floor ...
    no_face_threshold: float = 0.6  # ... and the bundle's no_face rejector removes what is not a face
    min_face_px: int = 12


SCAN = ScanSetting()


@dataclass(frozen=True)
class MotionConfig:
    enabled: bool = opt(True)
    threshold: int = opt(25, min=1, max=255, help="grey-level difference that counts as change")
    min_area: float = opt(0.002, min=0.0, max=1.0, help="fraction of the frame that must change")
    downscale_width: int = opt(160, min=32)
    max_idle_frames: int = opt(30, min=1, help="run the detector at least this often even without motion")
    decided_stride: int = opt(
        2, min=1, max=10, help="with motion but only decided people in view, run the detector every Nth frame"
    )


@dataclass(frozen=True)
class ClassifierConfig:
    bundle: Optional[str] = opt(help="model bundle directory (default: the one shipped in models/)")
    variant: Optional[str] = opt(help="variant key from the manifest (default: the manifest's default_variant)")
    backend: Optional[str] = opt(choices=BACKENDS, help="override the variant's runtime")
    threads: int = opt(2, min=1, max=64)
    no_face_threshold: Optional[float] = opt(
        min=0.05, max=1.0, help="reject detections with P(no_face) >= this (default: the bundle's operating point)"
    )
    batch: int = opt(8, min=1, max=64, help="largest batch of face crops per inference call")
    fallback_to_cpu: bool = opt(True)
    engine: Optional[str] = opt(
        help="TensorRT engine path (default: <state_dir>/engines/<model_id>-<engine_precision>.engine)"
    )
    engine_precision: str = opt(
        "fp16", choices=("fp16", "int8", "fp32"), help="which engine `edge-maskd build-engine --precision` made"
    )
    onnx_providers: Optional[List[str]] = opt()
    edgetpu_device: Optional[str] = opt()


@dataclass(frozen=True)
class TrackerConfig:
    iou: float = opt(0.3, min=0.0, max=1.0)
    max_missed: int = opt(15, min=1, help="frames a track survives without a detection")
    votes: int = opt(5, min=1, help="good views needed before an early verdict")
    min_agreement: float = opt(0.6, min=0.0, max=1.0, help="share of good views whose own verdict matches")
    min_confidence: float = opt(
        0.5, min=0.0, max=1.0, help="mean probability of the winning class (no operating point in the bundle)"
    )
    decide_on_exit: bool = opt(True, help="a person who leaves before enough votes still gets a verdict")
    min_votes_on_exit: int = opt(2, min=1)
    max_votes: int = opt(0, min=0, help="decide after this many good views even if unclear (0: 3 x votes)")
    margin: float = opt(
        0.2, min=0.0, max=0.5, help="an early verdict needs the person's mean P(alert) this far from the threshold"
    )
    border_px: int = opt(3, min=0, help="a face this close to the frame edge is cut: it casts no vote")
    min_vote_px: Optional[int] = opt(min=0, help="faces narrower than this cast no vote (default detector.min_face_px)")
    full_quality_px: int = opt(80, min=1, help="faces this wide weigh fully; smaller ones in proportion")
    new_track_overlap: float = opt(
        0.3,
        min=0.0,
        max=1.0,
        help="a detection with this share of its box on a face already followed in the same frame starts no new "
        "person (a codec ghost trailing a moving face, res10's second box of one face); 1: off",
    )
    alert_threshold: Optional[float] = opt(
        min=0.0,
        max=1.0,
        help="the person's operating point: flag a person when the mean P(without) + P(incorrect) over their views "
        "reaches this (empty: the bundle's per-crop alert threshold)",
    )
    incorrect_weight: Optional[float] = opt(
        min=0.0,
        max=100.0,
        help="a flagged person is mask_weared_incorrect when this x mean P(incorrect) >= mean P(without) (empty: "
        "the bundle's)",
    )


@dataclass(frozen=True)
class CountsConfig:
    interval_s: float = opt(60.0, min=1.0)


@dataclass(frozen=True)
class StatsConfig:
    interval_s: float = opt(30.0, min=1.0)


@dataclass(frozen=True)
class TlsConfig:
    enabled: bool = opt(False)
    ca: Optional[str] = opt()
    cert: Optional[str] = opt()
    key: Optional[str] = opt()
    insecure: bool = opt(False)


@dataclass(frozen=True)
class MqttConfig:
    host: Optional[str] = opt(help="broker host; empty: events go to stdout")
    port: int = opt(1883, min=1, max=65535)
    client_id: Optional[str] = opt()
    topic_prefix: str = opt("maskwatch")
    username: Optional[str] = opt()
    password: Optional[str] = opt()
    password_file: Optional[str] = opt(help="file with the password (systemd LoadCredential=)")
    password_env: Optional[str] = opt("MASKWATCH_MQTT_PASSWORD")
    keepalive: int = opt(30, min=5)
    qos: int = opt(1, choices=(0, 1, 2))
    protocol: str = opt("3.1.1", choices=("3.1.1", "5"))
    tls: TlsConfig = section(TlsConfig)
    inflight: int = opt(20, min=1, max=1000)


@dataclass(frozen=True)
class SpoolConfig:
    path: Optional[str] = opt(help="SQLite file (default <state_dir>/spool.db)")
    max_events: int = opt(100000, min=10, help="cap in messages (events and counts)")
    max_bytes: int = opt(256 * 1024 * 1024, min=64 * 1024, help="cap in bytes (events with snapshots are larger)")
    policy: str = opt("drop_oldest", choices=("drop_oldest", "refuse_new"))


@dataclass(frozen=True)
class PrivacyConfig:
    snapshots: bool = opt(False, help="attach a small face snapshot to each event (off: no image leaves)")
    snapshot_blur: bool = opt(True)
    snapshot_px: int = opt(64, min=16, max=256)


@dataclass(frozen=True)
class WatchdogConfig:
    stall_s: float = opt(10.0, min=1.0, help="no processed frame for this long stops WATCHDOG=1 pings")


@dataclass(frozen=True)
class Config:
    """The whole kiosk config. Every default here is the schema's: nothing else re-defaults a key."""

    site: str = opt("site", help="site name, a topic level: maskwatch/<site>/<device>/ (%s)" % NAME_RULE)
    device: Optional[str] = opt(help="device name (default: the host name)")
    state_dir: Optional[str] = opt(help="spool, engine cache (default: $STATE_DIRECTORY or ~/.local/state/maskwatch)")
    log_level: str = opt("INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    source: SourceConfig = section(SourceConfig)
    detector: DetectorConfig = section(DetectorConfig)
    motion: MotionConfig = section(MotionConfig)
    classifier: ClassifierConfig = section(ClassifierConfig)
    tracker: TrackerConfig = section(TrackerConfig)
    counts: CountsConfig = section(CountsConfig)
    stats: StatsConfig = section(StatsConfig)
    mqtt: MqttConfig = section(MqttConfig)
    spool: SpoolConfig = section(SpoolConfig)
    privacy: PrivacyConfig = section(PrivacyConfig)
    watchdog: WatchdogConfig = section(WatchdogConfig)


# -- the schema, read off the dataclasses -------------------------------------------------------------------
class Key:
    """One key as the loader sees it: allowed types and limits, from the annotation and `opt` metadata."""

    def __init__(self, name: str, hint: Any, meta: Dict[str, Any], default: Any) -> None:
        self.name, self.default = name, default
        args = typing.get_args(hint) if typing.get_origin(hint) is Union else (hint,)
        self.nullable = type(None) in args  # a required key's None is reported by semantic_errors
        self.types = tuple(typing.get_origin(a) or a for a in args if a is not type(None))
        self.item = next((typing.get_args(a)[0] for a in args if typing.get_origin(a) is list), None)
        self.choices, self.min, self.max = meta.get("choices"), meta.get("min"), meta.get("max")
        self.help = meta.get("help", "")

    def check(self, value: Any) -> Optional[str]:
        if value is None:
            return None if self.nullable else "a value is required"
        ok = any(_is(value, t) for t in self.types)
        if not ok:
            return "expected %s" % " or ".join(getattr(t, "__name__", str(t)) for t in self.types)
        if isinstance(value, list) and self.item is not None and not all(_is(v, self.item) for v in value):
            return "expected a list of %s" % self.item.__name__
        if self.choices is not None and value not in self.choices:
            return "allowed: %s" % ", ".join(str(c) for c in self.choices if c is not None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if value != value or value in (float("inf"), float("-inf")):
                return "must be a finite number"
            if self.min is not None and value < self.min:
                return "must be >= %s" % self.min
            if self.max is not None and value > self.max:
                return "must be <= %s" % self.max
            if abs(value) > MAX_NUMBER:  # no key needs more; beyond it SQLite, OpenCV and timers overflow
                return "must be <= %d" % MAX_NUMBER
        return None


def _is(value: Any, t: type) -> bool:
    if isinstance(value, bool):
        return t is bool
    if t is float:
        return isinstance(value, (int, float))
    return isinstance(value, t)


def schema(cls: type = Config) -> Dict[str, Any]:
    """{key: Key or nested schema} for a config dataclass."""
    hints = typing.get_type_hints(cls)
    out: Dict[str, Any] = {}
    for fl in fields(cls):
        if fl.metadata.get("section"):
            out[fl.name] = schema(hints[fl.name])
        else:
            out[fl.name] = Key(fl.name, hints[fl.name], dict(fl.metadata), fl.default)
    return out


SCHEMA = schema()


def defaults(sch: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The defaults as a plain dict (benchmarks and tests edit it, then `build` validates it)."""
    sch = SCHEMA if sch is None else sch
    return {k: (defaults(v) if isinstance(v, dict) else copy.deepcopy(v.default)) for k, v in sch.items()}


def _mark(node) -> str:
    return "line %d" % (node.start_mark.line + 1) if node is not None and node.start_mark else "?"


class _Loader(yaml.SafeLoader):
    pass


def _construct(node) -> Any:
    """The Python value of a YAML node (safe constructors only)."""
    return _Loader("").construct_object(node, deep=True)


def _validate(node, sch: Dict[str, Any], path: str, fname: str, out: Dict[str, Any], errors: List[str]) -> None:
    if not isinstance(node, yaml.MappingNode):
        errors.append("%s:%s: %s must be a mapping of keys" % (fname, _mark(node), path or "the top level"))
        return
    seen: Dict[str, Any] = {}
    for knode, vnode in node.value:
        key = knode.value if isinstance(knode, yaml.ScalarNode) else None
        kp = "%s.%s" % (path, key) if path else str(key)
        if key not in sch:
            allowed = ", ".join(sorted(sch))
            errors.append("%s:%s: unknown key %s (allowed here: %s)" % (fname, _mark(knode), kp, allowed))
            continue
        if key in seen:
            errors.append("%s:%s: %s is given twice (first on %s)" % (fname, _mark(knode), kp, seen[key]))
            continue
        seen[key] = _mark(knode)
        spec = sch[key]
        if isinstance(spec, dict):
            if isinstance(vnode, yaml.ScalarNode) and vnode.tag.endswith(":null"):
                continue
            _validate(vnode, spec, kp, fname, out[key], errors)
            continue
        try:
            value = _construct(vnode)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as exc:
            errors.append(
                "%s:%s: %s: not a usable value (%s)" % (fname, _mark(vnode), kp, str(exc).splitlines()[0][:80])
            )
            continue
        err = spec.check(value)
        if err:
            errors.append("%s:%s: %s = %s: %s" % (fname, _mark(vnode), kp, _short(value), err))
        else:
            out[key] = value


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 3, 6, 6, 60, 60


def _short(value: Any, n: int = 60) -> str:
    """A value for an error message, bounded: a YAML alias bomb or a 1000-deep list must not be printed whole."""
    r = _REPR.repr(value)
    return r if len(r) <= n else r[:n] + "..."


def _check_dict(d: Dict[str, Any], sch: Dict[str, Any], path: str, fname: str, errors: List[str]) -> None:
    """Check an already-built dict (overrides, programmatic configs) against the schema."""
    if not isinstance(d, dict):
        errors.append("%s: %s must be a mapping of keys" % (fname, path or "the top level"))
        return
    for key, value in d.items():
        kp = "%s.%s" % (path, key) if path else str(key)
        if key not in sch:
            errors.append("%s: unknown key %s (allowed here: %s)" % (fname, kp, ", ".join(sorted(sch))))
        elif isinstance(sch[key], dict):
            _check_dict(value, sch[key], kp, fname, errors)
        else:
            err = sch[key].check(value)
            if err:
                errors.append("%s: %s = %s: %s" % (fname, kp, _short(value), err))


def _fill(d: Dict[str, Any], sch: Dict[str, Any]) -> Dict[str, Any]:
    out = defaults(sch)
    for k, v in (d or {}).items():
        out[k] = _fill(v, sch[k]) if isinstance(sch.get(k), dict) else v
    return out


def _raise(errors: List[str]) -> None:
    if errors:
        raise ConfigError(
            "; ".join(errors) if len(errors) < 2 else "%d problems: %s" % (len(errors), "; ".join(errors))
        )


def build(d: Dict[str, Any], fname: str = "<config>") -> Config:
    """A validated, immutable Config from a (partial) dict: missing keys take their defaults."""
    errors: List[str] = []
    _check_dict(d, SCHEMA, "", fname, errors)
    _raise(errors)
    full = _fill(d, SCHEMA)
    errors = semantic_errors(full, fname)
    _raise(errors)
    return _to_config(full, Config)


def _to_config(d: Dict[str, Any], cls: type) -> Any:
    hints = typing.get_type_hints(cls)
    kw = {}
    for fl in fields(cls):
        v = d[fl.name]
        if fl.metadata.get("section"):
            v = _to_config(v, hints[fl.name])
        elif isinstance(v, list):
            v = tuple(v)  # immutable
        kw[fl.name] = v
    return cls(**kw)


def as_config(cfg: Union[Config, Dict[str, Any]]) -> Config:
    return cfg if isinstance(cfg, Config) else build(cfg)


def to_dict(cfg: Config) -> Dict[str, Any]:
    def plain(v: Any) -> Any:
        return [plain(x) for x in v] if isinstance(v, (list, tuple)) else v

    return {
        f.name: (to_dict(getattr(cfg, f.name)) if f.metadata.get("section") else plain(getattr(cfg, f.name)))
        for f in fields(cfg)
    }


def load_config(path: Union[str, Path], overrides: Optional[Dict[str, Any]] = None) -> Config:
    """Read, validate and fill defaults; raise ConfigError listing every problem found."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError("config file %s not found (create it from firmware-config/kiosk.example.yaml)" % path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("config file %s cannot be read: %s" % (path, getattr(exc, "strerror", None) or exc))
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = "line %d" % (mark.line + 1) if mark else "?"
        raise ConfigError(
            "%s:%s: not valid YAML (%s)" % (path, where, getattr(exc, "problem", None) or str(exc).splitlines()[0])
        )
    except RecursionError:
        raise ConfigError("%s: nested too deeply to be a config" % path)
    cfg = defaults()
    errors: List[str] = []
    if node is not None:
        _validate(node, SCHEMA, "", str(path), cfg, errors)
    _raise(errors)
    if overrides:
        merge(cfg, overrides)
    return build(cfg, str(path))


def merge(cfg: Dict[str, Any], overrides: Dict[str, Any]) -> None:
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            merge(cfg[k], v)
        else:
            cfg[k] = v


def semantic_errors(cfg: Dict[str, Any], fname: str) -> List[str]:
    """Rules across keys, on the filled dict (paths in mqtt.tls are expanded here, in place)."""
    errors = []
    if cfg["source"]["url"] is None:
        errors.append("%s: source.url is required (a video file, camera index, device or URL)" % fname)
    elif is_still_photo(cfg["source"]["url"]):
        errors.append(
            "%s: source.url = %s is a still photo: give a camera, a stream or a video file (photos: edge-maskd "
            "scan)" % (fname, cfg["source"]["url"])
        )
    roi = cfg["detector"]["roi"]
    if roi is not None:
        if (
            len(roi) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in roi)
            or not (0 <= roi[0] < roi[2] <= 1 and 0 <= roi[1] < roi[3] <= 1)
        ):
            errors.append(
                "%s: detector.roi = %s: expected [x1, y1, x2, y2] fractions with 0 <= x1 < x2 <= 1"
                % (fname, _short(roi))
            )
    ts = cfg["detector"]["tile_sizes"]
    if ts is not None and (not ts or not all(tile_size_ok(v) for v in ts)):
        errors.append(
            "%s: detector.tile_sizes = %s: expected a list of tile sizes in pixels (integers %d-%d), "
            "e.g. [200, 100]" % ((fname, _short(ts)) + TILE_SIZE_LIMITS)
        )
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
        if v is not None and not NAME_RE.match(str(v)):
            errors.append("%s: %s = %s: must be %s" % (fname, k, _short(v), NAME_RULE))
    cid = cfg["mqtt"]["client_id"]
    if cid is not None and (not cid or len(cid) > 128 or any(c in cid for c in "/+#\x00")):
        errors.append("%s: mqtt.client_id = %s: 1-128 characters, none of / + # or NUL" % (fname, _short(cid)))
    return errors


def mqtt_password(cfg: Config) -> Optional[str]:
    """Password from the config, else the systemd credential (LoadCredential=mqtt-password), else
    `password_file`, else the environment. An empty file means no password."""
    m = cfg.mqtt
    if m.password:
        return m.password
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    cred = Path(cred_dir) / "mqtt-password" if cred_dir else None
    if cred is not None and cred.exists():
        return cred.read_text().strip() or None
    if m.password_file:
        path = Path(os.path.expandvars(m.password_file))
        try:
            return path.read_text().strip() or None
        except OSError as exc:
            raise ConfigError(
                "mqtt.password_file = %r cannot be read (%s); under systemd pass it with "
                "LoadCredential=mqtt-password:%s and drop password_file" % (m.password_file, exc.strerror or exc, path)
            )
    env = m.password_env
    return (os.environ.get(env) or None) if env else None
