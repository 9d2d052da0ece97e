"""MQTT topics and JSON payloads (Frigate-like layout under maskwatch/<site>/<device>/).

The wire format itself (topics, constants, payload builders from plain values, the JSON Schemas in
maskwatch_protocol/schemas/) is :mod:`maskwatch_protocol`, which the control room imports too; this module
only turns the pipeline's records (:class:`Decision`, :class:`Counts`) into those payloads.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import maskwatch_protocol as _p
from maskwatch_protocol import (  # noqa: F401 (the edge's one import of the wire format)
    KINDS,
    NON_COMPLIANT,
    SCHEMA_VERSION,
    dumps,
    iso,
    liveness,
    stats,
    status,
    topic,
)

from .types import Counts, Decision


def event(
    d: Decision, *, site: str, device: str, model_id: str, source: str, event_id: Optional[str] = None
) -> Dict[str, Any]:
    return _p.event(
        site=site,
        device=device,
        time=d.time,
        track_id=d.track_id,
        verdict=d.label,
        confidence=d.confidence,
        probs=d.probs,
        box=d.box,
        votes=d.votes,
        frame=d.frame_index,
        first_seen=d.first_seen,
        decided_by=d.decided_by,
        alert=d.alert,
        model_id=model_id,
        source=source,
        event_id=event_id,
        snapshot=d.snapshot,
    )


def counts(c: Counts, *, site: str, device: str, labels) -> Dict[str, Any]:
    return _p.counts(
        site=site,
        device=device,
        window_start=c.window_start,
        window_end=c.window_end,
        per_label=c.counts,
        labels=labels,
    )
