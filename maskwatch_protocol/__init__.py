"""The maskwatch wire protocol: topic layout, constants and payload builders (standard library only).

One module that both sides import: ``edge`` (the kiosk, which builds payloads from its pipeline records
in edge/messages.py) and ``controlroom`` (which reads them). It never imports numpy, OpenCV or LiteRT, and
keeps Python 3.8 syntax. Each payload has a JSON Schema in ``maskwatch_protocol/schemas/`` (package data).

Topics: ``<prefix>/<site>/<device>/<kind>`` with kind one of :data:`KINDS`.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import uuid
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

SCHEMA_VERSION = 1
DEFAULT_PREFIX = "maskwatch"
VERDICTS = ("with_mask", "without_mask", "mask_weared_incorrect")
NON_COMPLIANT = ("without_mask", "mask_weared_incorrect")
KINDS = ("status", "events", "counts", "stats")
# topic kind -> the payload's "type" (and its schema file <type>.schema.json)
KIND_TYPES = {"events": "event", "status": "status", "counts": "counts", "stats": "stats"}
SCHEMA_DIR = Path(__file__).resolve().with_name("schemas")


def topic(prefix: str, site: str, device: str, kind: str) -> str:
    return "%s/%s/%s/%s" % (prefix, site, device, kind)


def parse_topic(prefix: str, t: str) -> Optional[Sequence[str]]:
    """(site, device, kind) of ``<prefix>/<site>/<device>/<kind>``, or None for any other topic."""
    if not t.startswith(prefix + "/"):
        return None
    parts = t[len(prefix) + 1 :].split("/")
    if len(parts) != 3 or parts[2] not in KIND_TYPES or not parts[0] or not parts[1]:
        return None
    return parts[0], parts[1], parts[2]


def iso(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(s: Any) -> Optional[float]:
    if not isinstance(s, str):
        return None
    try:
        return _dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError, OSError):
        return None


def dumps(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def load_schema(kind_or_type: str) -> Dict[str, Any]:
    name = KIND_TYPES.get(kind_or_type, kind_or_type)
    return json.loads((SCHEMA_DIR / ("%s.schema.json" % name)).read_text(encoding="utf-8"))


def event(
    *,
    site: str,
    device: str,
    time: float,
    track_id: int,
    verdict: str,
    confidence: float,
    probs: Mapping[str, float],
    box: Iterable[int],
    votes: int,
    frame: int,
    first_seen: float,
    model_id: str,
    source: str,
    decided_by: str = "evidence",
    alert: float = 0.0,
    event_id: Optional[str] = None,
    snapshot: Optional[bytes] = None,
) -> Dict[str, Any]:
    """An ``events`` payload from plain values (``time`` and ``first_seen`` in epoch seconds)."""
    out = {
        "schema_version": SCHEMA_VERSION,
        "type": "event",
        "event_id": event_id or uuid.uuid4().hex,
        "site": site,
        "device": device,
        "time": iso(time),
        "ts": round(time, 3),
        "track_id": track_id,
        "verdict": verdict,
        "compliant": verdict not in NON_COMPLIANT,
        "confidence": confidence,
        "probs": dict(probs),
        "box": [int(v) for v in box],
        "votes": votes,
        "frame": frame,
        "first_seen": iso(first_seen),
        "decided_by": decided_by,
        "alert": alert,
        "model_id": model_id,
        "source": source,
    }
    if snapshot is not None:
        out["snapshot_jpeg_b64"] = base64.b64encode(snapshot).decode()
    return out


def counts(
    *,
    site: str,
    device: str,
    window_start: float,
    window_end: float,
    per_label: Mapping[str, int],
    labels: Iterable[str],
) -> Dict[str, Any]:
    """A ``counts`` payload: people per verdict in one window (every label present, 0 if none)."""
    per = {l: int(per_label.get(l, 0)) for l in labels}
    total = sum(per.values())
    compliant = sum(v for l, v in per.items() if l not in NON_COMPLIANT)
    return {
        "schema_version": SCHEMA_VERSION,
        "type": "counts",
        "site": site,
        "device": device,
        "window_start": iso(window_start),
        "window_end": iso(window_end),
        "window_s": round(window_end - window_start, 3),
        "counts": per,
        "total": total,
        "compliance_rate": round(compliant / float(total), 4) if total else None,
    }


def status(state: str, *, site: str, device: str, t: float, **extra: Any) -> Dict[str, Any]:
    out = {
        "schema_version": SCHEMA_VERSION,
        "type": "status",
        "state": state,
        "site": site,
        "device": device,
        "time": iso(t),
        "ts": round(t, 3),
    }
    out.update({k: v for k, v in extra.items() if v is not None})
    return out


def stats(*, site: str, device: str, t: float, **fields: Any) -> Dict[str, Any]:
    out = {
        "schema_version": SCHEMA_VERSION,
        "type": "stats",
        "site": site,
        "device": device,
        "time": iso(t),
        "ts": round(t, 3),
    }
    out.update(fields)
    return out


SAME_START_S = 5.0  # stats whose process starts (ts - uptime_s) differ by less come from one kiosk process


def process_start(stats_payload: Mapping[str, Any]) -> Optional[float]:
    """When the kiosk process that sent a stats payload started, by its own clock (stats_time - uptime_s), or
    None."""
    made, up = stats_time(stats_payload), stats_payload.get("uptime_s")
    if made is None or not isinstance(up, (int, float)) or isinstance(up, bool):
        return None
    return made - float(up)


CLOCK_SKEW_WARN_S = 60.0  # a kiosk clock this far from the receiver's is said: NTP keeps them within a second


def stats_time(stats_payload: Mapping[str, Any]) -> Optional[float]:
    """When a stats payload was made, by the kiosk's clock (`ts`, else `time`), or None."""
    ts = stats_payload.get("ts")
    if isinstance(ts, (int, float)) and not isinstance(ts, bool):
        return float(ts)
    return parse_iso(stats_payload.get("time"))


def clock_skew(made: Optional[float], received: float) -> Optional[float]:
    """How far a kiosk's clock is behind the receiver's (negative: ahead), from a stats message: stats are sent
    as they are made and never kept for later (QoS 0, no spool), so their age on arrival is the clocks' offset
    plus a network delay of milliseconds. Events and counts are no use for this: the spool sends them late."""
    return None if made is None else received - made


def clock_why(skew: Optional[float]) -> Optional[str]:
    """The warning for a kiosk whose clock is off by CLOCK_SKEW_WARN_S or more, else None."""
    if skew is None or abs(skew) < CLOCK_SKEW_WARN_S:
        return None
    return (
        "the kiosk's clock is %s %s the control room's: its events and counts are filed at the wrong time; "
        "turn on time sync on the kiosk (timedatectl set-ntp true)"
        % (
            span(abs(skew)),
            "behind" if skew > 0 else "ahead of",
        )
    )


def span(seconds: float) -> str:
    """A duration as a person reads it: 45 s, 12 min, 3 h 12 min, 4 d 2 h."""
    s = int(round(seconds))
    if s < 60:
        return "%d s" % s
    if s < 3600:
        return "%d min" % (s // 60)
    if s < 86400:
        return "%d h %d min" % (s // 3600, s % 3600 // 60) if s % 3600 >= 60 else "%d h" % (s // 3600)
    return "%d d %d h" % (s // 86400, s % 86400 // 3600) if s % 86400 >= 3600 else "%d d" % (s // 86400)


def next_starts(
    current: Optional[float], previous: Optional[float], start: Optional[float]
) -> Tuple[Optional[float], Optional[float], bool]:
    """A device's (current, previous) process starts after a stats message from a process started at `start`,
    and whether that message shows two kiosks reporting under one name: a restart brings a new start once, two
    kiosks bring back the start before the current one, again and again."""
    if start is None:
        return current, previous, False
    if current is None:
        return start, previous, False
    if abs(start - current) <= SAME_START_S:
        return current, previous, False
    return start, current, previous is not None and abs(start - previous) <= SAME_START_S


def liveness(status_payload: Optional[Dict[str, Any]], last_stats_ts: Optional[float], now: float) -> str:
    """What a subscriber may conclude about a device (docs/mqtt.md, "What a subscriber can and cannot infer"):
    "stopped" / "offline" from the retained status; "online" only while stats keep arriving (within twice the
    interval the device announced), else "stale", whatever the retained status says."""
    if not status_payload:
        return "unknown"
    state = status_payload.get("state")
    if state in ("stopped", "offline"):
        return str(state)
    interval = status_payload.get("stats_interval_s")
    if not isinstance(interval, (int, float)) or isinstance(interval, bool) or interval <= 0:
        return "stale"  # a device that does not say when to expect its heartbeat cannot be judged alive
    since = last_stats_ts if last_stats_ts is not None else status_payload.get("ts")
    if not isinstance(since, (int, float)):
        return "stale"
    return "online" if now - float(since) <= 2.0 * float(interval) else "stale"


__all__: List[str] = [
    "SCHEMA_VERSION",
    "DEFAULT_PREFIX",
    "VERDICTS",
    "NON_COMPLIANT",
    "KINDS",
    "KIND_TYPES",
    "SCHEMA_DIR",
    "topic",
    "parse_topic",
    "iso",
    "parse_iso",
    "dumps",
    "load_schema",
    "event",
    "counts",
    "status",
    "stats",
    "liveness",
]
