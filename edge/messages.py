"""MQTT topics and JSON payloads (Frigate-like layout under maskwatch/<site>/<device>/).

Each payload has a JSON Schema in edge/schemas/ (tests validate real messages
against them; edge-alerts checks `schema_version` before trusting a payload).
"""
from __future__ import annotations

import datetime as _dt
import json
import uuid
from typing import Any, Dict, Optional

from .types import Counts, Decision

SCHEMA_VERSION = 1
NON_COMPLIANT = ("without_mask", "mask_weared_incorrect")
KINDS = ("status", "events", "counts", "stats")


def topic(prefix: str, site: str, device: str, kind: str) -> str:
    return "%s/%s/%s/%s" % (prefix, site, device, kind)


def iso(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dumps(payload: Dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def event(d: Decision, *, site: str, device: str, model_id: str, source: str,
          event_id: Optional[str] = None) -> Dict[str, Any]:
    out = {
        "schema_version": SCHEMA_VERSION, "type": "event",
        "event_id": event_id or uuid.uuid4().hex,
        "site": site, "device": device, "time": iso(d.time), "ts": round(d.time, 3),
        "track_id": d.track_id, "verdict": d.label, "compliant": d.label not in NON_COMPLIANT,
        "confidence": d.confidence, "probs": d.probs, "box": [int(v) for v in d.box],
        "votes": d.votes, "frame": d.frame_index, "first_seen": iso(d.first_seen),
        "decided_by": d.decided_by, "alert": d.alert,
        "model_id": model_id, "source": source,
    }
    if d.snapshot is not None:
        import base64

        out["snapshot_jpeg_b64"] = base64.b64encode(d.snapshot).decode()
    return out


def counts(c: Counts, *, site: str, device: str, labels) -> Dict[str, Any]:
    per = {l: int(c.counts.get(l, 0)) for l in labels}
    total = sum(per.values())
    compliant = sum(v for l, v in per.items() if l not in NON_COMPLIANT)
    return {
        "schema_version": SCHEMA_VERSION, "type": "counts", "site": site, "device": device,
        "window_start": iso(c.window_start), "window_end": iso(c.window_end),
        "window_s": round(c.window_end - c.window_start, 3), "counts": per, "total": total,
        "compliance_rate": round(compliant / float(total), 4) if total else None,
    }


def status(state: str, *, site: str, device: str, t: float, **extra: Any) -> Dict[str, Any]:
    out = {"schema_version": SCHEMA_VERSION, "type": "status", "state": state, "site": site, "device": device,
           "time": iso(t), "ts": round(t, 3)}
    out.update({k: v for k, v in extra.items() if v is not None})
    return out


def stats(*, site: str, device: str, t: float, **fields: Any) -> Dict[str, Any]:
    out = {"schema_version": SCHEMA_VERSION, "type": "stats", "site": site, "device": device, "time": iso(t),
           "ts": round(t, 3)}
    out.update(fields)
    return out


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
